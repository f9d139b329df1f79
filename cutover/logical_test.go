package cutover_test

import (
	"context"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestLogicalCaptureWriteBack runs a phase on new under log-based
// capture: the decoder cannot see the write-back's session setting, but it
// sees its write mark, so the write-back's changes arrive as the bridge's
// (no echo, no conflict), while a legacy write to the same report is an
// authority conflict.
func TestLogicalCaptureWriteBack(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *config.Config) { c.Capture.Mode = adapter.ModeLogical })
	ctx := context.Background()
	const phase = dtetype.Phase("planning")
	if r := e.reconcileRuns(3); r.Unexpected != 0 {
		t.Fatalf("not clean before promotion: %+v", r.Counts)
	}
	if _, err := e.store.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "logical capture"}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	k := e.coveredReport(100)
	got, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: phase, Actor: "12", Role: "Tester", Reason: "kick-off"})
	if err != nil || got.State != dtetype.StateInProgress {
		t.Fatalf("start: %v %+v", err, got)
	}
	origins := func() (bridge, legacy int) {
		rows, err := e.DB.Pool.Query(ctx, `SELECT origin FROM dtebridge.changes WHERE (new_row->>'report_id')::bigint = $1 AND (new_row->>'phase_name') = 'Planning'
			AND new_row->>'state' = 'In Progress'`, k.ReportID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var o string
			rows.Scan(&o)
			if o == dtetype.OriginBridge {
				bridge++
			} else {
				legacy++
			}
		}
		return bridge, legacy
	}
	bridgetest.WaitFor(t, 30*time.Second, "the write-back's change in the change log", func() bool { b, _ := origins(); return b == 1 })
	if _, l := origins(); l != 0 {
		t.Errorf("the write-back's change was also taken for legacy's %d times", l)
	}
	if n := e.count(`SELECT count(*) FROM dtebridge.write_marks`); n == 0 {
		t.Error("the write-back left no write mark")
	}
	e.Quiescent(30 * time.Second)
	conflicts := func() int64 {
		return e.count(`SELECT count(*) FROM dtebridge.divergences WHERE kind = 'authority_conflict' AND resolved_at IS NULL AND cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID)
	}
	if n := conflicts(); n != 0 {
		t.Fatalf("the write-back's own change raised %d authority conflicts", n)
	}
	if _, err := e.model.Reopen(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, legacysim.ReopenState); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the legacy write's authority conflict", func() bool { return conflicts() == 1 })
}

func (e *env) count(q string, args ...any) int64 {
	e.t.Helper()
	var n int64
	if err := e.DB.Pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
	return n
}
