package adapter_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/legacy"
)

// TestLabelAddedMidRun adds a state label with ALTER TYPE ... ADD VALUE while
// the reader runs. Changes that use it go to quarantine with their raw row,
// the report's later changes wait behind them, other reports keep flowing,
// and after the mapping is extended quarantine retry gets everything
// delivered in order.
func TestLabelAddedMidRun(t *testing.T) {
	t.Parallel()
	for _, capture := range captures {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			testLabelAddedMidRun(t, capture)
		})
	}
}

func testLabelAddedMidRun(t *testing.T, capture string) {
	f := setup(t, setupOptions{reports: 3, trigger: capture})
	c := newCollector()
	m := f.reader(c, nil)
	bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
	ctx := context.Background()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := f.pool.Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var k1, k2 dtetype.Key
	if err := f.pool.QueryRow(ctx, `SELECT min(cycle_id), min(report_id), max(report_id) FROM workflow_phases`).Scan(&k1.CycleID, &k1.ReportID, &k2.ReportID); err != nil {
		t.Fatal(err)
	}
	k2.CycleID = k1.CycleID
	exec(`ALTER TYPE workflow_state_enum ADD VALUE 'Escalated'`)
	exec(`UPDATE workflow_phases SET state = 'Escalated', completed_by = 1 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k1.CycleID, k1.ReportID)
	exec(`UPDATE workflow_phases SET state = 'In Progress', completed_by = 2 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k1.CycleID, k1.ReportID)
	exec(`UPDATE workflow_phases SET state = 'In Progress', completed_by = 3 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k2.CycleID, k2.ReportID)

	bridgetest.WaitFor(t, 10*time.Second, "the other report's change", func() bool {
		for _, ch := range c.snapshot() {
			if ch.Key == k2 && ch.CompletedBy == "3" {
				return true
			}
		}
		return false
	})
	entries, err := f.cfg.Store(f.pool).ListQuarantine(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Reason != legacy.ReasonUnknownLabel || entries[1].Reason != legacy.ReasonHeld {
		t.Fatalf("quarantine = %+v, want an unknown_label entry and a held one", entries)
	}
	if entries[0].Key == nil || *entries[0].Key != k1 || len(entries[0].Raw) == 0 {
		t.Errorf("quarantine entry lacks its key or raw value: %+v", entries[0])
	}
	for _, ch := range c.snapshot() {
		if ch.Key == k1 && ch.Op != dtetype.OpSnapshot {
			t.Fatalf("a change of the quarantined report was delivered: %+v", ch)
		}
	}
	if got := testutil.ToFloat64(m.Quarantined.WithLabelValues(legacy.ReasonUnknownLabel)); got != 1 {
		t.Errorf("quarantined{reason=unknown_label} = %v, want 1", got)
	}

	// A retry with the old mapping changes nothing.
	res, err := adapter.RetryQuarantine(ctx, f.cfg.Store(f.pool), f.translator())
	if err != nil {
		t.Fatal(err)
	}
	if res.Released != 0 || res.Remaining[legacy.ReasonUnknownLabel] != 1 {
		t.Fatalf("retry with the old mapping: %+v", res)
	}

	// Extend the mapping, as an operator would in the config file.
	f.cfg.Legacy.States.Set("Escalated", dtetype.StateInProgress)
	res, err = adapter.RetryQuarantine(ctx, f.cfg.Store(f.pool), f.translator())
	if err != nil {
		t.Fatal(err)
	}
	if res.Released != 2 {
		t.Fatalf("retry with the extended mapping released %d, want 2: %+v", res.Released, res)
	}
	bridgetest.WaitFor(t, 10*time.Second, "the released changes", func() bool {
		n := 0
		for _, ch := range c.snapshot() {
			if ch.Key == k1 && ch.Op == dtetype.OpUpdate {
				n++
			}
		}
		return n == 2
	})
	var order []string
	for _, ch := range c.snapshot() {
		if ch.Key == k1 && ch.Op == dtetype.OpUpdate {
			order = append(order, ch.CompletedBy)
		}
	}
	if order[0] != "1" || order[1] != "2" {
		t.Errorf("released changes arrived as %v, want [1 2]", order)
	}
	// The report is no longer held: its next change flows directly.
	exec(`UPDATE workflow_phases SET completed_by = 4 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k1.CycleID, k1.ReportID)
	bridgetest.WaitFor(t, 10*time.Second, "the report's next change", func() bool {
		for _, ch := range c.snapshot() {
			if ch.Key == k1 && ch.CompletedBy == "4" {
				return true
			}
		}
		return false
	})
	if left, _ := f.cfg.Store(f.pool).ListQuarantine(ctx, false); len(left) != 0 {
		t.Errorf("%d entries still pending", len(left))
	}
}

func testutilGauge(m *adapter.Metrics) float64 { return testutil.ToFloat64(m.Backlog) }
