package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const token = "e2e-token-0123456789abcdef"

// TestProductionTopology runs the bridge on Temporal as production runs it:
// PostgreSQL persistence, SQL visibility, frontend, history, matching and
// worker in processes of their own, a namespace the bridge creates, and
// two bridge replicas. Under simulator traffic the history service and
// then the matching service are killed (SIGKILL) and restarted. Nothing is
// lost: the projection ends equal to legacy, visibility finds the shadows
// by their search attributes, and reconcile with a deep check of every
// workflow is at 100%. A phase is then cut over to the new engine at 100%,
// a command is written back to legacy, and the phase is rolled back.
func TestProductionTopology(t *testing.T) {
	ctx := context.Background()
	pg := testenv.Cluster(t)
	tcl, err := localtemporal.StartCluster(ctx, &localtemporal.ClusterConfig{PostgresURL: pg.URL("postgres"), Split: true,
		ServerPath: os.Getenv("DTEBRIDGE_TEMPORAL_SERVER"), SQLToolPath: os.Getenv("DTEBRIDGE_TEMPORAL_SQL_TOOL")})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last in, first out: Temporal stops after the bridge.
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range localtemporal.Services {
				t.Logf("temporal %s log tail:\n%s", s, tcl.Tail(s))
			}
		}
		tcl.Stop()
	})

	// serve --temporal-create-namespace: a self-hosted cluster starts
	// without the bridge's namespace.
	const ns = "dtebridge-e2e"
	// Clients close at cleanup, after the bridge replicas that use them.
	admin, err := client.Dial(client.Options{HostPort: tcl.Address()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	if created, err := shadow.EnsureNamespace(ctx, admin, ns, 72*time.Hour); err != nil || !created {
		t.Fatalf("creating the namespace: %v (created %v)", err, created)
	}
	tc, err := client.Dial(client.Options{HostPort: tcl.Address(), Namespace: ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)

	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Temporal: tc, Namespace: ns, TemporalAddress: tcl.Address(), Token: token,
		SignalTimeout: 2 * time.Second, Configure: func(c *config.Config) { c.Capture.DeliveryGrace = config.Duration(time.Second) }})
	second := b.Start()
	if m := get(t, b, "/metrics"); !strings.Contains(m, "\ndtebridge_shadow_search_attributes 1\n") {
		t.Fatal("the bridge runs without its search attributes on SQL visibility")
	}
	replicas := []*serve.Server{b.Srv, second}
	sum := func(metric func(*serve.Server) prometheus.Counter) (n float64) {
		for _, srv := range replicas {
			n += testutil.ToFloat64(metric(srv))
		}
		return n
	}
	delivered := func() float64 {
		return sum(func(s *serve.Server) prometheus.Counter { return s.MirrorMetrics.Signals })
	}
	failures := func() float64 {
		return sum(func(s *serve.Server) prometheus.Counter { return s.MirrorMetrics.Failures })
	}

	// Traffic, with history and then matching killed mid-stream.
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim() // a failed test stops the traffic before cleanup closes the pool
	simDone := make(chan error, 1)
	go func() {
		_, err := legacysim.Simulate(simCtx, b.DB.Pool, &legacysim.SimConfig{Profile: b.Profile, Reports: 40, Ops: 1200, Rate: 60, Concurrency: 2, Seed: 7})
		simDone <- err
	}()
	st := b.Store()
	for _, service := range []string{"history", "matching"} {
		time.Sleep(4 * time.Second)
		before := delivered()
		if err := tcl.Kill(service); err != nil {
			t.Fatal(err)
		}
		t.Logf("Temporal %s killed after %.0f signals", service, before)
		if service == "history" {
			// Signals go through history: the mirror sees it gone, and
			// the backlog waits in PostgreSQL.
			bridgetest.WaitFor(t, time.Minute, "the mirror to see history gone", func() bool { return failures() > 0 })
		} else {
			time.Sleep(3 * time.Second)
		}
		if err := tcl.Restart(ctx, service); err != nil {
			t.Fatal(err)
		}
		bridgetest.WaitFor(t, 2*time.Minute, "deliveries after "+service+" restarted", func() bool { return delivered() > before })
	}
	if err := <-simDone; err != nil {
		t.Fatal(err)
	}
	b.Quiescent(3 * time.Minute)
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())
	for _, srv := range replicas {
		if err := srv.Err(); err != nil {
			t.Fatalf("a replica failed: %v", err)
		}
	}

	// Visibility answers queries on the shadow's search attributes.
	var cycle, reports int64
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, count(DISTINCT report_id) FROM workflow_phases GROUP BY 1 ORDER BY 2 DESC LIMIT 1`).Scan(&cycle, &reports); err != nil {
		t.Fatal(err)
	}
	query := fmt.Sprintf("DtebridgeCycle = %d AND WorkflowId STARTS_WITH '%s'", cycle, b.Cfg.Shadow.WorkflowIDPrefix)
	bridgetest.WaitFor(t, time.Minute, "visibility to count the cycle's shadows", func() bool {
		n, err := tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Namespace: ns, Query: query})
		return err == nil && n.GetCount() == reports
	})

	// Reconcile, with every workflow queried: 100%.
	// deep records a full run and queries every workflow (reconcile
	// --record --deep all).
	deep := func() *reconcile.Report {
		t.Helper()
		o := b.Cfg.ReconcileOptions(b.DB.Pool)
		o.Persist = true
		r, err := reconcile.Run(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		to := reconcile.TemporalOptions{Client: tc, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}
		if err := reconcile.Deep(ctx, o, to, 0, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	var r *reconcile.Report
	for range 3 { // the gate's three runs
		r = deep()
	}
	if r.Unexpected != 0 || r.Consistency != 1 || r.Deep.Queried == 0 || r.Deep.Disagreed != 0 {
		t.Fatalf("reconcile after the faults: consistency %v, unexpected %v, deep %+v", r.Consistency, r.Counts, r.Deep)
	}
	t.Logf("reconcile: %d phases compared, consistency %.2f%%, %d workflows queried", r.Compared, 100*r.Consistency, r.Deep.Queried)

	// Cutover: planning on the new engine for every report; a command is
	// applied by its workflow and written back to legacy.
	const phase = dtetype.Phase("planning")
	cs := cutover.NewStore(st)
	res, err := cs.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeNew, Percent: 100, Actor: "e2e", Reason: "production topology"}, b.Cfg.GateConfig())
	if err != nil || !res.Gate.Pass {
		t.Fatalf("promotion: %v %+v", err, res)
	}
	model := legacysim.NewModel(b.DB.Pool, legacysim.Seed, nil)
	id, err := model.CreateReport(ctx, "e2e", "FRB")
	if err != nil {
		t.Fatal(err)
	}
	k := dtetype.Key{CycleID: cycle, ReportID: id}
	if _, err := model.AddReport(ctx, k, legacysim.AddOptions{Tester: 11}); err != nil {
		t.Fatal(err)
	}
	b.Quiescent(time.Minute)
	code, body := post(t, b, fmt.Sprintf("/api/v1/cycles/%d/reports/%d/phases/planning/start", k.CycleID, k.ReportID),
		`{"actor": "12", "role": "Tester", "reason": "kick-off"}`)
	var got shadow.CommandResult
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil || got.State != dtetype.StateInProgress {
		t.Fatalf("start on the new engine: %d %s", code, body)
	}
	var state string
	var startedBy int64
	if err := b.DB.Pool.QueryRow(ctx, `SELECT state::text, started_by FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`,
		k.CycleID, k.ReportID).Scan(&state, &startedBy); err != nil || state != "In Progress" || startedBy != 12 {
		t.Fatalf("written back to legacy: %q by %d (%v)", state, startedBy, err)
	}
	b.Quiescent(time.Minute)

	// Rollback: the shadow follows legacy again, and nothing diverges.
	res, err = cs.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeShadow, Actor: "e2e", Reason: "roll back"}, b.Cfg.GateConfig())
	if err != nil || len(res.Released) == 0 {
		t.Fatalf("rollback: %v %+v", err, res)
	}
	if rr, err := adapter.AwaitRedrives(ctx, st, res.Redrives, time.Minute); err != nil || len(rr.Applied) != len(res.Released) {
		t.Fatalf("rollback re-drives: %v %+v", err, rr)
	}
	b.Quiescent(time.Minute)
	if r = deep(); r.Unexpected != 0 || r.Deep.Disagreed != 0 {
		t.Fatalf("after rollback: %v, deep %+v", r.Counts, r.Deep)
	}
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())
}

func post(t *testing.T, b *bridgetest.Bridge, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+b.Srv.Addr()+path, bytes.NewBufferString(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

func get(t *testing.T, b *bridgetest.Bridge, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + b.Srv.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return string(out)
}
