package adapter_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/store"
)

// bulkRows inserts n phase rows directly in SQL, faster than the model.
func bulkRows(t *testing.T, f *fixture, n int) {
	t.Helper()
	_, err := f.pool.Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO test_cycles (cycle_name, start_date) VALUES ('bulk', '2026-01-01');
		INSERT INTO reports (report_name) SELECT 'r' || g FROM generate_series(1, %d) g;
		INSERT INTO cycle_reports (cycle_id, report_id) SELECT (SELECT max(cycle_id) FROM test_cycles), report_id FROM reports;
		INSERT INTO workflow_phases (cycle_id, report_id, phase_name, state, schedule_status, planned_end_date, completed_by)
		SELECT (SELECT max(cycle_id) FROM test_cycles), report_id, 'Testing', 'Not Started', 'On Schedule', '2026-02-01', 0 FROM reports`, n))
	if err != nil {
		t.Fatal(err)
	}
}

// TestBulkUpdateCapturedCompletely updates 10,000 rows in one statement in
// one transaction, in both trigger modes, and then deletes them: every row
// change arrives.
func TestBulkUpdateCapturedCompletely(t *testing.T) {
	t.Parallel()
	for _, trig := range captures {
		t.Run(trig, func(t *testing.T) {
			t.Parallel()
			f := setup(t, setupOptions{trigger: trig})
			bulkRows(t, f, 10000)
			c := newCollector()
			f.reader(c, func(rc *adapter.ReaderConfig) { rc.BatchSize = 1000 })
			bridgetest.WaitFor(t, 60*time.Second, "the backfill", func() bool { return c.backfills > 0 })
			ctx := context.Background()
			if _, err := f.pool.Exec(ctx, `UPDATE workflow_phases SET state = 'In Progress', completed_by = 7`); err != nil {
				t.Fatal(err)
			}
			count := func(op dtetype.Op, by string) int {
				n := 0
				for _, ch := range c.snapshot() {
					if ch.Op == op && ch.CompletedBy == by {
						n++
					}
				}
				return n
			}
			bridgetest.WaitFor(t, 60*time.Second, "10,000 updates", func() bool { return count(dtetype.OpUpdate, "7") == 10000 })
			for _, ch := range c.snapshot() {
				if ch.Op == dtetype.OpUpdate && ch.State != dtetype.StateInProgress {
					t.Fatalf("update %s has state %s", ch.EventID, ch.State)
				}
			}
			if _, err := f.pool.Exec(ctx, `DELETE FROM workflow_phases`); err != nil {
				t.Fatal(err)
			}
			bridgetest.WaitFor(t, 60*time.Second, "10,000 deletes", func() bool { return count(dtetype.OpDelete, "7") == 10000 })
			if got := applied(c.snapshot()); len(got) != 0 {
				t.Errorf("%d rows left after deleting them all", len(got))
			}
		})
	}
}

// TestRetentionPrunesOnlyAcknowledged checks that retention deletes changes
// every consumer acknowledged, keeps the rest, and that the backlog counts
// what is not acknowledged.
func TestRetentionPrunesOnlyAcknowledged(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{reports: 3})
	ctx := context.Background()
	generate(t, f, 200, 4)
	// No consumer has a checkpoint: nothing is acknowledged, nothing pruned.
	if n, err := f.cfg.Store(f.pool).Prune(ctx, time.Nanosecond, time.Hour); err != nil || n != 0 {
		t.Fatalf("pruned %d (err %v) with no consumer", n, err)
	}
	before := f.count(`SELECT count(*) FROM dtebridge.changes`)
	b, err := f.cfg.Store(f.pool).BacklogOf(ctx, store.MirrorConsumer)
	if err != nil || b.Changes != before || b.Age <= 0 {
		t.Fatalf("backlog %+v (err %v), want %d changes with an age", b, err, before)
	}

	c := newCollector()
	m := f.reader(c, func(rc *adapter.ReaderConfig) { rc.Retention = -1 })
	bridgetest.WaitFor(t, 20*time.Second, "the backfill", func() bool { return c.backfills > 0 })
	generate(t, f, 200, 5)
	total := f.count(`SELECT count(*) FROM dtebridge.changes`)
	bridgetest.WaitFor(t, 20*time.Second, "the backlog to drain", func() bool {
		b, err := f.cfg.Store(f.pool).BacklogOf(ctx, store.MirrorConsumer)
		return err == nil && b.Changes == 0
	})
	bridgetest.WaitFor(t, 5*time.Second, "the backlog gauge", func() bool { return testutilGauge(m) == 0 })

	// A long retention keeps everything.
	if n, err := f.cfg.Store(f.pool).Prune(ctx, time.Hour, time.Hour); err != nil || n != 0 {
		t.Fatalf("pruned %d (err %v) with an hour's retention", n, err)
	}
	// A second consumer that has acknowledged nothing since its backfill
	// holds back what it has not seen.
	maxBefore := f.count(`SELECT max(id) FROM dtebridge.changes`)
	// Its snapshot sees every change so far and none after; built from the
	// change log, not taken, so a transaction another test holds open on
	// the shared cluster does not hold it back.
	if _, err := f.pool.Exec(ctx, `INSERT INTO dtebridge.checkpoints (consumer, acked_snapshot)
		SELECT 'slow', (x || ':' || x || ':')::pg_snapshot FROM (SELECT (max(xid)::text::bigint + 1)::text AS x FROM dtebridge.changes) s`); err != nil {
		t.Fatal(err)
	}
	caughtUp := func() {
		bridgetest.WaitFor(t, 20*time.Second, "the mirror to catch up", func() bool {
			b, _ := f.cfg.Store(f.pool).BacklogOf(ctx, store.MirrorConsumer)
			return b.Changes == 0
		})
	}
	generate(t, f, 100, 6)
	caughtUp()
	// Pruning goes by the oldest transaction either consumer's snapshot
	// still saw running, cluster-wide. The mirror acknowledges with the
	// snapshot of its last epoch, which a transaction another test held
	// open on the shared cluster may have held back, and keeps it while
	// idle: a new change gives it a new one. Pruning never removes a change
	// the slow consumer has not seen.
	var n int64
	seed := uint64(100)
	bridgetest.WaitFor(t, 60*time.Second, "pruning what both consumers acknowledged", func() bool {
		m, err := f.cfg.Store(f.pool).Prune(ctx, time.Nanosecond, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if n += m; n > 0 {
			return true
		}
		seed++
		generate(t, f, 1, seed)
		caughtUp()
		return false
	})
	after := f.count(`SELECT count(*) FROM dtebridge.changes WHERE id > ` + strconv.FormatInt(maxBefore, 10))
	left := f.count(`SELECT count(*) FROM dtebridge.changes`)
	kept := f.count(`SELECT count(*) FROM dtebridge.changes WHERE id > ` + strconv.FormatInt(maxBefore, 10))
	if n == 0 || n > total || kept != after || left != after+(total-n) {
		t.Errorf("pruned %d of %d acknowledged by both; %d left, %d of the %d the slow consumer has not seen", n, total, left, kept, after)
	}
	slow, err := f.cfg.Store(f.pool).BacklogOf(ctx, "slow")
	if err != nil || slow.Changes != after {
		t.Errorf("slow consumer's backlog %+v (err %v), want %d", slow, err, after)
	}
}
