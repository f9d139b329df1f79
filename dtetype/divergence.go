package dtetype

import "time"

// Divergence kinds: how legacy and the shadow differ for one (cycle,
// report, phase).
const (
	KindMissingInShadow = "missing_in_shadow"
	KindOrphanInShadow  = "orphan_in_shadow"
	KindStateMismatch   = "state_mismatch"
	KindStatusMismatch  = "status_mismatch"
	KindDatesMismatch   = "dates_mismatch"
	KindActorMismatch   = "actor_mismatch"
	KindRuleViolation   = "rule_violation"
	// KindDuplicateRows: legacy holds several rows for one phase, as it
	// did when the bridge was installed (old duplicates).
	KindDuplicateRows = "duplicate_legacy_rows"
	// KindDuplicateRowsAdded: legacy holds more rows for one phase than it
	// did when the bridge was installed (a duplicate added since).
	KindDuplicateRowsAdded = "duplicate_rows_added"
	// KindLegacyStatusInconsistent: the schedule status legacy stored
	// breaks legacy's own schedule rule for that row (no override explains
	// it), so the shadow, which follows the rule, differs. Repair cannot
	// fix legacy's data.
	KindLegacyStatusInconsistent = "legacy_status_inconsistent"
	KindQuarantined              = "quarantined"
	KindStale                    = "stale"
	// KindProjectionMismatch is found by the deep check: a workflow's own
	// state disagrees with its projection.
	KindProjectionMismatch = "projection_mismatch"
	// KindAttributesMismatch: the report attributes a shadow judges its
	// when conditions by are not legacy's (phase "*").
	KindAttributesMismatch = "attributes_mismatch"
	// KindAuthorityConflict is a legacy write to a phase and report the new
	// engine owns.
	KindAuthorityConflict = "authority_conflict"
)

// Kinds returns every divergence kind.
func Kinds() []string {
	return []string{KindMissingInShadow, KindOrphanInShadow, KindStateMismatch, KindStatusMismatch, KindDatesMismatch,
		KindActorMismatch, KindRuleViolation, KindDuplicateRows, KindDuplicateRowsAdded, KindLegacyStatusInconsistent,
		KindQuarantined, KindStale, KindProjectionMismatch, KindAttributesMismatch, KindAuthorityConflict}
}

// Divergence is one difference between legacy and the shadow for one
// (cycle, report, phase).
type Divergence struct {
	Key    Key    `json:"key"`
	Phase  Phase  `json:"phase"`
	Kind   string `json:"kind"`
	Legacy string `json:"legacy"`
	Shadow string `json:"shadow"`
	// Detail explains it; for mismatches, the per-field differences.
	Detail string `json:"detail,omitempty"`
	// Fields, for a mismatch, names every field that differs; Also lists
	// the kinds beyond Kind that the same row shows (one row, one
	// divergence).
	Fields []string `json:"fields,omitempty"`
	Also   []string `json:"also,omitempty"`
	// Rule names the expected-divergence rule it matches; Expected is true
	// then, and it does not count against consistency.
	Rule     string `json:"rule,omitempty"`
	Expected bool   `json:"expected"`
	// FirstSeen is when a run first found it (persisted runs only).
	FirstSeen *time.Time `json:"first_seen,omitempty"`
}
