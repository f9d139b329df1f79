package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Divergence kinds.
const (
	KindMissingInShadow = "missing_in_shadow"
	KindOrphanInShadow  = "orphan_in_shadow"
	KindStateMismatch   = "state_mismatch"
	KindStatusMismatch  = "status_mismatch"
	KindDatesMismatch   = "dates_mismatch"
	KindActorMismatch   = "actor_mismatch"
	KindRuleViolation   = "rule_violation"
	KindDuplicateRows   = "duplicate_legacy_rows"
	KindQuarantined     = "quarantined"
	KindStale           = "stale"
	// KindProjectionMismatch is found by the deep check: a workflow's own
	// state disagrees with its projection.
	KindProjectionMismatch = "projection_mismatch"
)

// Kinds returns every divergence kind.
func Kinds() []string {
	return []string{KindMissingInShadow, KindOrphanInShadow, KindStateMismatch, KindStatusMismatch, KindDatesMismatch,
		KindActorMismatch, KindRuleViolation, KindDuplicateRows, KindQuarantined, KindStale, KindProjectionMismatch}
}

// Divergence is one difference between legacy and the shadow for one
// (cycle, report, phase).
type Divergence struct {
	Key    dtetype.Key   `json:"key"`
	Phase  dtetype.Phase `json:"phase"`
	Kind   string        `json:"kind"`
	Legacy string        `json:"legacy"`
	Shadow string        `json:"shadow"`
	// Detail explains it; for mismatches, the per-field differences.
	Detail string `json:"detail,omitempty"`
	// Rule names the expected-divergence rule it matches; Expected is true
	// then, and it does not count against consistency.
	Rule     string `json:"rule,omitempty"`
	Expected bool   `json:"expected"`
	// FirstSeen is when a run first found it (persisted runs only).
	FirstSeen *time.Time `json:"first_seen,omitempty"`
}

// Rule is an expected divergence: a known, accepted difference (Scientist's
// ignore blocks are the model). A divergence matches when every condition
// that is set matches.
type Rule struct {
	// Name identifies the rule in reports.
	Name string `yaml:"name" json:"name"`
	// Kind, if set, is the divergence kind it applies to.
	Kind string `yaml:"kind" json:"kind,omitempty"`
	// Phases, if set, limits it to these phases.
	Phases []dtetype.Phase `yaml:"phases" json:"phases,omitempty"`
	// Legacy and Shadow, if set, must equal the divergence's values.
	Legacy string `yaml:"legacy" json:"legacy,omitempty"`
	Shadow string `yaml:"shadow" json:"shadow,omitempty"`
	// DetailContains, if set, must occur in the divergence's detail (for
	// rule violations: the rule name, e.g. role_not_allowed).
	DetailContains string `yaml:"detail_contains" json:"detail_contains,omitempty"`
	// Reason says why the difference is accepted.
	Reason string `yaml:"reason" json:"reason"`
}

// Validate checks the rule.
func (r *Rule) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("expected-divergence rule without a name")
	}
	if r.Reason == "" {
		return fmt.Errorf("expected-divergence rule %q has no reason: say why the difference is accepted", r.Name)
	}
	if r.Kind != "" && !slices.Contains(Kinds(), r.Kind) {
		return fmt.Errorf("expected-divergence rule %q: unknown kind %q (one of %v)", r.Name, r.Kind, Kinds())
	}
	return nil
}

// Matches reports whether d is the accepted difference r describes.
func (r *Rule) Matches(d *Divergence) bool {
	return (r.Kind == "" || r.Kind == d.Kind) &&
		(len(r.Phases) == 0 || slices.Contains(r.Phases, d.Phase)) &&
		(r.Legacy == "" || r.Legacy == d.Legacy) &&
		(r.Shadow == "" || r.Shadow == d.Shadow) &&
		(r.DetailContains == "" || containsFold(d.Detail, r.DetailContains))
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
