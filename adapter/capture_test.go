package adapter_test

import (
	"context"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
)

// TestSimulatorTrafficIsMirrored runs simulator traffic against a running
// reader in both profiles and trigger modes: once quiet, what was delivered
// folds into exactly the legacy rows' effective state.
func TestSimulatorTrafficIsMirrored(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		for _, trig := range captures {
			t.Run(p.Name+"/"+trig, func(t *testing.T) {
				t.Parallel()
				f := setup(t, setupOptions{profile: p, trigger: trig, reports: 10})
				c := newCollector()
				m := f.reader(c, nil)
				bridgetest.WaitFor(t, 30*time.Second, "the first backfill", func() bool { return c.backfills > 0 })
				if _, err := legacysim.Simulate(context.Background(), f.pool, &legacysim.SimConfig{Profile: p, Reports: 20, Ops: 1500, Rate: 0, Concurrency: 4, Seed: 5}); err != nil {
					t.Fatal(err)
				}
				want := f.legacyRows()
				bridgetest.WaitFor(t, 60*time.Second, "delivery to catch up", func() bool { return diffStates(want, applied(c.snapshot())) == "" })
				if d := diffStates(want, applied(c.snapshot())); d != "" {
					t.Fatal(d)
				}
				for id, n := range c.seen {
					if n > 1 {
						t.Errorf("event %s delivered %d times without a failure", id, n)
					}
				}
				_ = m
			})
		}
	}
}
