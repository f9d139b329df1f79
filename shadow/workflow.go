package shadow

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Names the mirror and operators use to reach shadow workflows.
const (
	// WorkflowName is the registered name of ShadowWorkflow.
	WorkflowName = "ShadowWorkflow"
	// SignalChanges carries a Signal with a batch of legacy changes.
	SignalChanges = "changes"
	// QueryState returns the workflow's State.
	QueryState = "state"
)

// WorkflowID returns the stable workflow id of key.
func WorkflowID(prefix string, key dtetype.Key) string {
	return fmt.Sprintf("%s%d-%d", prefix, key.CycleID, key.ReportID)
}

// Search attributes the workflow keeps current where the server has them.
var (
	SACycle         = temporal.NewSearchAttributeKeyInt64("DtebridgeCycle")
	SAReport        = temporal.NewSearchAttributeKeyInt64("DtebridgeReport")
	SADefinition    = temporal.NewSearchAttributeKeyKeyword("DtebridgeDefinition")
	SAHasViolations = temporal.NewSearchAttributeKeyBool("DtebridgeHasViolations")
	// SADivergent is true while reconcile finds the report's legacy and
	// shadow apart (unexpected divergences): "divergent shadows" is a
	// saved filter in the Temporal UI.
	SADivergent = temporal.NewSearchAttributeKeyBool("DtebridgeDivergent")
)

// SignalDivergence tells a workflow what reconcile found for its report
// (DivergenceMark).
const SignalDivergence = "divergence"

// DivergenceMark is reconcile's finding for one report, which the workflow
// keeps in its details and in SADivergent.
type DivergenceMark struct {
	Divergent bool `json:"divergent"`
	// Open counts the report's unexpected divergences, Kinds their kinds.
	Open  int      `json:"open"`
	Kinds []string `json:"kinds,omitempty"`
	// Run is the reconcile run that found it.
	Run int64 `json:"run"`
}

// SearchAttributeTypes lists the search attributes by name and type, as the
// Temporal CLI's --search-attribute flag takes them.
func SearchAttributeTypes() map[string]string {
	return map[string]string{"DtebridgeCycle": "Int", "DtebridgeReport": "Int", "DtebridgeDefinition": "Keyword", "DtebridgeHasViolations": "Bool",
		"DtebridgeDivergent": "Bool"}
}

// Input starts (or continues) a shadow workflow.
type Input struct {
	Key dtetype.Key `json:"key"`
	// Definition is pinned for the workflow's life, across continue-as-new.
	Definition dtetype.Definition `json:"definition"`
	// Attributes feed the definition's when conditions.
	Attributes map[string]string `json:"attributes,omitempty"`
	// SearchAttributes says the server has the search attributes registered.
	SearchAttributes bool `json:"search_attributes"`
	// MaxChangesPerRun continues as new after this many changes in one run;
	// 0 leaves it to the server's suggestion.
	MaxChangesPerRun int64 `json:"max_changes_per_run,omitempty"`
	// State is carried over by continue-as-new.
	State *State `json:"state,omitempty"`
}

// Signal is the payload of SignalChanges.
type Signal struct {
	Changes []dtetype.PhaseChange `json:"changes"`
	// Resync replaces the workflow's rows with Changes, a report's full
	// legacy rows: a re-drive sends it. Violations stay recorded.
	Resync bool `json:"resync,omitempty"`
	// Attributes, when not nil, are the report's attributes as legacy holds
	// them now (legacy.attributes), which replace the workflow's.
	Attributes map[string]string `json:"attributes"`
	// Migrate, if set, moves the workflow to this definition: it re-judges
	// the report's state under it (the findings replace the old version's)
	// and continues as new on it. A definition migration's re-drive sends
	// it with the report's last rows.
	Migrate *dtetype.Definition `json:"migrate,omitempty"`
	// History asks the workflow to judge the history its rows record, once:
	// a backfill has delivered all of the report's legacy rows.
	History bool `json:"history,omitempty"`
	// Seq, if set, is the sequence number a re-drive was delivered under:
	// the workflow has applied everything up to it once it has applied the
	// signal, rows or none.
	Seq int64 `json:"seq,omitempty"`
}

// ShadowWorkflow follows one report's legacy workflow: it applies each change
// in order, judges it against the definition, computes schedule status by
// the definition's policy (with durable timers under the sla policy), and
// projects its state into the bridge schema after every batch. It never
// writes to legacy.
func ShadowWorkflow(ctx workflow.Context, in Input) error {
	s := in.State
	if s == nil {
		s = &State{Key: in.Key, DefinitionID: in.Definition.ID, DefinitionVersion: in.Definition.Version,
			StatusPolicy: in.Definition.StatusPolicy, ViolationCounts: map[string]int{}, Attributes: in.Attributes}
	}
	s.Runs++
	e := &engine{s: s, d: &in.Definition, attrs: s.Attributes, metrics: workflow.GetMetricsHandler(ctx)}
	if err := workflow.SetQueryHandler(ctx, QueryState, func() (*State, error) { return s, nil }); err != nil {
		return err
	}
	lopts := workflow.LocalActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	var a *Activities
	// project runs in the coroutine that calls it (the main loop or an
	// update handler), so it blocks on that coroutine's context.
	project := func(ctx workflow.Context) error {
		// Versions grow within a run and across runs, so a workflow started
		// anew (after a termination) still overwrites its old projection.
		s.ProjectionVersion = max(s.ProjectionVersion+1, workflow.Now(ctx).UnixMicro())
		// The details the Temporal UI shows for the workflow, current.
		workflow.SetCurrentDetails(ctx, currentDetails(s))
		return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, lopts), a.Project, projectionOf(s)).Get(ctx, nil)
	}
	if err := registerCommands(ctx, e, project); err != nil {
		return err
	}
	hasViolations := s.TotalViolations() > 0
	if in.SearchAttributes {
		if err := workflow.UpsertTypedSearchAttributes(ctx, SACycle.ValueSet(in.Key.CycleID), SAReport.ValueSet(in.Key.ReportID),
			SADefinition.ValueSet(in.Definition.Key()), SAHasViolations.ValueSet(hasViolations)); err != nil {
			return err
		}
	}

	signals := workflow.GetSignalChannel(ctx, SignalChanges)
	divergences := workflow.GetSignalChannel(ctx, SignalDivergence)
	// mark applies what reconcile found for the report.
	mark := func(m DivergenceMark) (bool, error) {
		was := s.Divergence != nil && s.Divergence.Divergent
		s.Divergence = &m
		if in.SearchAttributes && was != m.Divergent {
			if err := workflow.UpsertTypedSearchAttributes(ctx, SADivergent.ValueSet(m.Divergent)); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	var markErr error
	// migrated is the definition a migration moved the workflow to: it
	// continues as new on it, so the new version is pinned from then on.
	var migrated *dtetype.Definition
	receive := func(sig Signal) bool {
		changed := false
		if sig.Resync {
			s.Rows, s.Phases, changed = nil, nil, true
		}
		if sig.Attributes != nil && !maps.Equal(sig.Attributes, s.Attributes) {
			// Legacy's attributes now: the when conditions judge by them.
			s.Attributes, changed = maps.Clone(sig.Attributes), true
			e.attrs = s.Attributes
		}
		for _, c := range sig.Changes {
			if s.History == "" && s.Applied == 0 && c.Op != dtetype.OpSnapshot {
				s.History = HistoryLive // followed from its first change
			}
			changed = e.apply(c) || changed
		}
		if sig.History && s.History == "" {
			e.judgeHistory()
			s.History, changed = HistoryJudged, true
		}
		if sig.Migrate != nil {
			// Moved to another definition version: the report's state, as
			// the re-drive just delivered it, is judged again under the new
			// rules, and those findings replace the ones the old version
			// recorded.
			d := *sig.Migrate
			migrated, e.d = &d, &d
			s.DefinitionID, s.DefinitionVersion, s.StatusPolicy = d.ID, d.Version, d.StatusPolicy
			s.Violations, s.ViolationCounts = nil, map[string]int{}
			e.judgeHistory()
			s.History, changed = HistoryJudged, true
		}
		if sig.Seq > s.AppliedSeq {
			s.AppliedSeq, changed = sig.Seq, true
		}
		return changed
	}
	var timerAt time.Time
	var cancelTimer workflow.CancelFunc
	var timerFired workflow.Future
	appliedAtStart := s.Applied
	for {
		changed := false
		if next := e.nextThreshold(workflow.Now(ctx)); !next.Equal(timerAt) {
			if cancelTimer != nil {
				cancelTimer()
			}
			timerAt, cancelTimer, timerFired = next, nil, nil
			if !next.IsZero() {
				tctx, cancel := workflow.WithCancel(ctx)
				timerFired, cancelTimer = workflow.NewTimer(tctx, next.Sub(workflow.Now(ctx))), cancel
			}
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(signals, func(c workflow.ReceiveChannel, _ bool) {
			var sig Signal
			c.Receive(ctx, &sig)
			changed = receive(sig) || changed
		})
		sel.AddReceive(divergences, func(c workflow.ReceiveChannel, _ bool) {
			var m DivergenceMark
			c.Receive(ctx, &m)
			var ch bool
			ch, markErr = mark(m)
			changed = ch || changed
		})
		if timerFired != nil {
			sel.AddFuture(timerFired, func(f workflow.Future) {
				// A timer fires without any new event: the status moves by time.
				timerAt, cancelTimer, timerFired = time.Time{}, nil, nil
			})
		}
		sel.Select(ctx)
		if markErr != nil {
			return markErr
		}
		// Fold every signal already waiting into the same projection.
		for {
			var sig Signal
			if !signals.ReceiveAsync(&sig) {
				break
			}
			changed = receive(sig) || changed
		}
		changed = e.refreshStatuses(workflow.Now(ctx)) || changed
		if changed {
			if err := project(ctx); err != nil {
				return err
			}
		}
		if in.SearchAttributes && (s.TotalViolations() > 0) != hasViolations {
			hasViolations = !hasViolations
			if err := workflow.UpsertTypedSearchAttributes(ctx, SAHasViolations.ValueSet(hasViolations)); err != nil {
				return err
			}
		}
		if migrated != nil || workflow.GetInfo(ctx).GetContinueAsNewSuggested() || (in.MaxChangesPerRun > 0 && s.Applied-appliedAtStart >= in.MaxChangesPerRun) {
			// Commands in flight finish in this run, so none is lost; then
			// every signal that arrived meanwhile goes with the state. A
			// projection yields, so check again until nothing is pending.
			for {
				if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
					return err
				}
				drained := false
				for {
					var sig Signal
					if !signals.ReceiveAsync(&sig) {
						break
					}
					drained = receive(sig) || drained
				}
				for {
					var m DivergenceMark
					if !divergences.ReceiveAsync(&m) {
						break
					}
					ch, err := mark(m)
					if err != nil {
						return err
					}
					drained = ch || drained
				}
				if !drained {
					break
				}
				e.refreshStatuses(workflow.Now(ctx))
				if err := project(ctx); err != nil {
					return err
				}
			}
			next := in
			next.State = s
			if migrated != nil {
				next.Definition = *migrated
			}
			return workflow.NewContinueAsNewError(ctx, WorkflowName, next)
		}
	}
}

// currentDetails is the workflow's current details for the Temporal UI
// (markdown): where each phase stands, what reconcile last found, the
// findings.
func currentDetails(s *State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "**Report %d/%d** under %s@%s\n\n", s.Key.CycleID, s.Key.ReportID, s.DefinitionID, s.DefinitionVersion)
	var phases []string
	for _, ps := range s.Phases {
		phases = append(phases, fmt.Sprintf("%s: %s", ps.Phase, ps.State))
	}
	b.WriteString(strings.Join(phases, " · ") + "\n\n")
	switch d := s.Divergence; {
	case d == nil:
		b.WriteString("Not reconciled yet.\n")
	case d.Divergent:
		fmt.Fprintf(&b, "**Divergent**: %d unexpected divergences (%s), reconcile run %d.\n", d.Open, strings.Join(d.Kinds, ", "), d.Run)
	default:
		fmt.Fprintf(&b, "Agrees with legacy (reconcile run %d).\n", d.Run)
	}
	fmt.Fprintf(&b, "\nFindings: %d live violations, %d historical.\n", s.TotalViolations(), len(s.Historical))
	return b.String()
}
