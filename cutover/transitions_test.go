package cutover_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestEveryModeTransition takes one phase through all six mode transitions
// (legacy, shadow and new, each to each). In each mode the phase is changed
// the way that mode allows: legacy edits the shadow does not follow in
// legacy mode, legacy edits it follows in shadow mode, engine commands
// written back in new mode. After each transition, with no manual step, the
// shadow equals legacy (reconcile finds nothing unexpected) and an expected
// divergence found before the first transition is still open with its
// first_seen.
func TestEveryModeTransition(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	const phase = dtetype.Phase("planning")

	// started is a report whose Planning has started; a new report's has not.
	started := func() dtetype.Key {
		t.Helper()
		var k dtetype.Key
		if err := e.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Planning'
			AND state <> 'Not Started' ORDER BY random() LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
			t.Fatalf("no report with Planning started: %v", err)
		}
		return k
	}
	r := e.reconcileRuns(1)
	if r.Unexpected != 0 {
		t.Fatalf("not clean before the transitions: %+v", unexpected(r))
	}
	type seen struct {
		kind  string
		first time.Time
	}
	expected := func() map[string]seen {
		out := map[string]seen{}
		rows, err := e.DB.Pool.Query(ctx, `SELECT cycle_id, report_id, kind, first_seen FROM dtebridge.divergences
			WHERE resolved_at IS NULL AND phase = $1 AND rule IS NOT NULL`, string(phase))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var k dtetype.Key
			var s seen
			rows.Scan(&k.CycleID, &k.ReportID, &s.kind, &s.first)
			out[k.String()+" "+s.kind] = s
		}
		return out
	}
	before := expected()
	if len(before) == 0 {
		t.Fatal("the simulation left no expected divergence in planning")
	}

	modes := []struct {
		mode    string
		percent int
	}{{dtetype.ModeShadow, 0}, {dtetype.ModeLegacy, 0}, {dtetype.ModeNew, 100}, {dtetype.ModeShadow, 0},
		{dtetype.ModeNew, 100}, {dtetype.ModeLegacy, 0}, {dtetype.ModeShadow, 0}}
	for i := 1; i < len(modes); i++ {
		from, to := modes[i-1], modes[i]
		t.Run(fmt.Sprintf("%s_to_%s", from.mode, to.mode), func(t *testing.T) {
			res, err := e.store.Set(ctx, cutover.Change{Phase: phase, Mode: to.mode, Percent: to.percent, Actor: "alice",
				Reason: "transition test", Force: true}, e.Cfg.GateConfig())
			if err != nil || res.From.Mode != from.mode {
				t.Fatalf("set: %v %+v", err, res)
			}
			if from.mode != dtetype.ModeShadow && to.mode != dtetype.ModeNew && len(res.Redrives) == 0 {
				t.Errorf("leaving %s requested no re-drive", from.mode)
			}
			if _, err := adapter.AwaitRedrives(ctx, e.Store(), res.Redrives, time.Minute); err != nil {
				t.Fatal(err)
			}
			// Change the phase as the new mode allows.
			switch to.mode {
			case dtetype.ModeLegacy, dtetype.ModeShadow:
				k := started()
				if _, err := e.model.Reopen(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, legacysim.ReopenReset); err != nil {
					t.Fatal(err)
				}
			case dtetype.ModeNew:
				k := e.coveredReport(100)
				if _, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: phase, Actor: "12", Role: "Tester",
					Reason: "transition test"}); err != nil {
					t.Fatal(err)
				}
			}
			e.Quiescent(30 * time.Second)
			// In legacy mode reconcile skips the phase; the next transition
			// must bring the shadow back without a repair.
			if r := e.reconcileRuns(1); r.Unexpected != 0 {
				t.Fatalf("after %s -> %s: %+v", from.mode, to.mode, unexpected(r))
			}
			after := expected()
			for k, s := range before {
				if a, ok := after[k]; !ok || !a.first.Equal(s.first) {
					t.Errorf("expected divergence %s: first_seen %v before, %+v (open %v) after", k, s.first, a, ok)
				}
			}
		})
	}
}

// unexpected lists a report's unexpected divergences.
func unexpected(r *reconcile.Report) []dtetype.Divergence {
	var out []dtetype.Divergence
	for _, d := range r.Divergences {
		if !d.Expected {
			out = append(out, d)
		}
	}
	return out
}

// TestGateSpan: three clean runs seconds apart do not pass a gate whose
// runs must span longer; spread out, they do.
func TestGateSpan(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	e.Cfg.Cutover.Gate.MinSpan = config.Duration(2 * time.Second)
	e.reconcileRuns(3)
	g, err := e.store.Gate(ctx, "planning", e.Cfg.GateConfig())
	if err != nil || g.Pass || !strings.Contains(strings.Join(g.Why, "; "), "less than 2s (cutover.gate.min_span)") {
		t.Fatalf("runs back to back: %v %+v", err, g)
	}
	for range 2 {
		time.Sleep(1100 * time.Millisecond)
		e.reconcileRuns(1)
	}
	if g, err = e.store.Gate(ctx, "planning", e.Cfg.GateConfig()); err != nil || !g.Pass {
		t.Fatalf("runs spread over 2.2s: %v %+v", err, g)
	}
	b, _ := json.Marshal(g.Config)
	if string(b) != `{"runs":3,"within":"24h0m0s","min_span":"2s","min_consistency":0.999}` {
		t.Errorf("gate config as JSON: %s", b)
	}
}

// TestGateCountsIncrementalRuns: the gate counts full runs, and an
// incremental run since the last full one that found an unexpected
// divergence in the phase holds the gate closed until a full run passes
// again; a divergence in another phase does not.
func TestGateCountsIncrementalRuns(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	incremental := func() *reconcile.Report {
		o := e.Cfg.ReconcileOptions(e.DB.Pool)
		o.Persist, o.Incremental = true, true
		r, err := reconcile.Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != "incremental" {
			t.Fatalf("kind %q: %s", r.Kind, r.FullBecause)
		}
		return r
	}
	e.reconcileRuns(3)
	for range 5 { // more incremental runs than the gate counts full ones
		incremental()
	}
	gate := func(phase dtetype.Phase) *cutover.GateResult {
		g, err := e.store.Gate(ctx, phase, e.Cfg.GateConfig())
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	if g := gate("planning"); !g.Pass || len(g.Runs) != 3 {
		t.Fatalf("three clean full runs and clean incremental ones: %+v", g)
	}
	var k dtetype.Key
	if err := e.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_phases WHERE phase = 'planning' LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	e.Exec(`UPDATE dtebridge.shadow_phases SET state = CASE WHEN state = 'completed' THEN 'not_started' ELSE 'completed' END
		WHERE cycle_id = $1 AND report_id = $2 AND phase = 'planning'`, k.CycleID, k.ReportID)
	r := incremental()
	if r.Unexpected != 1 || *r.Touched != 1 {
		t.Fatalf("incremental run after one fault: %d unexpected over %d reports", r.Unexpected, *r.Touched)
	}
	g := gate("planning")
	if want := fmt.Sprintf("incremental run %d found 1 unexpected divergences since the last full run", r.RunID); g.Pass || !slices.Contains(g.Why, want) {
		t.Fatalf("gate after the incremental run found a fault: %+v", g)
	}
	if g := gate("scoping"); !g.Pass {
		t.Errorf("another phase's gate: %+v", g)
	}
	// Put right, the next incremental run finds it resolved, but only a
	// full run opens the gate again.
	e.Exec(`UPDATE dtebridge.shadow_phases SET state = CASE WHEN state = 'completed' THEN 'not_started' ELSE 'completed' END
		WHERE cycle_id = $1 AND report_id = $2 AND phase = 'planning'`, k.CycleID, k.ReportID)
	if r := incremental(); r.Unexpected != 0 || r.Resolved != 1 {
		t.Fatalf("incremental run after the fix: %d unexpected, %d resolved", r.Unexpected, r.Resolved)
	}
	if g := gate("planning"); g.Pass {
		t.Fatalf("gate before a full run: %+v", g)
	}
	e.reconcileRuns(1)
	if g := gate("planning"); !g.Pass {
		t.Fatalf("gate after a clean full run: %+v", g)
	}
}
