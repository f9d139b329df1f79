package shadow

import (
	"slices"
	"strconv"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Rule names of the violations the shadow records.
const (
	RuleDependencyUnmet   = "dependency_unmet"
	RuleRoleNotAllowed    = "role_not_allowed"
	RuleInvalidTransition = "invalid_transition"
	RuleSkippedPhase      = "skipped_phase"
)

// History values.
const (
	HistoryJudged = "judged"
	HistoryLive   = "live"
)

// Rules returns every rule the shadow judges.
func Rules() []string {
	return []string{RuleDependencyUnmet, RuleRoleNotAllowed, RuleInvalidTransition, RuleSkippedPhase}
}

// Violation is a legacy change that broke a rule of the definition.
type Violation struct {
	Rule    string        `json:"rule"`
	Phase   dtetype.Phase `json:"phase"`
	EventID string        `json:"event_id"`
	Detail  string        `json:"detail"`
	At      time.Time     `json:"at"`
}

// PhaseState is the shadow's view of one phase of one report.
type PhaseState struct {
	Phase dtetype.Phase `json:"phase"`
	// RowID is the legacy row the view follows: the oldest, as legacy does.
	RowID string `json:"row_id"`
	// Rows counts legacy rows for the phase; more than one is a duplicate.
	Rows int `json:"rows"`
	// State mirrors legacy's effective state.
	State     dtetype.State `json:"state"`
	BaseState dtetype.State `json:"base_state"`
	// LegacyStatus mirrors legacy's effective schedule status; Status is the
	// shadow's own, by the definition's status policy.
	LegacyStatus       dtetype.Status    `json:"legacy_status"`
	Status             dtetype.Status    `json:"status"`
	Override           *dtetype.Override `json:"override,omitempty"`
	PlannedStart       *time.Time        `json:"planned_start,omitempty"`
	PlannedEnd         *time.Time        `json:"planned_end,omitempty"`
	ActualStart        *time.Time        `json:"actual_start,omitempty"`
	ActualEnd          *time.Time        `json:"actual_end,omitempty"`
	StartedBy          string            `json:"started_by,omitempty"`
	CompletedBy        string            `json:"completed_by,omitempty"`
	LegacyStatusColumn string            `json:"legacy_status_column,omitempty"`
	// Since is when the shadow saw the phase start, for the sla policy.
	Since *time.Time `json:"since,omitempty"`
	// LastEventID and LastSeq identify the last change applied.
	LastEventID string    `json:"last_event_id"`
	LastSeq     int64     `json:"last_seq"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// State is everything a shadow workflow knows; the state query returns it
// and continue-as-new carries it.
type State struct {
	Key               dtetype.Key `json:"key"`
	DefinitionID      string      `json:"definition_id"`
	DefinitionVersion string      `json:"definition_version"`
	StatusPolicy      string      `json:"status_policy"`
	// Attributes are the report's attributes the when conditions test.
	Attributes map[string]string `json:"attributes,omitempty"`
	Phases     []*PhaseState     `json:"phases"`
	// Rows holds the latest change per legacy row.
	Rows []dtetype.PhaseChange `json:"rows"`
	// Violations are the most recent rule violations; ViolationCounts
	// counts all of them by rule.
	Violations      []Violation    `json:"violations"`
	ViolationCounts map[string]int `json:"violation_counts"`
	// Historical are the findings of the report's legacy history, judged
	// once from the rows a backfill delivered (what one snapshot can show:
	// dependencies, the recorded actors' roles, states no rule allows);
	// counted apart from the violations of live changes. History says
	// whether that was done: HistoryJudged, or HistoryLive for a report the
	// shadow followed from its first change, which has no history to judge.
	Historical []Violation `json:"historical,omitempty"`
	History    string      `json:"history,omitempty"`
	// Divergence is what reconcile last found for the report.
	Divergence *DivergenceMark `json:"divergence,omitempty"`
	// Seen are recent event ids, for deduplication after redelivery.
	Seen       []string `json:"seen"`
	AppliedSeq int64    `json:"applied_seq"`
	Applied    int64    `json:"applied"`
	Duplicates int64    `json:"duplicates_skipped"`
	// ProjectionVersion orders projection writes; each write has a larger one.
	ProjectionVersion int64 `json:"projection_version"`
	Runs              int   `json:"runs"`
}

// How many recent event ids and violations a workflow keeps.
const (
	seenWindow       = 4096
	violationsWindow = 100
)

func (s *State) seen(id string) bool { return slices.Contains(s.Seen, id) }

func (s *State) remember(id string) {
	s.Seen = append(s.Seen, id)
	if len(s.Seen) > seenWindow {
		s.Seen = slices.Clone(s.Seen[len(s.Seen)-seenWindow:])
	}
}

func (s *State) phase(p dtetype.Phase) *PhaseState {
	for _, ps := range s.Phases {
		if ps.Phase == p {
			return ps
		}
	}
	return nil
}

func (s *State) violate(v Violation) {
	s.Violations = append(s.Violations, v)
	if len(s.Violations) > violationsWindow {
		s.Violations = slices.Clone(s.Violations[len(s.Violations)-violationsWindow:])
	}
	if s.ViolationCounts == nil {
		s.ViolationCounts = map[string]int{}
	}
	s.ViolationCounts[v.Rule]++
}

// TotalViolations counts every violation recorded.
func (s *State) TotalViolations() int {
	n := 0
	for _, r := range Rules() {
		n += s.ViolationCounts[r]
	}
	return n
}

// rowLess orders legacy row ids numerically where they are numbers, so the
// oldest row comes first as it does for legacy.
func rowLess(a, b string) bool {
	x, errx := strconv.ParseInt(a, 10, 64)
	y, erry := strconv.ParseInt(b, 10, 64)
	if errx == nil && erry == nil {
		return x < y
	}
	return a < b
}

// view rebuilds the phase view of p from the rows: the oldest row wins.
func (s *State) view(p dtetype.Phase) *dtetype.PhaseChange {
	var best *dtetype.PhaseChange
	for i := range s.Rows {
		r := &s.Rows[i]
		if r.Phase == p && (best == nil || rowLess(r.RowID, best.RowID)) {
			best = r
		}
	}
	return best
}

func (s *State) rowCount(p dtetype.Phase) int {
	n := 0
	for _, r := range s.Rows {
		if r.Phase == p {
			n++
		}
	}
	return n
}

// setRow stores c as its row's latest change, or removes the row on delete.
func (s *State) setRow(c dtetype.PhaseChange) {
	i := slices.IndexFunc(s.Rows, func(r dtetype.PhaseChange) bool { return r.RowID == c.RowID })
	switch {
	case c.Op == dtetype.OpDelete && i >= 0:
		s.Rows = slices.Delete(s.Rows, i, i+1)
	case c.Op == dtetype.OpDelete:
	case i >= 0:
		s.Rows[i] = c
	default:
		s.Rows = append(s.Rows, c)
	}
}
