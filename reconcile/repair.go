package reconcile

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// TemporalOptions reach the shadow workflows, for the deep check, and
// drive repairs.
type TemporalOptions struct {
	// Client reaches Temporal, for the deep check.
	Client client.Client
	// WorkflowIDPrefix as the mirror uses it.
	WorkflowIDPrefix string
	// Wait bounds how long repair waits for the shadow to apply its
	// re-drives. Default: 30s.
	Wait time.Duration
	// Actor is who asks for the repair (recorded with the re-drives).
	Actor string
	// Owned, if set, reports phases and reports the new engine owns: repair
	// leaves them alone, because legacy is not their truth.
	Owned func(k dtetype.Key, p dtetype.Phase) bool
}

// RepairReport says what a repair did.
type RepairReport struct {
	// Reports re-driven from legacy.
	Reports int `json:"reports"`
	// Attempted divergences, and how many the re-check no longer finds.
	Attempted int `json:"attempted"`
	Repaired  int `json:"repaired"`
	// Remaining are the divergences the re-check still finds.
	Remaining []dtetype.Divergence `json:"remaining"`
	// Failed are reports the bridge could not re-drive, and why; Pending
	// are reports not yet re-driven when the wait ended (the running
	// bridge finishes them).
	Failed  map[string]string `json:"failed,omitempty"`
	Pending []dtetype.Key     `json:"pending,omitempty"`
	// NotRepairable counts unexpected divergences of kinds a re-drive cannot
	// change, by kind: facts of legacy's own data (duplicate rows, a status
	// legacy stored against its rule), rule violations the shadow recorded,
	// quarantined changes, authority conflicts. Repair does not try them.
	NotRepairable map[string]int `json:"not_repairable,omitempty"`
}

// repairable kinds are the ones a resync from legacy can fix; the others
// are facts about legacy (a rule it let through, duplicate rows) or wait on
// the mapping (quarantine).
var repairable = []string{dtetype.KindMissingInShadow, dtetype.KindOrphanInShadow, dtetype.KindStateMismatch, dtetype.KindStatusMismatch,
	dtetype.KindDatesMismatch, dtetype.KindActorMismatch, dtetype.KindStale, dtetype.KindProjectionMismatch,
	dtetype.KindAttributesMismatch}

// Repair re-drives every report with an unexpected, repairable divergence
// from legacy truth (adapter.Redrive, served by the running bridge), waits
// for the shadow to apply it, re-checks those reports and records the
// outcome in r.Repair. It needs a running dtebridge serve; without one it
// changes nothing and says so.
func Repair(ctx context.Context, o Options, t TemporalOptions, r *Report) error {
	rep := &RepairReport{Remaining: []dtetype.Divergence{}, Failed: map[string]string{}, Pending: []dtetype.Key{}, NotRepairable: map[string]int{}}
	var keys []dtetype.Key
	queued := map[dtetype.Key]bool{}
	for d, err := range r.All() {
		if err != nil {
			return err
		}
		if !d.Expected && !slices.Contains(repairable, d.Kind) {
			rep.NotRepairable[d.Kind]++
		}
		if d.Expected || !slices.Contains(repairable, d.Kind) || (t.Owned != nil && t.Owned(d.Key, d.Phase)) {
			continue
		}
		rep.Attempted++
		if !queued[d.Key] {
			queued[d.Key] = true
			keys = append(keys, d.Key)
		}
	}
	if len(keys) == 0 {
		r.Repair = rep
		return nil
	}
	res, err := adapter.Redrive(ctx, o.Store, store.RedriveRequest{Keys: keys, Reason: store.RedriveRepair, RequestedBy: cmp.Or(t.Actor, "reconcile")},
		cmp.Or(t.Wait, 30*time.Second))
	if err != nil {
		return fmt.Errorf("error repairing: %w", err)
	}
	r.Repair = rep
	rep.Reports, rep.Failed, rep.Pending = len(res.Applied), res.Failed, res.Pending
	check := o
	check.Scope = Scope{Keys: keys}
	check.Persist, check.Progress, check.Incremental, check.Snapshot = false, nil, false, ""
	after, err := Run(ctx, check)
	if err != nil {
		return fmt.Errorf("error re-checking repaired reports: %w", err)
	}
	defer after.Close()
	for d, err := range after.All() {
		if err != nil {
			return err
		}
		if !d.Expected && slices.Contains(repairable, d.Kind) {
			rep.Remaining = append(rep.Remaining, d)
		}
	}
	rep.Repaired = max(0, rep.Attempted-len(rep.Remaining))
	return nil
}

// DeepReport says what the deep check found.
type DeepReport struct {
	Queried   int `json:"queried"`
	Disagreed int `json:"disagreed"`
}

// Deep queries up to n shadow workflows (all when n <= 0) directly in
// Temporal and compares each with its projection; every disagreement, or a
// workflow that cannot answer, is a projection_mismatch divergence in r.
func Deep(ctx context.Context, o Options, t TemporalOptions, n int, r *Report) (err error) {
	keys, err := o.Store.ProjectedKeys(ctx, o.Scope.Cycle, n)
	if err != nil {
		return err
	}
	dr := &DeepReport{}
	r.Deep = dr
	defer func() {
		if serr := r.settle(); err == nil {
			err = serr
		}
	}()
	for _, k := range keys {
		dr.Queried++
		projected := map[dtetype.Phase]store.ProjectedPhase{}
		phases, err := o.Store.ProjectedPhases(ctx, k)
		if err != nil {
			return err
		}
		for _, p := range phases {
			projected[p.Phase] = p
		}
		var problems []string
		id := shadow.WorkflowID(t.WorkflowIDPrefix, k)
		desc, err := t.Client.DescribeWorkflowExecution(ctx, id, "")
		switch {
		case err != nil:
			problems = append(problems, "workflow "+id+" cannot be found: "+err.Error())
		case desc.GetWorkflowExecutionInfo().GetCloseTime() != nil:
			problems = append(problems, fmt.Sprintf("workflow %s is not running (%s): its projection no longer follows legacy",
				id, desc.GetWorkflowExecutionInfo().GetStatus()))
		default:
			v, err := t.Client.QueryWorkflow(ctx, id, "", shadow.QueryState)
			var st shadow.State
			if err == nil {
				err = v.Get(&st)
			}
			if err != nil {
				problems = append(problems, "workflow "+id+" did not answer its state query: "+err.Error())
				break
			}
			seen := map[dtetype.Phase]bool{}
			for _, ps := range st.Phases {
				seen[ps.Phase] = true
				p, ok := projected[ps.Phase]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s: the workflow has it, the projection does not", ps.Phase))
					continue
				}
				// Every field the projection holds, compared as stored.
				if diff := projectionDiff(ps.Projected(), p); diff != "" {
					problems = append(problems, fmt.Sprintf("%s: %s", ps.Phase, diff))
				}
			}
			for p := range projected {
				if !seen[p] {
					problems = append(problems, fmt.Sprintf("%s: projected but unknown to the workflow", p))
				}
			}
		}
		if len(problems) > 0 {
			dr.Disagreed++
			slices.Sort(problems)
			d := dtetype.Divergence{Key: k, Phase: "*", Kind: dtetype.KindProjectionMismatch, Legacy: "-", Shadow: "projection disagrees", Detail: strings.Join(problems, "; ")}
			expect(o.Expected, &d)
			r.addLate(d)
			r.tally(&d)
		}
	}
	return nil
}

// MarkDivergent tells each shadow in r's scope whether reconcile finds its
// report divergent (unexpected divergences), where that changed since the
// shadow was last told: the workflow keeps it in its details and in the
// DtebridgeDivergent search attribute. A workflow that no longer runs is
// passed over. It returns how many shadows it told.
func MarkDivergent(ctx context.Context, o Options, t TemporalOptions, r *Report) (int, error) {
	want := map[dtetype.Key]*shadow.DivergenceMark{}
	for d, err := range r.All() {
		if err != nil {
			return 0, err
		}
		if d.Expected {
			continue
		}
		m := want[d.Key]
		if m == nil {
			m = &shadow.DivergenceMark{Divergent: true, Run: r.RunID}
			want[d.Key] = m
		}
		m.Open++
		if !slices.Contains(m.Kinds, d.Kind) {
			m.Kinds = append(m.Kinds, d.Kind)
		}
	}
	have, err := o.Store.DivergentReports(ctx)
	if err != nil {
		return 0, err
	}
	// Reports the run did not look at keep their mark.
	inScope := r.Looked
	told := 0
	tell := func(k dtetype.Key, m shadow.DivergenceMark) error {
		err := t.Client.SignalWorkflow(ctx, shadow.WorkflowID(t.WorkflowIDPrefix, k), "", shadow.SignalDivergence, m)
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return nil
		}
		if err == nil {
			told++
		}
		return err
	}
	for k, m := range want {
		if !have[k] && inScope(k) {
			if err := tell(k, *m); err != nil {
				return told, fmt.Errorf("error marking %s divergent: %w", k, err)
			}
		}
	}
	for k := range have {
		if want[k] == nil && inScope(k) {
			if err := tell(k, shadow.DivergenceMark{Run: r.RunID}); err != nil {
				return told, fmt.Errorf("error marking %s agreeing: %w", k, err)
			}
		}
	}
	return told, nil
}
