package serve_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
	"github.com/synapsedte/dtebridge/store"
)

// TestTemporalRestart stops the Temporal server in the middle of simulator
// traffic and starts it again on the same port and database file. The
// backlog waits in PostgreSQL meanwhile, and once Temporal is back nothing
// is lost: the shadow ends equal to legacy.
func TestTemporalRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	tcfg := &localtemporal.Config{DBFile: filepath.Join(dir, "temporal.db")}
	ts, err := localtemporal.Start(ctx, tcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ts.Stop() }()
	tcfg.Port = portOf(t, ts.Address())
	tc, err := client.Dial(client.Options{HostPort: ts.Address()})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()

	b := bridgetest.New(t, legacysim.Production, &bridgetest.Options{Temporal: tc, SignalTimeout: time.Second,
		Configure: func(c *config.Config) { c.Capture.DeliveryGrace = config.Duration(time.Second) }})
	db, cfg, p := b.DB, b.Cfg, b.Profile
	simDone := make(chan error, 1)
	go func() {
		_, err := legacysim.Simulate(ctx, db.Pool, &legacysim.SimConfig{Profile: p, Reports: 12, Ops: 600, Rate: 100, Concurrency: 2, Seed: 21})
		simDone <- err
	}()
	time.Sleep(2 * time.Second)
	ts.Stop()
	t.Log("Temporal stopped mid-stream")
	time.Sleep(3 * time.Second)
	backlog, err := cfg.Store(db.Pool).BacklogOf(ctx, store.MirrorConsumer)
	if err != nil {
		t.Fatal(err)
	}
	if backlog.Changes == 0 {
		t.Error("no backlog built up while Temporal was down; the test did not stop it mid-stream")
	}
	// Past capture.delivery_grace the process says it is not ready, and why.
	if ok, why := ready(t, b); ok || !strings.Contains(why, "deliveries to the shadow have failed for") {
		t.Errorf("ready %v while deliveries fail: %q", ok, why)
	} else if _, port, _ := net.SplitHostPort(ts.Address()); strings.Contains(why, port) || strings.Contains(why, "127.0.0.1") {
		t.Errorf("/readyz tells an unauthenticated caller where Temporal is: %q", why)
	}
	if v := testutilCounter(b.Srv.Metrics.DeliveryFailing); v < 1 {
		t.Errorf("dtebridge_capture_delivery_failing_seconds = %v while deliveries fail", v)
	}
	if ts, err = localtemporal.Start(ctx, tcfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("Temporal restarted with %d changes waiting", backlog.Changes)
	if err := <-simDone; err != nil {
		t.Fatal(err)
	}
	b.Quiescent(2 * time.Minute)
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())
	if f := testutilCounter(b.Srv.MirrorMetrics.Failures); f == 0 {
		t.Error("the mirror never saw Temporal fail")
	}
	if ok, why := ready(t, b); !ok {
		t.Errorf("not ready once Temporal is back: %s", why)
	}
}
