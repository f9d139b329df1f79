// Package bridgetest runs the whole bridge for tests: a legacy database in
// the shared test cluster with the bridge installed, served against the
// shared Temporal dev server, with helpers to wait for quiet and to read
// both sides.
package bridgetest

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// Bridge is a served bridge on a test database.
type Bridge struct {
	T       testing.TB
	DB      *testenv.DB
	Cfg     *config.Config
	Profile *legacysim.Profile
	Srv     *serve.Server
	TC      client.Client

	reconcileEvery time.Duration
	fullEvery      time.Duration
	signalTimeout  time.Duration
	namespace      string
	address        string
	http           func(*http.Server)
}

// Options adjusts New.
type Options struct {
	// Temporal is the client to use. Default: the shared dev server.
	Temporal client.Client
	// Namespace is Temporal's namespace, the one Temporal's client is
	// for. Default: default.
	Namespace string
	// TemporalAddress is the frontend Temporal's client dials, for serve's
	// reports. Default: the shared dev server's.
	TemporalAddress string
	// NoServe installs but does not start serving.
	NoServe bool
	// ReconcileEvery schedules reconcile in serve, and FullEvery its full
	// sweeps (serve's default; negative: every run full).
	ReconcileEvery, FullEvery time.Duration
	// Token, if set, is the bearer token of the command API.
	Token string
	// Configure, if set, adjusts the example config before install.
	Configure func(*config.Config)
	// Schema, if set, is the SQL of a legacy database of the test's own,
	// applied instead of the profile's schema; Config is then its
	// configuration (required), and the profile may be nil.
	Schema string
	Config *config.Config
	// HTTP, if set, adjusts the HTTP server.
	HTTP func(*http.Server)
	// History, if set, runs on the legacy database before the bridge is
	// installed: the past legacy had when the migration began.
	History func(db *testenv.DB)
	// SignalTimeout, if set, bounds the mirror's calls to Temporal, for tests
	// that take Temporal away. Default: the mirror's (10s): short timeouts
	// under load cancel requests mid-flight, and a storm of those breaks the
	// dev server's in-memory store.
	SignalTimeout time.Duration
}

// New creates a legacy database of profile p with the bridge installed and
// served. Its workflows are kept apart from other tests' by task queue and
// workflow id prefix.
func New(t testing.TB, p *legacysim.Profile, o *Options) *Bridge {
	t.Helper()
	if o == nil {
		o = &Options{}
	}
	db := testenv.NewDB(t)
	ctx := context.Background()
	var cfg *config.Config
	if o.Schema != "" {
		if _, err := db.Pool.Exec(ctx, o.Schema); err != nil {
			t.Fatalf("applying the test's legacy schema: %v", err)
		}
		cfg = o.Config
	} else {
		if err := legacysim.Init(ctx, db.Pool, p); err != nil {
			t.Fatal(err)
		}
		var err error
		if cfg, err = config.Example(p.Name); err != nil {
			t.Fatal(err)
		}
	}
	if o.History != nil {
		o.History(db)
	}
	// Tests reconcile back to back: the gate's span would refuse them.
	cfg.Cutover.Gate.MinSpan = config.Duration(time.Nanosecond)
	cfg.Shadow.TaskQueue = "tq-" + db.Name
	cfg.Shadow.WorkflowIDPrefix = db.Name + "-"
	if o.Configure != nil {
		o.Configure(cfg)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := adapter.Install(ctx, conn, cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	if o.Token != "" {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(o.Token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.HTTP.TokenFile = path
	}
	tc := o.Temporal
	if tc == nil {
		tc = testenv.TemporalClient(t)
	}
	b := &Bridge{T: t, DB: db, Cfg: cfg, Profile: p, TC: tc, reconcileEvery: o.ReconcileEvery, fullEvery: o.FullEvery, signalTimeout: o.SignalTimeout, http: o.HTTP,
		namespace: cmp.Or(o.Namespace, "default"), address: o.TemporalAddress}
	if !o.NoServe {
		b.Start()
	}
	return b
}

// Start serves the bridge, with short intervals; it stops at cleanup. Call
// it again for a second replica of the same bridge.
func (b *Bridge) Start() *serve.Server {
	b.T.Helper()
	srv, err := b.TryStart()
	if err != nil {
		b.T.Fatal(err)
	}
	return srv
}

// TryStart is Start, returning serve's error.
func (b *Bridge) TryStart() (*serve.Server, error) {
	if b.address == "" {
		b.address = testenv.Temporal(b.T).Address()
	}
	srv, err := serve.Start(context.Background(), serve.Options{Config: b.Cfg, Pool: b.DB.Pool, Temporal: b.TC, Namespace: b.namespace,
		TemporalAddress: b.address, ReconcileEvery: b.reconcileEvery, FullEvery: b.fullEvery,
		Logger: slog.New(slog.NewTextHandler(testWriter{b.T}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Listen: "127.0.0.1:0", Reader: func(rc *adapter.ReaderConfig) {
			rc.PollInterval, rc.MaintenanceInterval, rc.StandbyInterval = 200*time.Millisecond, 500*time.Millisecond, 200*time.Millisecond
			rc.RetryBackoff = time.Second
		}, Mirror: func(mc *adapter.MirrorConfig) { mc.SignalTimeout = b.signalTimeout }, HTTP: b.http})
	if err != nil {
		return nil, err
	}
	if b.Srv == nil {
		b.Srv = srv
	}
	b.T.Cleanup(srv.Stop)
	return srv, nil
}

// Simulate runs simulator traffic as fast as it goes.
func (b *Bridge) Simulate(reports int, ops int64, seed uint64) *legacysim.Summary {
	b.T.Helper()
	s, err := legacysim.Simulate(context.Background(), b.DB.Pool, &legacysim.SimConfig{Profile: b.Profile, Reports: reports, Ops: ops, Rate: 0, Concurrency: 3, Seed: seed})
	if err != nil {
		b.T.Fatal(err)
	}
	return s
}

// Exec runs SQL on the legacy database.
func (b *Bridge) Exec(q string, args ...any) {
	b.T.Helper()
	if _, err := b.DB.Pool.Exec(context.Background(), q, args...); err != nil {
		b.T.Fatalf("%s: %v", q, err)
	}
}

// Bypass runs SQL with the capture trigger bypassed, as bulk loads and
// restores do (session_replication_role = replica).
func (b *Bridge) Bypass(q string, args ...any) {
	b.T.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, b.DB.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, q, args...)
		return err
	})
	if err != nil {
		b.T.Fatalf("%s: %v", q, err)
	}
}

// Quiescent waits until every captured change has been delivered and
// applied by the shadow, and the first backfill is done.
func (b *Bridge) Quiescent(timeout time.Duration) {
	b.T.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	st := b.Store()
	// Under log-based capture, legacy's commits so far must first reach the
	// change log.
	if lc := b.Cfg.Logical(); lc != nil {
		wal, err := adapter.WALNow(ctx, b.DB.Pool)
		if err != nil {
			b.T.Fatal(err)
		}
		if err := adapter.WaitLogged(ctx, st, lc, wal, timeout); err != nil {
			b.T.Fatal(err)
		}
	}
	for {
		backlog, err := st.BacklogOf(ctx, store.MirrorConsumer)
		if err != nil {
			b.T.Fatal(err)
		}
		behind, err := st.ReportsBehind(ctx)
		if err != nil {
			b.T.Fatal(err)
		}
		cps, _ := st.Checkpoints(ctx, time.Duration(b.Cfg.Capture.ConsumerLease))
		backfilled := false
		for _, cp := range cps {
			backfilled = backfilled || (cp.Consumer == store.MirrorConsumer && cp.BackfilledAt != nil)
		}
		released, err := st.ReleasedUndelivered(ctx)
		if err != nil {
			b.T.Fatal(err)
		}
		if backlog.Changes == 0 && behind == 0 && backfilled && released == 0 {
			return
		}
		if b.Srv != nil {
			if err := b.Srv.Err(); err != nil {
				b.T.Fatalf("bridge failed: %v", err)
			}
		}
		if time.Now().After(deadline) {
			b.explainBehind()
			b.T.Fatalf("not quiescent after %s: backlog %d, %d reports behind", timeout, backlog.Changes, behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// explainBehind logs, for each report the shadow has not caught up with,
// what the mirror handed over, what was projected, and what its workflow
// says, so that a stall can be diagnosed from the test log alone.
func (b *Bridge) explainBehind() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	bs, err := b.Store().BehindReports(ctx)
	if err != nil {
		b.T.Logf("explain: %v", err)
		return
	}
	if len(bs) > 0 {
		tq, err := b.TC.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{Namespace: b.namespace,
			TaskQueue: &taskqueuepb.TaskQueue{Name: b.Cfg.Shadow.TaskQueue}, IncludeTaskQueueStatus: true})
		if err != nil {
			b.T.Logf("task queue: %v", err)
		} else {
			st := tq.GetTaskQueueStatus()
			b.T.Logf("task queue %s: backlog hint %d, read level %d, ack level %d, rate %.1f/s", b.Cfg.Shadow.TaskQueue,
				st.GetBacklogCountHint(), st.GetReadLevel(), st.GetAckLevel(), st.GetRatePerSecond())
			for _, p := range tq.GetPollers() {
				b.T.Logf("  poller %s last access %s", p.GetIdentity(), p.GetLastAccessTime().AsTime().Format("15:04:05.000"))
			}
		}
	}
	for _, x := range bs {
		id := shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, x.Key)
		b.T.Logf("behind: %s delivered_seq %d at %s; projected applied_seq %v version %v at %v", id, x.DeliveredSeq,
			x.DeliveredAt.Format(time.RFC3339Nano), deref(x.AppliedSeq), deref(x.Version), deref(x.UpdatedAt))
		d, err := b.TC.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			b.T.Logf("  describe: %v", err)
			continue
		}
		info := d.GetWorkflowExecutionInfo()
		b.T.Logf("  status %s, history length %d, run %s", info.GetStatus(), info.GetHistoryLength(), info.GetExecution().GetRunId())
		if pt := d.GetPendingWorkflowTask(); pt != nil {
			b.T.Logf("  pending workflow task: state %s, attempt %d", pt.GetState(), pt.GetAttempt())
		}
		for _, pa := range d.GetPendingActivities() {
			b.T.Logf("  pending activity %s: attempt %d, last failure %v", pa.GetActivityType().GetName(), pa.GetAttempt(), pa.GetLastFailure())
		}
		b.logHistory(ctx, id, "")
		runs, err := b.TC.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: fmt.Sprintf("WorkflowId = '%s'", id)})
		if err != nil {
			b.T.Logf("  runs: %v", err)
		}
		for _, r := range runs.GetExecutions() {
			b.T.Logf("  run %s: %s, started %s, closed %s, history %d", r.GetExecution().GetRunId(), r.GetStatus(),
				r.GetStartTime().AsTime().Format("15:04:05.000"), r.GetCloseTime().AsTime().Format("15:04:05.000"), r.GetHistoryLength())
			if r.GetExecution().GetRunId() != info.GetExecution().GetRunId() {
				b.logHistory(ctx, id, r.GetExecution().GetRunId())
			}
		}
		changes, err := b.Store().ReportChanges(ctx, x.Key, b.Cfg.Legacy.Columns.Cycle, b.Cfg.Legacy.Columns.Report)
		if err != nil {
			b.T.Logf("  changes: %v", err)
		}
		for _, c := range changes {
			b.T.Logf("  captured change %d: %s origin %s at %s", c.ID, c.Op, c.Origin, c.CapturedAt.Format("15:04:05.000"))
		}
		v, err := b.TC.QueryWorkflow(ctx, id, "", shadow.QueryState)
		if err != nil {
			b.T.Logf("  query: %v", err)
			continue
		}
		var s shadow.State
		if err := v.Get(&s); err != nil {
			b.T.Logf("  query: %v", err)
			continue
		}
		b.T.Logf("  state: applied_seq %d, applied %d, duplicates %d, projection version %d, runs %d", s.AppliedSeq, s.Applied, s.Duplicates, s.ProjectionVersion, s.Runs)
	}
}

// logHistory logs a workflow run's events.
func (b *Bridge) logHistory(ctx context.Context, id, runID string) {
	hist := b.TC.GetWorkflowHistory(ctx, id, runID, false, 0)
	for hist.HasNext() {
		ev, err := hist.Next()
		if err != nil {
			b.T.Logf("  history: %v", err)
			return
		}
		detail := ""
		switch {
		case ev.GetWorkflowExecutionFailedEventAttributes() != nil:
			detail = ev.GetWorkflowExecutionFailedEventAttributes().GetFailure().GetMessage()
		case ev.GetWorkflowTaskFailedEventAttributes() != nil:
			detail = ev.GetWorkflowTaskFailedEventAttributes().GetFailure().GetMessage()
		case ev.GetWorkflowExecutionTerminatedEventAttributes() != nil:
			detail = ev.GetWorkflowExecutionTerminatedEventAttributes().GetReason()
		case ev.GetWorkflowTaskTimedOutEventAttributes() != nil:
			detail = ev.GetWorkflowTaskTimedOutEventAttributes().GetTimeoutType().String()
		}
		b.T.Logf("  %s event %d %s %s %s", runID, ev.GetEventId(), ev.GetEventTime().AsTime().Format("15:04:05.000"), ev.GetEventType(), detail)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}

// PhaseView is one phase's state and status on one side.
type PhaseView struct {
	State  dtetype.State
	Status dtetype.Status
	Rows   int
}

// LegacyView reads legacy's effective state per cycle/report/phase,
// following the oldest row where there are duplicates, as legacy does.
func (b *Bridge) LegacyView() map[string]PhaseView {
	b.T.Helper()
	rows, err := b.DB.Pool.Query(context.Background(), `SELECT cycle_id, report_id, phase_name::text,
		(array_agg(coalesce(state_override, state)::text ORDER BY phase_id))[1],
		(array_agg(coalesce(status_override, schedule_status)::text ORDER BY phase_id))[1], count(*)
		FROM workflow_phases GROUP BY 1, 2, 3`)
	if err != nil {
		b.T.Fatal(err)
	}
	defer rows.Close()
	out := map[string]PhaseView{}
	for rows.Next() {
		var c, r int64
		var phase, state, status string
		var n int
		if err := rows.Scan(&c, &r, &phase, &state, &status, &n); err != nil {
			b.T.Fatal(err)
		}
		p, _ := b.Cfg.Legacy.Phases.Get(phase)
		k := fmt.Sprintf("%d/%d/%s", c, r, p)
		v := out[k]
		v.Rows += n
		if v.State == "" {
			v.State, _ = b.Cfg.Legacy.States.Get(state)
			v.Status, _ = b.Cfg.Legacy.Statuses.Get(status)
		}
		out[k] = v
	}
	return out
}

// ShadowView reads the shadow projection the same way.
func (b *Bridge) ShadowView() map[string]PhaseView {
	b.T.Helper()
	states, err := b.Store().ShadowPhaseStates(context.Background())
	if err != nil {
		b.T.Fatal(err)
	}
	out := map[string]PhaseView{}
	for _, p := range states {
		out[fmt.Sprintf("%d/%d/%s", p.Key.CycleID, p.Key.ReportID, p.Phase)] = PhaseView{p.State, p.LegacyStatus, p.Rows}
	}
	return out
}

// Store returns the bridge schema of the test database.
func (b *Bridge) Store() *store.Store { return b.Cfg.Store(b.DB.Pool) }

// CompareViews fails t unless the two views are equal.
func CompareViews(t testing.TB, want, got map[string]PhaseView) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			bad++
			if bad <= 5 {
				t.Errorf("%s: legacy %+v, shadow %+v (present %v)", k, w, g, ok)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			bad++
			t.Errorf("%s in the shadow only", k)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d phases differ", bad, len(want))
	}
}

// testWriter sends the bridge's warnings and errors to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
