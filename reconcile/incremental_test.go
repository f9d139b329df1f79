package reconcile_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
)

// openDivergences is the tracked state: every open divergence.
func openDivergences(t *testing.T, b *bridgetest.Bridge) map[string]bool {
	t.Helper()
	rows, err := b.DB.Pool.Query(context.Background(), `SELECT cycle_id, report_id, phase, kind FROM dtebridge.divergences WHERE resolved_at IS NULL`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for rows.Next() {
		var k dtetype.Key
		var phase, kind string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &phase, &kind); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprintf("%s %s %s", k, phase, kind)] = true
	}
	return out
}

// exportSnapshot holds a transaction open and returns its exported
// snapshot, for runs that must judge the same state, and what ends it.
func exportSnapshot(t *testing.T, b *bridgetest.Bridge) (string, func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := b.DB.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		t.Fatal(err)
	}
	return snap, func() {
		tx.Rollback(context.Background())
		conn.Release()
	}
}

// TestIncrementalMatchesFull: under live traffic, with faults of every
// kind either side can make through its own writes (and some of them
// undone again), an incremental run leaves open exactly the divergences
// a full run finds in the same snapshot, round after round, while looking
// at fewer reports.
func TestIncrementalMatchesFull(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Production, nil)
	b.Simulate(30, 600, 47)
	b.Quiescent(90 * time.Second)
	ctx := context.Background()
	noRules := func(o *reconcile.Options) { o.Expected = nil }

	// An incremental run without a base runs in full, and says why.
	first := run(t, b, func(o *reconcile.Options) { noRules(o); o.Persist, o.Incremental = true, true })
	if first.Kind != "full" || !strings.Contains(first.FullBecause, "no full run") {
		t.Fatalf("first incremental run: kind %q, full because %q", first.Kind, first.FullBecause)
	}
	// Nothing written since: nothing to look at.
	idle := run(t, b, func(o *reconcile.Options) { noRules(o); o.Persist, o.Incremental = true, true })
	if idle.Kind != "incremental" || idle.BaseRun != first.RunID || idle.Touched == nil || *idle.Touched != 0 || idle.Compared != 0 {
		t.Fatalf("idle incremental run: kind %q base %d touched %v compared %d", idle.Kind, idle.BaseRun, idle.Touched, idle.Compared)
	}

	var keys []dtetype.Key
	rows, _ := b.DB.Pool.Query(ctx, `SELECT DISTINCT cycle_id, report_id FROM workflow_phases ORDER BY 1, 2`)
	for rows.Next() {
		var k dtetype.Key
		rows.Scan(&k.CycleID, &k.ReportID)
		keys = append(keys, k)
	}
	rows.Close()
	where := func(k dtetype.Key, label string) string {
		var labels []string
		for l, p := range b.Cfg.Legacy.Phases.All() {
			if p == b.Cfg.Legacy.Phases.Value(label) {
				labels = append(labels, "'"+l+"'")
			}
		}
		return fmt.Sprintf(" WHERE cycle_id = %d AND report_id = %d AND phase_name::text IN (%s)", k.CycleID, k.ReportID, strings.Join(labels, ", "))
	}
	shadow := func(q string, k dtetype.Key, phase string) {
		b.Exec(q+` WHERE cycle_id = $1 AND report_id = $2 AND phase = $3`, k.CycleID, k.ReportID, phase)
	}
	b.Exec(`ALTER TYPE phase_state_enum ADD VALUE 'Escalated'`)
	// Each round faults other reports, on either side, and undoes some of
	// the faults of the round before.
	faults := []func(k dtetype.Key){
		func(k dtetype.Key) { shadow(`UPDATE dtebridge.shadow_phases SET state = 'completed'`, k, "testing") },
		func(k dtetype.Key) {
			shadow(`UPDATE dtebridge.shadow_phases SET status = CASE WHEN status = 'behind_schedule' THEN 'on_schedule' ELSE 'behind_schedule' END`, k, "planning")
		},
		func(k dtetype.Key) {
			shadow(`UPDATE dtebridge.shadow_phases SET planned_end = coalesce(planned_end, now()) + interval '3 days'`, k, "request_info")
		},
		func(k dtetype.Key) { shadow(`UPDATE dtebridge.shadow_phases SET started_by = '4242'`, k, "scoping") },
		func(k dtetype.Key) { shadow(`DELETE FROM dtebridge.shadow_phases`, k, "testing") },
		// A duplicate legacy row, captured.
		func(k dtetype.Key) {
			b.Exec(`INSERT INTO workflow_phases (cycle_id, report_id, phase_name, state, schedule_status, status, planned_end_date)
				SELECT cycle_id, report_id, phase_name, 'Not Started', 'On Track', 'Not Started', planned_end_date FROM workflow_phases` +
				where(k, "Testing") + " LIMIT 1")
		},
		// A label no mapping knows: quarantined.
		func(k dtetype.Key) {
			b.Exec(`UPDATE workflow_phases SET state = 'Escalated', state_override = NULL` + where(k, "Planning"))
		},
		// A change the new rules forbid: a rule violation.
		func(k dtetype.Key) {
			b.Exec(`UPDATE workflow_phases SET state = 'In Progress', state_override = NULL` + where(k, "Finalize Test Report"))
		},
	}
	undo := func(k dtetype.Key) {
		// The shadow's side put back as legacy has it: a re-drive.
		b.Exec(`UPDATE dtebridge.shadow_phases SET state = 'not_started' WHERE cycle_id = $1 AND report_id = $2 AND phase = 'testing' AND state = 'completed'`,
			k.CycleID, k.ReportID)
		b.Exec(`UPDATE workflow_phases SET state = 'Not Started', state_override = NULL` + where(k, "Planning") + ` AND state = 'Escalated'`)
	}
	next := 0
	var faulted []dtetype.Key
	for round := 0; round < 4; round++ {
		// Live traffic on reports of its own while the faults land.
		traffic := make(chan error, 1)
		go func() {
			_, err := legacysim.Simulate(ctx, b.DB.Pool, &legacysim.SimConfig{Profile: b.Profile, Reports: 3, Ops: 120, Rate: 100, Concurrency: 2, Seed: uint64(100 + round)})
			traffic <- err
		}()
		for _, k := range faulted[:min(2, len(faulted))] {
			undo(k)
		}
		faulted = faulted[min(2, len(faulted)):]
		for _, f := range faults {
			k := keys[next%len(keys)]
			next++
			f(k)
			faulted = append(faulted, k)
		}
		time.Sleep(700 * time.Millisecond)
		now := time.Now()
		snap, release := exportSnapshot(t, b)
		inc := run(t, b, func(o *reconcile.Options) {
			noRules(o)
			o.Persist, o.Incremental, o.Snapshot, o.Now = true, true, snap, func() time.Time { return now }
		})
		full := run(t, b, func(o *reconcile.Options) {
			noRules(o)
			o.Snapshot, o.Now = snap, func() time.Time { return now }
		})
		release()
		if inc.Kind != "incremental" {
			t.Fatalf("round %d: kind %q (%s)", round, inc.Kind, inc.FullBecause)
		}
		want := map[string]bool{}
		for _, d := range full.Divergences {
			want[fmt.Sprintf("%s %s %s", d.Key, d.Phase, d.Kind)] = true
		}
		got := map[string]bool{}
		for id := range openDivergences(t, b) {
			var k dtetype.Key
			fmt.Sscanf(id, "%d/%d", &k.CycleID, &k.ReportID)
			if full.Looked(k) { // in flight in this snapshot: judged by neither
				got[id] = true
			}
		}
		var missed, extra []string
		for id := range want {
			if !got[id] {
				missed = append(missed, id)
			}
		}
		for id := range got {
			if !want[id] {
				extra = append(extra, id)
			}
		}
		slices.Sort(missed)
		slices.Sort(extra)
		if len(missed)+len(extra) > 0 {
			t.Errorf("round %d: incremental (%d reports) and full (%d divergences) disagree:\n  missed %v\n  extra %v", round, *inc.Touched, len(want), missed, extra)
		}
		if len(want) == 0 {
			t.Errorf("round %d: the faults made no divergence", round)
		}
		if n := int(*inc.Touched); n == 0 || n >= len(keys) {
			t.Errorf("round %d: the incremental run looked at %d of %d+ reports", round, n, len(keys))
		}
		if err := <-traffic; err != nil {
			t.Fatal(err)
		}
	}
	// A label mapped since: the verdicts of reports nobody wrote may
	// change, so the run is full.
	remapped := run(t, b, func(o *reconcile.Options) {
		noRules(o)
		o.Persist, o.Incremental = true, true
		tbl := o.Table.Clone()
		tbl.States.Set("Escalated", "in_progress")
		o.Table = tbl
	})
	if remapped.Kind != "full" || !strings.Contains(remapped.FullBecause, "mapping") {
		t.Errorf("after a mapping change: kind %q, full because %q", remapped.Kind, remapped.FullBecause)
	}
	// A truncation names no report: the next run is full (after one run
	// under the mapping of before, itself full).
	run(t, b, func(o *reconcile.Options) { noRules(o); o.Persist, o.Incremental = true, true })
	b.Exec(`TRUNCATE dtebridge.mirror_keys`)
	if r := run(t, b, func(o *reconcile.Options) { noRules(o); o.Persist, o.Incremental = true, true }); r.Kind != "full" ||
		!strings.Contains(r.FullBecause, "truncated") {
		t.Errorf("after a truncation: kind %q, full because %q", r.Kind, r.FullBecause)
	}
}

// TestIncrementalRevisitsInFlight: a report the base run found in flight
// was not judged; when it stops being in flight without a write either
// side records (the change acknowledged, never applied), the next
// incremental run still judges it, as a full run would.
func TestIncrementalRevisitsInFlight(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Production, nil)
	b.Simulate(6, 120, 53)
	b.Quiescent(90 * time.Second)
	ctx := context.Background()
	incremental := func() *reconcile.Report {
		return run(t, b, func(o *reconcile.Options) { o.Expected, o.Persist, o.Incremental = nil, true, true })
	}
	incremental() // the first base: full
	b.Srv.Stop()  // the shadow stops following
	var k dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	b.Exec(`UPDATE workflow_phases SET actual_end_date = coalesce(actual_end_date, now()) + interval '5 days' WHERE cycle_id = $1 AND report_id = $2`,
		k.CycleID, k.ReportID)
	base := incremental()
	if base.Looked(k) {
		t.Fatalf("%s is not in flight in the base run", k)
	}
	// Acknowledged without being applied: no row of either side changes.
	b.Exec(`UPDATE dtebridge.checkpoints SET acked_snapshot = pg_current_snapshot() WHERE consumer = 'mirror'`)
	r := incremental()
	full := run(t, b, func(o *reconcile.Options) { o.Expected = nil })
	found := func(r *reconcile.Report) bool {
		for _, d := range r.Divergences {
			if d.Key == k && d.Kind == dtetype.KindDatesMismatch {
				return true
			}
		}
		return false
	}
	if !found(full) {
		t.Fatalf("the full run does not find the undelivered change of %s", k)
	}
	if r.Kind != "incremental" || !found(r) {
		t.Errorf("the incremental run after the base (%s, %d reports) misses the dates_mismatch of %s", r.Kind, *r.Touched, k)
	}
}
