package adapter_test

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
)

// generate makes n committed legacy changes with the simulator.
func generate(t *testing.T, f *fixture, ops int64, seed uint64) {
	t.Helper()
	if _, err := legacysim.Simulate(context.Background(), f.pool, &legacysim.SimConfig{Profile: f.profile, Reports: 10, Ops: ops, Rate: 0, Concurrency: 2, Seed: seed}); err != nil {
		t.Fatal(err)
	}
}

// TestCrashRedeliversNeverLoses kills a reader process between delivering a
// batch and checkpointing it. The next reader redelivers that batch and
// nothing is lost.
func TestCrashRedeliversNeverLoses(t *testing.T) {
	t.Parallel()
	for _, capture := range captures {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			testCrashRedeliversNeverLoses(t, capture)
		})
	}
}

func testCrashRedeliversNeverLoses(t *testing.T, capture string) {
	f := setup(t, setupOptions{reports: 5, trigger: capture})
	out := filepath.Join(t.TempDir(), "deliveries")

	// The backfill is the first batch; the crash comes at the fifth.
	first := f.child(out, "first", 100, 5)
	bridgetest.WaitFor(t, 30*time.Second, "the first reader's backfill", func() bool { return len(readDeliveries(t, out)) >= 35 })
	generate(t, f, 1500, 1)
	exited := make(chan error, 1)
	go func() { exited <- first.Wait() }()
	var err error
	select {
	case err = <-exited:
	case <-time.After(60 * time.Second):
		t.Fatal("the first reader did not reach its fifth batch")
	}
	if err == nil {
		t.Fatal("the first reader exited cleanly; it should have been killed mid-batch")
	}
	crashed := readDeliveries(t, out)
	if len(crashed) == 0 {
		t.Fatal("the first reader delivered nothing before it died")
	}

	f.child(out, "second", 100, 0)
	f.waitLogged()
	total := f.count(`SELECT count(*) FROM dtebridge.changes`) + 35 // plus the backfill of 5 reports × 7 phases
	if capture == adapter.ModeLogical {
		// The crash may have come in the middle of writing decoded
		// changes: none is in the change log twice.
		if n := f.count(`SELECT count(*) FROM (SELECT 1 FROM dtebridge.changes GROUP BY source_xid, old_row::text, new_row::text HAVING count(*) > 1) d`); n != 0 {
			t.Errorf("%d legacy changes are in the change log twice", n)
		}
	}
	bridgetest.WaitFor(t, 60*time.Second, "the second reader to catch up", func() bool {
		seen := map[string]bool{}
		for _, d := range readDeliveries(t, out) {
			seen[d.Event] = true
		}
		return int64(len(seen)) >= total
	})
	all := readDeliveries(t, out)
	counts := map[string]int{}
	for _, d := range all {
		counts[d.Event]++
	}
	var ids []int64
	if err := f.pool.QueryRow(context.Background(), `SELECT array_agg(id) FROM dtebridge.changes`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if counts["c"+strconv.FormatInt(id, 10)] == 0 {
			t.Errorf("change %d lost across the crash", id)
		}
	}
	// Only the batch in flight at the crash may come twice: the last 100
	// deliveries of the first reader.
	inFlight := map[string]bool{}
	for _, d := range crashed[max(0, len(crashed)-100):] {
		inFlight[d.Event] = true
	}
	redelivered := 0
	for ev, n := range counts {
		if n > 1 {
			redelivered++
			if !inFlight[ev] || n > 2 {
				t.Errorf("event %s delivered %d times, and it was not in the batch in flight at the crash", ev, n)
			}
		}
	}
	if redelivered == 0 {
		t.Error("nothing was redelivered: the crash did not land between delivery and checkpoint")
	}
	t.Logf("%d deliveries before the crash, %d events redelivered after it, none lost", len(crashed), redelivered)
}

// TestStandbyTakesOver runs two reader processes; the standby takes over
// within seconds of the leader being killed, and delivery goes on from the
// checkpoint.
func TestStandbyTakesOver(t *testing.T) {
	t.Parallel()
	for _, capture := range captures {
		t.Run(capture, func(t *testing.T) {
			t.Parallel()
			testStandbyTakesOver(t, capture)
		})
	}
}

func testStandbyTakesOver(t *testing.T, capture string) {
	f := setup(t, setupOptions{reports: 5, trigger: capture})
	dir := t.TempDir()
	leaderOut, standbyOut := filepath.Join(dir, "leader"), filepath.Join(dir, "standby")
	leader := f.child(leaderOut, "leader", 100, 0)
	bridgetest.WaitFor(t, 30*time.Second, "the leader's backfill", func() bool { return len(readDeliveries(t, leaderOut)) >= 35 })
	f.child(standbyOut, "standby", 100, 0)
	generate(t, f, 300, 2)
	bridgetest.WaitFor(t, 30*time.Second, "the leader to deliver", func() bool { return len(readDeliveries(t, leaderOut)) > 35 })
	time.Sleep(time.Second)
	if n := len(readDeliveries(t, standbyOut)); n != 0 {
		t.Fatalf("the standby delivered %d changes while the leader lived", n)
	}

	if err := leader.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	leader.Wait()
	killed := time.Now()
	generate(t, f, 300, 3)
	bridgetest.WaitFor(t, 15*time.Second, "the standby to take over", func() bool { return len(readDeliveries(t, standbyOut)) > 0 })
	t.Logf("standby delivered its first change %s after the leader was killed", time.Since(killed).Round(10*time.Millisecond))

	var leaderName string
	if err := f.pool.QueryRow(context.Background(), `SELECT leader FROM dtebridge.checkpoints WHERE consumer = 'mirror'`).Scan(&leaderName); err != nil {
		t.Fatal(err)
	}
	if leaderName != "standby" {
		t.Errorf("checkpoint leader = %q, want standby", leaderName)
	}
	f.waitLogged()
	total := f.count(`SELECT count(*) FROM dtebridge.changes`)
	bridgetest.WaitFor(t, 30*time.Second, "every change to be delivered once", func() bool {
		seen := map[string]bool{}
		for _, d := range append(readDeliveries(t, leaderOut), readDeliveries(t, standbyOut)...) {
			if d.Event[0] == 'c' {
				seen[d.Event] = true
			}
		}
		return int64(len(seen)) == total
	})
}
