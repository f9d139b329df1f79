package legacysim

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/synapsedte/dtebridge/internal/testenv"
)

// virtualClock advances one second per reading, from a fixed instant.
func virtualClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Second)
		return t
	}
}

// dump returns every legacy table's rows as JSON, in key order.
func dump(t *testing.T, db *testenv.DB) []string {
	t.Helper()
	var out []string
	for _, q := range []string{
		`SELECT to_jsonb(x)::text FROM test_cycles x ORDER BY cycle_id`,
		`SELECT to_jsonb(x)::text FROM reports x ORDER BY report_id`,
		`SELECT to_jsonb(x)::text FROM cycle_reports x ORDER BY cycle_id, report_id`,
		`SELECT to_jsonb(x)::text FROM workflow_phases x ORDER BY phase_id`,
	} {
		rows, err := db.Pool.Query(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func simulateInto(t *testing.T, p *Profile, cfg SimConfig) (*testenv.DB, *Summary) {
	t.Helper()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := Init(ctx, db.Pool, p); err != nil {
		t.Fatal(err)
	}
	cfg.Profile = p
	s, err := Simulate(ctx, db.Pool, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	return db, s
}

func TestSimulateIsReproducible(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			run := func(seed uint64) ([]string, *Summary) {
				db, s := simulateInto(t, p, SimConfig{Reports: 12, ReportsPerCycle: 5, Ops: 400, Seed: seed, Concurrency: 1, Now: virtualClock()})
				s.ElapsedSecs = 0
				return dump(t, db), s
			}
			d1, s1 := run(7)
			d2, s2 := run(7)
			if d := cmp.Diff(s1, s2); d != "" {
				t.Errorf("same seed, different summaries (-first +second):\n%s", d)
			}
			if !reflect.DeepEqual(d1, d2) {
				for i := range min(len(d1), len(d2)) {
					if d1[i] != d2[i] {
						t.Fatalf("same seed, different data at row %d:\n%s\n%s", i, d1[i], d2[i])
					}
				}
				t.Fatalf("same seed, %d rows then %d rows", len(d1), len(d2))
			}
			if d3, _ := run(8); reflect.DeepEqual(d1, d3) {
				t.Error("seeds 7 and 8 wrote identical data")
			}
		})
	}
}

func TestSimulateSummaryMatchesDatabase(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			db, s := simulateInto(t, p, SimConfig{Reports: 60, ReportsPerCycle: 20, Ops: 2500, Seed: 3, Concurrency: 4})
			ctx := context.Background()

			got := map[string]map[string]int64{}
			rows, err := db.Pool.Query(ctx, `SELECT phase_name::text, state::text, count(*) FROM workflow_phases GROUP BY 1, 2`)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var phase, state string
				var n int64
				if err := rows.Scan(&phase, &state, &n); err != nil {
					t.Fatal(err)
				}
				if got[phase] == nil {
					got[phase] = map[string]int64{}
				}
				got[phase][state] = n
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(got, s.Rows); d != "" {
				t.Errorf("rows by phase and state (-database +summary):\n%s", d)
			}

			var reports, cycles, dups int64
			if err := db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM cycle_reports), (SELECT count(*) FROM test_cycles),
				(SELECT count(*) FROM workflow_phases a WHERE EXISTS (SELECT 1 FROM workflow_phases b WHERE b.cycle_id = a.cycle_id
					AND b.report_id = a.report_id AND b.phase_name = a.phase_name AND b.phase_id < a.phase_id))`).
				Scan(&reports, &cycles, &dups); err != nil {
				t.Fatal(err)
			}
			if reports != int64(s.Reports) || reports != s.Ops[OpCreateReport] || cycles != int64(s.Cycles) {
				t.Errorf("database has %d reports in %d cycles; summary says %d (%d created) in %d", reports, cycles, s.Reports, s.Ops[OpCreateReport], s.Cycles)
			}
			if dups != s.Ops[OpDuplicateRow] {
				t.Errorf("database has %d duplicate rows, summary says %d", dups, s.Ops[OpDuplicateRow])
			}
			if traffic := s.TotalOps() - s.Ops[OpCreateReport]; traffic+sumValues(s.Rejected) != 2500 {
				t.Errorf("%d traffic operations applied and %d rejected, want 2500 in all", traffic, sumValues(s.Rejected))
			}

			// The traffic has the variety the bridge must handle.
			want := []string{OpStart, OpComplete, OpStartOutOfOrder, OpOverride, OpClearOverride, OpReopenState,
				OpReopenReset, OpRefresh, OpBulkReschedule}
			if p.StatusColumn {
				want = append(want, OpCompleteStatusOnly, OpReopenStatus, OpReopenApproval, OpSubmitForApproval, OpDuplicateRow)
			}
			for _, k := range want {
				if s.Ops[k] == 0 {
					t.Errorf("no %s operations in %v", k, s.Ops)
				}
			}
			if s.Rejected[OpGateProbe] == 0 {
				t.Errorf("no gate refusals in %v", s.Rejected)
			}
			if s.BulkRows < 20 {
				t.Errorf("bulk operations touched only %d rows", s.BulkRows)
			}
			var parallel int64
			if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM workflow_phases a JOIN workflow_phases b
				ON a.cycle_id = b.cycle_id AND a.report_id = b.report_id AND a.phase_order + 1 = b.phase_order
				WHERE a.state::text = 'Not Started' AND b.state::text <> 'Not Started'`).Scan(&parallel); err != nil {
				t.Fatal(err)
			}
			if parallel == 0 {
				t.Error("no out-of-order progress in the data")
			}
		})
	}
}
