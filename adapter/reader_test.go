package adapter_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/store"
)

// counterSetup gives every row completed_by = 0, so writers can count
// updates in it: each update adds one, and a row's delivered values must
// then run 0, 1, 2, ... with no gap, repeat or inversion.
func counterSetup(t *testing.T, reports int, capture string) *fixture {
	return setup(t, setupOptions{reports: reports, counters: true, trigger: capture})
}

// eachCapture runs test as a parallel subtest per capture variant.
func eachCapture(t *testing.T, test func(t *testing.T, capture string)) {
	t.Parallel()
	for _, capture := range captures {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			test(t, capture)
		})
	}
}

func (f *fixture) rowIDs() []int64 {
	f.t.Helper()
	var ids []int64
	if err := f.pool.QueryRow(context.Background(), `SELECT array_agg(phase_id ORDER BY phase_id) FROM workflow_phases`).Scan(&ids); err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// checkCounters checks, per row, that the delivered completed_by values form
// one run of consecutive integers, restarting only at a backfill's value,
// which must not go backwards; and that each row ends at its legacy value.
func checkCounters(t *testing.T, f *fixture, changes []dtetype.PhaseChange) {
	t.Helper()
	last := map[string]int{}
	bad := 0
	for _, c := range changes {
		v, err := strconv.Atoi(c.CompletedBy)
		if err != nil {
			t.Fatalf("change %s: completed_by %q", c.EventID, c.CompletedBy)
		}
		prev, seen := last[c.RowID]
		switch {
		case c.Op == dtetype.OpSnapshot:
			if seen && v < prev {
				bad++
				if bad < 5 {
					t.Errorf("row %s: backfill value %d after streamed %d", c.RowID, v, prev)
				}
			}
		case !seen:
			bad++
			if bad < 5 {
				t.Errorf("row %s: stream change %s (value %d) before any backfill", c.RowID, c.EventID, v)
			}
		case v != prev+1:
			bad++
			if bad < 5 {
				t.Errorf("row %s: value %d after %d (change %s): a gap, a repeat or an inversion", c.RowID, v, prev, c.EventID)
			}
		}
		last[c.RowID] = v
	}
	want := f.legacyRows()
	for id, w := range want {
		if strconv.Itoa(last[id]) != w.completedBy {
			bad++
			if bad < 10 {
				t.Errorf("row %s: delivered up to %d, legacy has %s", id, last[id], w.completedBy)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d counter violations", bad)
	}
}

// writers runs concurrent legacy transactions that each add one to the
// counter of one to three rows, with think time inside the transaction and a
// random delay before commit, until total committed row updates reach n. One
// transaction is held open for hold. It returns the committed updates.
func writers(ctx context.Context, t *testing.T, f *fixture, workers, n int, hold time.Duration) int64 {
	t.Helper()
	ids := f.rowIDs()
	var committed atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	update := func(tx pgx.Tx, id int64) error {
		_, err := tx.Exec(ctx, `UPDATE workflow_phases SET completed_by = completed_by + 1, updated_at = now() WHERE phase_id = $1`, id)
		return err
	}
	if hold > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
				if err := update(tx, ids[0]); err != nil {
					return err
				}
				time.Sleep(hold)
				committed.Add(1) // counted on commit below; the tx cannot fail after this
				return nil
			})
		}()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 99))
			for committed.Load() < int64(n) {
				k := 1 + rng.IntN(3)
				rows := make([]int64, 0, k)
				for range k {
					// Row 0 belongs to the held transaction.
					rows = append(rows, ids[1+rng.IntN(len(ids)-1)])
				}
				slices.Sort(rows)
				rows = slices.Compact(rows)
				err := pgx.BeginFunc(ctx, f.pool, func(tx pgx.Tx) error {
					for _, id := range rows {
						time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
						if err := update(tx, id); err != nil {
							return err
						}
					}
					time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				committed.Add(int64(len(rows)))
			}
			errs <- nil
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return committed.Load()
}

// naiveReader is the control: it follows id > last, which loses changes
// whose transaction commits after a later id was read.
func naiveReader(ctx context.Context, f *fixture) (func() map[int64]bool, func()) {
	seen := map[int64]bool{}
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var last int64
		for ctx.Err() == nil {
			rows, err := f.pool.Query(ctx, `SELECT id FROM dtebridge.changes WHERE id > $1 ORDER BY id LIMIT 1000`, last)
			if err != nil {
				return
			}
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					mu.Lock()
					seen[id] = true
					mu.Unlock()
					last = id
				}
			}
			rows.Close()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return func() map[int64]bool {
			mu.Lock()
			defer mu.Unlock()
			return seen
		}, func() {
			cancel()
			<-done
		}
}

// TestConcurrentWriters is the capture acceptance test: 8 writers with think
// time and delayed commits, one transaction held open for seconds, 20,000
// changes. Every change arrives, none twice, and each row's changes arrive in
// order. The naive id > last reader, run alongside, must lose changes.
func TestConcurrentWriters(t *testing.T) { eachCapture(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T, capture string) {
	f := counterSetup(t, 200, capture)
	c := newCollector()
	f.reader(c, nil)
	bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
	ctx := context.Background()
	naiveSeen, stopNaive := naiveReader(ctx, f)

	n := writers(ctx, t, f, 8, 20000, 4*time.Second)
	f.waitLogged()
	total := f.count(`SELECT count(*) FROM dtebridge.changes`)
	if total != n || n < 20000 {
		t.Fatalf("writers committed %d row updates, change table has %d", n, total)
	}
	bridgetest.WaitFor(t, 60*time.Second, "every change to be delivered", func() bool {
		return int64(len(c.snapshot())) >= total+f.count(`SELECT count(*) FROM workflow_phases`)
	})
	time.Sleep(300 * time.Millisecond) // let the naive reader take a last look
	stopNaive()

	changes := c.snapshot()
	delivered := map[string]bool{}
	for _, ch := range changes {
		delivered[ch.EventID] = true
	}
	var ids []int64
	if err := f.pool.QueryRow(ctx, `SELECT array_agg(id) FROM dtebridge.changes`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for _, id := range ids {
		if !delivered["c"+strconv.FormatInt(id, 10)] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d changes never delivered", missing, len(ids))
	}
	for id, k := range c.seen {
		if k > 1 {
			t.Errorf("change %s delivered %d times", id, k)
		}
	}
	checkCounters(t, f, changes)

	lost := 0
	seen := naiveSeen()
	for _, id := range ids {
		if !seen[id] {
			lost++
		}
	}
	if capture == adapter.ModeLogical {
		// The decoder writes in commit order, so even id > last holds.
		t.Logf("%d changes from %d writers delivered once each in row order", len(ids), 8)
		return
	}
	if lost == 0 {
		t.Error("control failed: the naive id > last reader lost nothing, so this test cannot tell a gap-free reader from it")
	}
	t.Logf("%d changes from %d writers delivered once each in row order; the naive reader lost %d", len(ids), 8, lost)
}

// TestRowOrderAcrossLongTransaction builds the interleaving where ordering by
// (xid, id) goes wrong: T2 takes the smaller xid, T1 updates row R and
// commits, then T2 updates R and commits. R's changes must arrive T1 first.
func TestRowOrderAcrossLongTransaction(t *testing.T) {
	eachCapture(t, testRowOrderAcrossLongTransaction)
}

func testRowOrderAcrossLongTransaction(t *testing.T, capture string) {
	f := counterSetup(t, 2, capture)
	c := newCollector()
	f.reader(c, nil)
	bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
	ctx := context.Background()
	ids := f.rowIDs()
	r, other := ids[0], ids[1]
	inc := `UPDATE workflow_phases SET completed_by = completed_by + 1 WHERE phase_id = $1`

	t2, err := f.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Rollback(ctx)
	if _, err := t2.Exec(ctx, inc, other); err != nil { // T2 takes its xid first
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, inc, r); err != nil { // T1 updates R and commits
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 10*time.Second, "T1's change", func() bool { return len(c.snapshot()) > 14 })
	if _, err := t2.Exec(ctx, inc, r); err != nil {
		t.Fatal(err)
	}
	if err := t2.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 10*time.Second, "T2's changes", func() bool { return len(c.snapshot()) >= 14+3 })

	var inverted bool
	if err := f.pool.QueryRow(ctx, `SELECT (SELECT coalesce(source_xid, xid) FROM dtebridge.changes WHERE (new_row->>'phase_id')::int = $1 ORDER BY id DESC LIMIT 1)
		< (SELECT coalesce(source_xid, xid) FROM dtebridge.changes WHERE (new_row->>'phase_id')::int = $1 ORDER BY id LIMIT 1)`, r).Scan(&inverted); err != nil {
		t.Fatal(err)
	}
	if !inverted {
		t.Fatal("setup failed: T2's xid is not below T1's, so (xid, id) order would be right anyway")
	}
	checkCounters(t, f, c.snapshot())
}

// TestBackfillWhileWritersActive starts the reader, and later requests a
// second backfill, while writers run: each backfill must hand over to the
// stream with no gap and no double-apply, which the per-row counters show.
func TestBackfillWhileWritersActive(t *testing.T) { eachCapture(t, testBackfillWhileWritersActive) }

func testBackfillWhileWritersActive(t *testing.T, capture string) {
	f := counterSetup(t, 100, capture)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int64)
	go func() { done <- writers(ctx, t, f, 4, 8000, 0) }()
	time.Sleep(300 * time.Millisecond)
	c := newCollector()
	f.reader(c, func(rc *adapter.ReaderConfig) { rc.BatchSize = 200 })
	bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
	time.Sleep(500 * time.Millisecond)
	if err := f.cfg.Store(f.pool).RequestBackfill(ctx, store.MirrorConsumer); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the requested backfill", func() bool { return c.backfills > 1 })
	<-done
	rows := f.count(`SELECT count(*) FROM workflow_phases`)
	bridgetest.WaitFor(t, 60*time.Second, "delivery to catch up", func() bool { return diffStates(f.legacyRows(), applied(c.snapshot())) == "" })
	snapshots := 0
	for _, ch := range c.snapshot() {
		if ch.Op == dtetype.OpSnapshot {
			snapshots++
		}
	}
	if int64(snapshots) != 2*rows {
		t.Errorf("%d backfilled rows delivered, want %d (two backfills of %d rows)", snapshots, 2*rows, rows)
	}
	checkCounters(t, f, c.snapshot())
}
