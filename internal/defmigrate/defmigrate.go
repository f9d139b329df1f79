// Package defmigrate moves running shadow workflows to another definition
// version (dtebridge definitions migrate). Each chosen report is re-driven
// from its legacy truth through the one re-drive path with the target
// definition: its shadow re-judges the report's state under the new rules,
// whose findings replace the old version's, and continues as new pinned to
// it. Every run is audited (who, why, which reports, their findings before
// and after) and resumable: reports already on the target are skipped.
package defmigrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// Options says what to migrate.
type Options struct {
	Store *store.Store
	// Client and WorkflowIDPrefix reach the shadows, for a dry run's
	// preview.
	Client           client.Client
	WorkflowIDPrefix string
	// Target is the definition to move to.
	Target *dtetype.Definition
	// Keys are the reports to move; nil: every report the shadow follows.
	Keys []dtetype.Key
	// PhaseSafe skips reports with a phase in progress, so no phase
	// changes rules half way.
	PhaseSafe bool
	// DryRun changes nothing: it previews each report's findings under the
	// target.
	DryRun        bool
	Actor, Reason string
	// Wait bounds the wait for each batch's re-drives. Default: 5m.
	Wait time.Duration
	// Batch is how many reports are requested at once. Default: 200.
	Batch int
	// Progress, if set, is called as reports are done.
	Progress func(done, total int64)
}

// Report is what happened to one report.
type Report struct {
	Key  dtetype.Key `json:"key"`
	From string      `json:"from"`
	// Outcome: migrated, would_migrate (dry run), pending (the running
	// bridge finishes it; run again to record it) or failed: why.
	Outcome string                `json:"outcome"`
	Before  []store.ReportFinding `json:"before"`
	After   []store.ReportFinding `json:"after"`
	// Added and Removed are the findings (phase rule) the move added and
	// removed.
	Added   []string `json:"added"`
	Removed []string `json:"removed"`
}

// Result is a migration's outcome.
type Result struct {
	MigrationID int64  `json:"migration_id,omitempty"`
	Target      string `json:"target"`
	DryRun      bool   `json:"dry_run"`
	// AlreadyOnTarget counts reports skipped because they run the target.
	AlreadyOnTarget int `json:"already_on_target"`
	// Skipped are reports left alone, and why (phase-safe).
	Skipped  map[string]string `json:"skipped"`
	Reports  []Report          `json:"reports"`
	Migrated int               `json:"migrated"`
	Pending  int               `json:"pending"`
	Failed   int               `json:"failed"`
	// FindingsBefore and FindingsAfter count the moved reports' findings by
	// phase and rule.
	FindingsBefore map[string]int `json:"findings_before"`
	FindingsAfter  map[string]int `json:"findings_after"`
}

// Run migrates.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Wait <= 0 {
		o.Wait = 5 * time.Minute
	}
	if o.Batch <= 0 {
		o.Batch = 200
	}
	target := o.Target.Key()
	res := &Result{Target: target, DryRun: o.DryRun, Skipped: map[string]string{}, Reports: []Report{},
		FindingsBefore: map[string]int{}, FindingsAfter: map[string]int{}}
	defs, err := o.Store.ProjectedDefinitions(ctx)
	if err != nil {
		return nil, err
	}
	keys := o.Keys
	if keys == nil {
		keys = slices.SortedFunc(maps.Keys(defs), keyOrder)
	}
	var unknown []string
	var todo []dtetype.Key
	for _, k := range keys {
		switch from, ok := defs[k]; {
		case !ok:
			unknown = append(unknown, k.String())
		case from == target:
			res.AlreadyOnTarget++
		default:
			todo = append(todo, k)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("no shadow follows report %s: pick reports the bridge follows (dtebridge findings, or reconcile, lists them)", strings.Join(unknown, ", "))
	}
	if o.PhaseSafe && len(todo) > 0 {
		busy, err := o.Store.PhasesInProgress(ctx, todo)
		if err != nil {
			return nil, err
		}
		todo = slices.DeleteFunc(todo, func(k dtetype.Key) bool {
			if ps := busy[k]; len(ps) > 0 {
				names := make([]string, len(ps))
				for i, p := range ps {
					names[i] = string(p)
				}
				res.Skipped[k.String()] = strings.Join(names, ", ") + " in progress (--phase-safe)"
				return true
			}
			return false
		})
	}
	if !o.DryRun && len(todo) > 0 {
		alive, err := o.Store.LeaderAlive(ctx, store.MirrorConsumer)
		if err != nil {
			return nil, err
		}
		if !alive {
			return nil, fmt.Errorf("%w: nothing was migrated", adapter.ErrNoLeader)
		}
		m, err := o.Store.StartMigration(ctx, store.DefinitionMigration{Actor: o.Actor, Reason: o.Reason, Target: target, PhaseSafe: o.PhaseSafe}, res.Skipped)
		if err != nil {
			return nil, err
		}
		res.MigrationID = m.ID
	}
	done := int64(0)
	for len(todo) > 0 {
		batch := todo[:min(o.Batch, len(todo))]
		todo = todo[len(batch):]
		before, err := o.Store.ReportFindings(ctx, batch)
		if err != nil {
			return nil, err
		}
		reports := make([]Report, len(batch))
		for i, k := range batch {
			reports[i] = Report{Key: k, From: defs[k], Before: nonNil(before[k])}
		}
		if o.DryRun {
			if err := preview(ctx, o, reports); err != nil {
				return nil, err
			}
		} else if err := migrate(ctx, o, res.MigrationID, reports); err != nil {
			return nil, err
		}
		for i := range reports {
			r := &reports[i]
			r.Added, r.Removed = diff(r.Before, r.After)
			switch {
			case r.Outcome == "migrated" || r.Outcome == "would_migrate":
				res.Migrated++
				for _, f := range r.Before {
					res.FindingsBefore[string(f.Phase)+" "+f.Rule]++
				}
				for _, f := range r.After {
					res.FindingsAfter[string(f.Phase)+" "+f.Rule]++
				}
			case r.Outcome == "pending":
				res.Pending++
			default:
				res.Failed++
			}
		}
		res.Reports = append(res.Reports, reports...)
		done += int64(len(batch))
		if o.Progress != nil {
			o.Progress(done, done+int64(len(todo)))
		}
	}
	if res.MigrationID != 0 {
		if err := o.Store.FinishMigration(ctx, res.MigrationID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// preview judges each report's state, as its shadow holds it, under the
// target: what the migration would record.
func preview(ctx context.Context, o Options, reports []Report) error {
	for i := range reports {
		r := &reports[i]
		v, err := o.Client.QueryWorkflow(ctx, shadow.WorkflowID(o.WorkflowIDPrefix, r.Key), "", shadow.QueryState)
		var st shadow.State
		if err == nil {
			err = v.Get(&st)
		}
		if err != nil {
			r.Outcome = "failed: its shadow did not answer its state query: " + err.Error()
			continue
		}
		r.Outcome, r.After = "would_migrate", findingsOf(shadow.Rejudge(&st, o.Target))
	}
	return nil
}

// migrate requests the batch's re-drives onto the target, audits them,
// waits for them and records each outcome with the findings after.
func migrate(ctx context.Context, o Options, id int64, reports []Report) error {
	keys := make([]dtetype.Key, len(reports))
	for i, r := range reports {
		keys[i] = r.Key
	}
	ids, err := o.Store.RequestRedrives(ctx, store.RedriveRequest{Keys: keys, Reason: store.RedriveMigrate, RequestedBy: o.Actor, Definition: o.Target.Key()})
	if err != nil {
		return err
	}
	for i, r := range reports {
		if err := o.Store.MigrationReport(ctx, id, r.Key, r.From, ids[i], r.Before); err != nil {
			return err
		}
	}
	rr, err := adapter.AwaitRedrives(ctx, o.Store, ids, o.Wait)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	after, err := o.Store.ReportFindings(ctx, rr.Applied)
	if err != nil {
		return err
	}
	for i := range reports {
		r := &reports[i]
		switch {
		case slices.Contains(rr.Applied, r.Key):
			r.Outcome, r.After = "migrated", nonNil(after[r.Key])
		case rr.Failed[r.Key.String()] != "":
			r.Outcome = "failed: " + rr.Failed[r.Key.String()]
		default:
			r.Outcome = "pending"
		}
		if err := o.Store.MigrationOutcome(ctx, id, r.Key, r.Outcome, r.After); err != nil {
			return err
		}
	}
	return nil
}

func findingsOf(vs []shadow.Violation) []store.ReportFinding {
	out := []store.ReportFinding{}
	for _, v := range vs {
		out = append(out, store.ReportFinding{Origin: shadow.OriginHistorical, Phase: v.Phase, Rule: v.Rule, Detail: v.Detail})
	}
	return out
}

func nonNil(f []store.ReportFinding) []store.ReportFinding {
	if f == nil {
		return []store.ReportFinding{}
	}
	return f
}

// diff returns the findings (as "phase rule") after has and before has
// not, and the other way round, counting repeats.
func diff(before, after []store.ReportFinding) (added, removed []string) {
	count := map[string]int{}
	for _, f := range before {
		count[string(f.Phase)+" "+f.Rule]--
	}
	for _, f := range after {
		count[string(f.Phase)+" "+f.Rule]++
	}
	added, removed = []string{}, []string{}
	for _, k := range slices.Sorted(maps.Keys(count)) {
		for n := count[k]; n > 0; n-- {
			added = append(added, k)
		}
		for n := count[k]; n < 0; n++ {
			removed = append(removed, k)
		}
	}
	return added, removed
}

func keyOrder(a, b dtetype.Key) int {
	switch {
	case a.CycleID < b.CycleID || (a.CycleID == b.CycleID && a.ReportID < b.ReportID):
		return -1
	case a == b:
		return 0
	}
	return 1
}
