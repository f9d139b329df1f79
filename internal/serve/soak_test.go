package serve_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
)

// TestFaultSoak runs legacy traffic with faults mixed in, for a bounded
// time: rows with multi-megabyte override reasons, infinity and BC dates,
// commands with NUL bytes, and a capture tail that crashes holding a
// checkpoint. Then nothing is lost (legacy equals the projection, report
// by report), every report still flows, pruning goes on past the crashed
// tail, and reconcile finds nothing it cannot name.
func TestFaultSoak(t *testing.T) {
	t.Parallel()
	const tok = "soak-token-0123456789abcdef"
	b := bridgetest.New(t, legacysim.Production, &bridgetest.Options{Token: tok, Configure: func(c *config.Config) {
		c.Capture.ConsumerLease = config.Duration(time.Second)
	}})
	ctx := context.Background()
	simDone := make(chan error, 1)
	go func() {
		_, err := legacysim.Simulate(ctx, b.DB.Pool, &legacysim.SimConfig{Profile: legacysim.Production, Reports: 16, Ops: 1500, Rate: 150, Concurrency: 3, Seed: 99})
		simDone <- err
	}()

	// A capture tail that keeps its checkpoint, then dies without a word.
	tr, err := b.Cfg.Translator(nil)
	if err != nil {
		t.Fatal(err)
	}
	rc := b.Cfg.ReaderConfig()
	rc.Consumer, rc.PollInterval = "soak-tail", 100*time.Millisecond
	tctx, crash := context.WithCancel(ctx)
	defer crash()
	tailDone := make(chan error, 1)
	go func() {
		tailDone <- adapter.NewReader(b.Store(), tr, rc).Run(tctx, adapter.ConsumerFunc(func(context.Context, adapter.Batch) error { return nil }))
	}()

	rng := rand.New(rand.NewPCG(7, 9))
	post := func(path, body string) int {
		req, _ := http.NewRequest("POST", "http://"+b.Srv.Addr()+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	faults := map[string]int{}
	deadline := time.Now().Add(8 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		time.Sleep(150 * time.Millisecond)
		var id int64
		if err := b.DB.Pool.QueryRow(ctx, `SELECT phase_id FROM workflow_phases ORDER BY random() LIMIT 1`).Scan(&id); err != nil {
			continue // no rows yet
		}
		switch i % 4 {
		case 0:
			b.Exec(`UPDATE workflow_phases SET override_reason = repeat('r', $2), updated_at = now() WHERE phase_id = $1`, id, 2500*1024+rng.IntN(1024))
			faults["oversized"]++
		case 1:
			b.Exec(`UPDATE workflow_phases SET actual_end_date = 'infinity', planned_start_date = '4713-01-01 BC', updated_at = now() WHERE phase_id = $1`, id)
			faults["time range"]++
		case 2:
			if code := post("/api/v1/cycles/1/reports/1/phases/planning/start", "{\"actor\": \"12\", \"reason\": \"a\\u0000b\"}"); code != 400 {
				t.Errorf("a NUL byte: %d", code)
			}
			faults["NUL byte"]++
		case 3:
			if i == 3 {
				crash()
				if err := <-tailDone; !errors.Is(err, context.Canceled) {
					t.Errorf("tail: %v", err)
				}
				faults["crashed tail"]++
			}
		}
	}
	if err := <-simDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("faults injected: %v", faults)
	b.Quiescent(2 * time.Minute)
	if q, _ := b.Store().ListQuarantine(ctx, false); len(q) != 0 {
		t.Errorf("quarantined: %+v", q)
	}
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())

	// Every report still flows.
	keys, err := b.Store().ProjectedKeys(ctx, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		b.Exec(`UPDATE workflow_phases SET notes = 'soak', updated_at = now() WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`,
			k.CycleID, k.ReportID)
	}
	b.Quiescent(time.Minute)
	// Pruning is not held back by the crashed tail's checkpoint.
	bridgetest.WaitFor(t, 30*time.Second, "pruning past the crashed tail", func() bool {
		n, err := b.Store().Prune(ctx, time.Nanosecond, time.Second)
		return err == nil && n > 0
	})
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	r, err := reconcile.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range r.Divergences {
		if !d.Expected {
			t.Errorf("unexpected after the soak: %+v", d)
		}
	}
	if r.Compared < int64(len(keys))*9 {
		t.Errorf("compared %d keys for %d reports", r.Compared, len(keys))
	}
	if len(faults) != 4 {
		t.Errorf("not every fault was injected: %v", faults)
	}
}
