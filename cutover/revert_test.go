package cutover_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestRevertWholeTransaction: under the revert policy, a legacy transaction
// that completes Planning (owned by the new engine) and starts Scoping is
// undone whole when the engine owns Scoping too, and not at all, with the
// reason recorded, when Scoping is still legacy's. Reconcile reports the
// open conflict as one authority_conflict, not the mismatches it causes.
func TestRevertWholeTransaction(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *config.Config) { c.Cutover.ConflictPolicy = cutover.PolicyRevert })
	ctx := context.Background()
	promote := func(p dtetype.Phase) {
		t.Helper()
		if _, err := e.store.Set(ctx, cutover.Change{Phase: p, Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
			t.Fatal(err)
		}
	}
	// startPlanning gives a fresh report whose Planning the engine started.
	startPlanning := func() dtetype.Key {
		t.Helper()
		k := e.coveredReport(100)
		if _, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: "12", Role: "Tester", Reason: "go"}); err != nil {
			t.Fatal(err)
		}
		e.Quiescent(30 * time.Second)
		return k
	}
	conflict := func(k dtetype.Key, phase string) (open int, detail string) {
		e.DB.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE resolved_at IS NULL), coalesce(string_agg(detail, ' | '), '') FROM dtebridge.divergences
			WHERE kind = 'authority_conflict' AND cycle_id = $1 AND report_id = $2 AND phase = $3`, k.CycleID, k.ReportID, phase).Scan(&open, &detail)
		return open, detail
	}
	reconcileReport := func(k dtetype.Key) *reconcile.Report {
		t.Helper()
		o := e.Cfg.ReconcileOptions(e.DB.Pool)
		o.Scope = reconcile.Scope{Keys: []dtetype.Key{k}}
		r, err := reconcile.Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	// 1. Planning on new, Scoping on shadow: nothing is reverted.
	promote("planning")
	k := startPlanning()
	if _, err := e.model.Complete(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, 13, legacysim.CompleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the conflict", func() bool { n, _ := conflict(k, "planning"); return n == 1 })
	e.Quiescent(30 * time.Second)
	time.Sleep(time.Second) // a revert, were one made, would land now
	if _, detail := conflict(k, "planning"); !strings.Contains(detail, "not reverted: legacy transaction") || !strings.Contains(detail, "also changed scoping") {
		t.Errorf("conflict detail: %s", detail)
	}
	if p, s := e.row(k, "Planning"), e.row(k, "Scoping"); p["state"] != "Completed" || s["state"] != "In Progress" {
		t.Errorf("legacy was partly reverted: planning %v, scoping %v", p["state"], s["state"])
	}
	r := reconcileReport(k)
	var kinds []string
	for _, d := range r.Divergences {
		if !d.Expected {
			kinds = append(kinds, string(d.Phase)+" "+d.Kind)
		}
	}
	if strings.Join(kinds, ",") != "planning authority_conflict" {
		t.Errorf("reconcile found %v; want the one open conflict, not the mismatches it causes", kinds)
	}

	// 2. Both on new: the whole transaction is undone.
	promote("scoping")
	k = startPlanning()
	engine := e.row(k, "Planning")
	if _, err := e.model.Complete(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, 13, legacysim.CompleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the revert", func() bool {
		p, s := e.row(k, "Planning"), e.row(k, "Scoping")
		op, _ := conflict(k, "planning")
		os, _ := conflict(k, "scoping")
		return p["state"] == "In Progress" && p["started_by"] == engine["started_by"] && p["completed_by"] == nil && s["state"] == "Not Started" &&
			op == 0 && os == 0
	})
	for _, p := range []string{"planning", "scoping"} {
		if _, detail := conflict(k, p); !strings.Contains(detail, "reverted by the new engine") {
			t.Errorf("%s conflict: %s", p, detail)
		}
	}
	e.Quiescent(30 * time.Second)
	if r := reconcileReport(k); r.Unexpected != 0 {
		t.Errorf("after the revert: %+v", unexpected(r))
	}
}
