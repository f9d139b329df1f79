package shadow

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/dtetype"
)

// engine applies changes to a state under a definition. It is plain,
// deterministic code: the workflow drives it, and tests drive it directly.
type engine struct {
	s     *State
	d     *dtetype.Definition
	attrs map[string]string
	// metrics, if set, counts violations and observes phase durations; the
	// workflow's handler is silent during replay.
	metrics client.MetricsHandler
}

// The shadow's own metrics, emitted through the workflow's metrics handler.
const (
	MetricRuleViolations = "dtebridge_shadow_rule_violations_total"
	MetricPhaseDuration  = "dtebridge_shadow_phase_duration_seconds"
)

// apply applies one change and reports whether it changed anything. A
// change seen before (by event id) is skipped.
func (e *engine) apply(c dtetype.PhaseChange) bool {
	s := e.s
	if c.EventID != "" && s.seen(c.EventID) {
		s.Duplicates++
		if c.Seq > s.AppliedSeq {
			// A redelivery under a later sequence number (the reader
			// renumbers a batch it retries): the state stands, but the
			// watermark moves and must be projected, or the report looks
			// behind the mirror for ever.
			s.AppliedSeq = c.Seq
			return true
		}
		return false
	}
	if c.EventID != "" {
		s.remember(c.EventID)
	}
	s.Applied++
	s.AppliedSeq = max(s.AppliedSeq, c.Seq)

	prevState := dtetype.StateNotStarted
	var prevView string
	var prevSince *time.Time
	if ps := s.phase(c.Phase); ps != nil {
		prevState, prevView, prevSince = ps.State, ps.RowID, ps.Since
	}
	s.setRow(c)
	v := s.view(c.Phase)
	if v == nil {
		s.Phases = slices.DeleteFunc(s.Phases, func(ps *PhaseState) bool { return ps.Phase == c.Phase })
		return true
	}
	ps := s.phase(c.Phase)
	if ps == nil {
		ps = &PhaseState{Phase: c.Phase}
		s.Phases = append(s.Phases, ps)
		slices.SortFunc(s.Phases, func(a, b *PhaseState) int { return e.order(a.Phase) - e.order(b.Phase) })
	}
	ps.RowID, ps.Rows = v.RowID, s.rowCount(c.Phase)
	ps.State, ps.BaseState, ps.LegacyStatus = v.State, v.BaseState, v.Status
	ps.Override = v.Override
	ps.PlannedStart, ps.PlannedEnd, ps.ActualStart, ps.ActualEnd = v.PlannedStart, v.PlannedEnd, v.ActualStart, v.ActualEnd
	ps.StartedBy, ps.CompletedBy, ps.LegacyStatusColumn = v.StartedBy, v.CompletedBy, v.LegacyStatus
	ps.LastEventID, ps.LastSeq, ps.UpdatedAt = c.EventID, c.Seq, c.TxTime
	switch {
	case ps.State != dtetype.StateInProgress:
		ps.Since = nil
	case ps.Since == nil && ps.ActualStart != nil:
		ps.Since = ps.ActualStart
	case ps.Since == nil:
		t := c.TxTime
		ps.Since = &t
	}

	// Judge transitions of the row the phase view follows; a backfilled row
	// is a resync, not a transition.
	if c.Op != dtetype.OpSnapshot && v.RowID == c.RowID && (prevView == "" || prevView == c.RowID) && prevState != ps.State {
		e.judge(c, prevState, ps.State)
		if e.metrics != nil && prevState == dtetype.StateInProgress && ps.State == dtetype.StateCompleted && prevSince != nil && !c.TxTime.Before(*prevSince) {
			e.metrics.WithTags(map[string]string{"phase": string(c.Phase)}).Timer(MetricPhaseDuration).Record(c.TxTime.Sub(*prevSince))
		}
	}
	return true
}

// order is a phase's position in the definition, for stable output.
func (e *engine) order(p dtetype.Phase) int {
	i := slices.IndexFunc(e.d.Phases, func(d dtetype.PhaseDef) bool { return d.ID == p })
	if i < 0 {
		return len(e.d.Phases)
	}
	return i
}

func (e *engine) judge(c dtetype.PhaseChange, from, to dtetype.State) {
	def := e.d.Phase(c.Phase)
	add := func(rule, format string, args ...any) {
		e.s.violate(Violation{Rule: rule, Phase: c.Phase, EventID: c.EventID, Detail: fmt.Sprintf(format, args...), At: c.TxTime})
		if e.metrics != nil {
			e.metrics.WithTags(map[string]string{"phase": string(c.Phase), "rule": rule}).Counter(MetricRuleViolations).Inc(1)
		}
	}
	switch {
	case to == dtetype.StateNotStarted:
		add(RuleInvalidTransition, "%s moved from %s back to not_started; the definition allows reopening to in_progress only", c.Phase, from)
	case from == dtetype.StateNotStarted && to == dtetype.StateCompleted:
		add(RuleSkippedPhase, "%s completed without having been in progress", c.Phase)
	}
	if def == nil {
		return
	}
	if from == dtetype.StateNotStarted && to != dtetype.StateNotStarted {
		var unmet []string
		for _, dep := range def.DependsOn {
			if dd := e.d.Phase(dep); dd != nil && !dd.When.Holds(e.attrs) {
				continue // a branch that does not apply to this report
			}
			st := dtetype.StateNotStarted
			if ps := e.s.phase(dep); ps != nil {
				st = ps.State
			}
			if st != dtetype.StateCompleted {
				unmet = append(unmet, fmt.Sprintf("%s is %s", dep, st))
			}
		}
		if len(unmet) > 0 {
			add(RuleDependencyUnmet, "%s started while %s", c.Phase, strings.Join(unmet, ", "))
		}
	}
	role := c.StartedByRole
	if to == dtetype.StateCompleted {
		role = c.CompletedByRole
	}
	if role != "" && len(def.Roles) > 0 {
		canonical, known := e.d.CanonicalRole(role)
		if !known || !slices.Contains(def.Roles, canonical) {
			verb := map[dtetype.State]string{dtetype.StateInProgress: "start", dtetype.StateCompleted: "complete"}[to]
			if verb == "" {
				verb = "move"
			}
			add(RuleRoleNotAllowed, "role %q may not %s %s (allowed: %s)", role, verb, c.Phase, strings.Join(def.Roles, ", "))
		}
	}
}

// judgeHistory judges the state legacy's rows record, as a backfill
// delivered them, against the definition: what one snapshot can show. A
// started phase whose dependencies (on branches that apply) are not
// completed, an actor whose role may not have started or completed the
// phase, a phase completed that never recorded a start. The findings
// replace the historical ones.
func (e *engine) judgeHistory() {
	var out []Violation
	for _, ps := range e.s.Phases {
		def := e.d.Phase(ps.Phase)
		if def == nil || ps.State == dtetype.StateNotStarted {
			continue
		}
		if !def.When.Holds(e.attrs) {
			continue
		}
		add := func(rule, format string, args ...any) {
			out = append(out, Violation{Rule: rule, Phase: ps.Phase, EventID: ps.LastEventID, At: ps.UpdatedAt,
				Detail: fmt.Sprintf(format, args...) + " (legacy history)"})
		}
		var unmet []string
		for _, dep := range def.DependsOn {
			if dd := e.d.Phase(dep); dd != nil && !dd.When.Holds(e.attrs) {
				continue
			}
			st := dtetype.StateNotStarted
			if d := e.s.phase(dep); d != nil {
				st = d.State
			}
			if st != dtetype.StateCompleted {
				unmet = append(unmet, fmt.Sprintf("%s is %s", dep, st))
			}
		}
		if len(unmet) > 0 {
			add(RuleDependencyUnmet, "%s is %s while %s", ps.Phase, ps.State, strings.Join(unmet, ", "))
		}
		if ps.State == dtetype.StateCompleted && ps.ActualStart == nil {
			add(RuleSkippedPhase, "%s is completed with no start recorded", ps.Phase)
		}
		v := e.s.view(ps.Phase)
		if v == nil || len(def.Roles) == 0 {
			continue
		}
		for _, a := range []struct{ verb, actor, role string }{{"start", v.StartedBy, v.StartedByRole}, {"complete", v.CompletedBy, v.CompletedByRole}} {
			if a.role == "" {
				continue
			}
			if canonical, known := e.d.CanonicalRole(a.role); !known || !slices.Contains(def.Roles, canonical) {
				add(RuleRoleNotAllowed, "user %s, role %q, recorded as the one to %s %s (allowed: %s)", a.actor, a.role, a.verb, ps.Phase, strings.Join(def.Roles, ", "))
			}
		}
	}
	e.s.Historical = out
}

// refreshStatuses recomputes every phase's own schedule status at now and
// reports whether any changed.
func (e *engine) refreshStatuses(now time.Time) bool {
	changed := false
	for _, ps := range e.s.Phases {
		st := e.status(ps, now)
		if st != ps.Status {
			ps.Status, changed = st, true
		}
	}
	return changed
}

// status is the phase's schedule status under the definition's policy. An
// override of the status wins, as it does for legacy readers.
func (e *engine) status(ps *PhaseState, now time.Time) dtetype.Status {
	if ps.Override != nil && ps.Override.Status != "" {
		return ps.Override.Status
	}
	if e.d.StatusPolicy == dtetype.PolicySLA {
		def := e.d.Phase(ps.Phase)
		if ps.State != dtetype.StateInProgress || def == nil || def.SLA == nil || ps.Since == nil {
			return dtetype.StatusOnSchedule
		}
		atRisk, deadline := slaThresholds(*ps.Since, def.SLA)
		switch {
		case !now.Before(deadline):
			return dtetype.StatusBehindSchedule
		case !now.Before(atRisk):
			return dtetype.StatusAtRisk
		}
		return dtetype.StatusOnSchedule
	}
	// The legacy rule, evaluated when legacy last wrote the row, as the
	// legacy orchestrator recomputes only when it touches a row.
	var end time.Time
	if ps.PlannedEnd != nil {
		end = *ps.PlannedEnd
	}
	return dtetype.LegacyScheduleStatus(ps.UpdatedAt, ps.BaseState == dtetype.StateCompleted, end)
}

func slaThresholds(since time.Time, sla *dtetype.SLA) (atRisk, deadline time.Time) {
	deadline = sla.Deadline(since)
	atRisk = since.Add(time.Duration(float64(deadline.Sub(since)) * dtetype.AtRiskShare))
	return atRisk, deadline
}

// nextThreshold returns the earliest moment after now when a phase's sla
// status will change by time alone, or zero.
func (e *engine) nextThreshold(now time.Time) time.Time {
	var next time.Time
	if e.d.StatusPolicy != dtetype.PolicySLA {
		return next
	}
	for _, ps := range e.s.Phases {
		def := e.d.Phase(ps.Phase)
		if ps.State != dtetype.StateInProgress || def == nil || def.SLA == nil || ps.Since == nil {
			continue
		}
		atRisk, deadline := slaThresholds(*ps.Since, def.SLA)
		for _, t := range []time.Time{atRisk, deadline} {
			if t.After(now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
	}
	return next
}

// Rejudge returns the findings report state s would have under definition
// d, as a migration to d records them (it judges s's state as the history
// judge does): a preview that changes nothing.
func Rejudge(s *State, d *dtetype.Definition) []Violation {
	c := *s
	e := &engine{s: &c, d: d, attrs: s.Attributes}
	e.judgeHistory()
	return c.Historical
}
