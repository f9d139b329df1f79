package adapter_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/store"
)

// TestLogicalFloorsSkipWhatRowsCovered holds the decoder's writes to the
// change log (a lock on its position table) while legacy commits counter
// updates, then serves a backfill and a re-drive from snapshots that see
// those commits: their rows carry the updates, so the updates, once
// written, must be skipped, not replayed after the rows (the counters
// would run backwards).
func TestLogicalFloorsSkipWhatRowsCovered(t *testing.T) {
	t.Parallel()
	for _, what := range []string{"backfill", "redrive"} {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			f := counterSetup(t, 3, adapter.ModeLogical)
			c := newCollector()
			m := f.reader(c, nil)
			bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
			ctx := context.Background()
			// The decoder's next write blocks on the position table.
			lock, err := f.pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer lock.Rollback(ctx)
			if _, err := lock.Exec(ctx, `LOCK TABLE dtebridge.logical_positions IN EXCLUSIVE MODE`); err != nil {
				t.Fatal(err)
			}
			ids := f.rowIDs()
			var key dtetype.Key
			if err := f.pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_id = $1`, ids[0]).Scan(&key.CycleID, &key.ReportID); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if _, err := f.pool.Exec(ctx, `UPDATE workflow_phases SET completed_by = completed_by + 1 WHERE cycle_id = $1 AND report_id = $2`, key.CycleID, key.ReportID); err != nil {
					t.Fatal(err)
				}
			}
			st := f.cfg.Store(f.pool)
			before := len(c.snapshot())
			switch what {
			case "backfill":
				if err := st.RequestBackfill(ctx, store.MirrorConsumer); err != nil {
					t.Fatal(err)
				}
				bridgetest.WaitFor(t, 30*time.Second, "the requested backfill", func() bool { return c.backfills > 1 })
			case "redrive":
				if _, err := st.RequestRedrives(ctx, store.RedriveRequest{Keys: []dtetype.Key{key}, Reason: store.RedriveRepair, RequestedBy: "test"}); err != nil {
					t.Fatal(err)
				}
				if err := st.WakeCapture(ctx); err != nil {
					t.Fatal(err)
				}
				bridgetest.WaitFor(t, 30*time.Second, "the re-drive", func() bool { return len(c.snapshot()) > before })
			}
			if n := f.count(`SELECT count(*) FROM dtebridge.changes WHERE source_xid IS NOT NULL AND (new_row->>'completed_by')::int > 0`); n != 0 {
				t.Fatalf("setup failed: %d updates reached the change log before the rows were delivered", n)
			}
			if err := lock.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			f.waitLogged()
			bridgetest.WaitFor(t, 30*time.Second, "the held updates to be skipped", func() bool { return testutil.ToFloat64(m.Covered) >= 3*7 })
			// A later update flows as usual.
			if _, err := f.pool.Exec(ctx, `UPDATE workflow_phases SET completed_by = completed_by + 1 WHERE phase_id = $1`, ids[0]); err != nil {
				t.Fatal(err)
			}
			bridgetest.WaitFor(t, 30*time.Second, "the next update", func() bool { return diffStates(f.legacyRows(), applied(c.snapshot())) == "" })
			checkCounters(t, f, c.snapshot())
			if got := testutil.ToFloat64(m.Covered); got != 3*7 {
				t.Errorf("%v changes skipped as covered, want %d (3 updates of the report's 7 rows)", got, 3*7)
			}
			// The change log caught up with the snapshot: the floor is gone.
			bridgetest.WaitFor(t, 30*time.Second, "the floor to be dropped", func() bool {
				return f.count(`SELECT count(*) FROM dtebridge.capture_floors`) == 0
			})
		})
	}
}

// TestLogicalCapturesReplicaRoleWrites writes with session_replication_role
// = replica, as fix-up scripts and restores do: triggers do not fire, so
// trigger capture misses the write (reconcile finds it later), while
// log-based capture delivers it.
func TestLogicalCapturesReplicaRoleWrites(t *testing.T) {
	t.Parallel()
	for _, capture := range []string{adapter.TriggerRow, adapter.ModeLogical} {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			f := setup(t, setupOptions{reports: 2, trigger: capture})
			c := newCollector()
			f.reader(c, nil)
			bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
			ctx := context.Background()
			var id int64
			if err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
					return err
				}
				return tx.QueryRow(ctx, `UPDATE workflow_phases SET completed_by = 4242
					WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases) RETURNING phase_id`).Scan(&id)
			}); err != nil {
				t.Fatal(err)
			}
			// A normal write after it shows when the stream has passed it.
			if _, err := f.pool.Exec(ctx, `UPDATE workflow_phases SET completed_by = 7 WHERE phase_id = (SELECT max(phase_id) FROM workflow_phases)`); err != nil {
				t.Fatal(err)
			}
			bridgetest.WaitFor(t, 30*time.Second, "the normal write", func() bool {
				for _, ch := range c.snapshot() {
					if ch.CompletedBy == "7" {
						return true
					}
				}
				return false
			})
			got := false
			for _, ch := range c.snapshot() {
				got = got || (ch.Op == dtetype.OpUpdate && ch.CompletedBy == "4242")
			}
			if want := capture == adapter.ModeLogical; got != want {
				t.Errorf("write under session_replication_role = replica delivered: %v, want %v", got, want)
			}
		})
	}
}
