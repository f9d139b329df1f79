// Package serve runs the bridge's long-lived process: the capture reader
// (leader or standby), the mirror into Temporal, the shadow worker, and the
// HTTP server with health, readiness, metrics and the definitions API.
// dtebridge serve and dtebridge demo both run it.
//
// It wires parts together and decides nothing itself: leadership is the
// reader's state, ownership the cutover authority's, and each part
// registers its own metrics on the registry serve hands it.
package serve

import (
	"bytes"
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"golang.org/x/net/netutil"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/preflight"
	"github.com/synapsedte/dtebridge/internal/telemetry"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// Options configures a Server. Config, Pool and Temporal are required.
type Options struct {
	Config *config.Config
	// Pool is the legacy database, where the bridge schema lives.
	Pool *pgxpool.Pool
	// Temporal is a connected client.
	Temporal client.Client
	// Namespace is the client's namespace, for search-attribute checks.
	Namespace string
	// TemporalAddress is the client's frontend, for reports.
	TemporalAddress string
	// TemporalUI, if set, is the Temporal Web UI's address: the console
	// links each report to its shadow workflow there. Default:
	// temporal.ui_url.
	TemporalUI string
	// Listen overrides the config's HTTP address; "-" disables HTTP.
	Listen string
	// Identity names this process as a capture reader. Default: host:pid.
	Identity string
	// Logger receives operational messages. Default: discard.
	Logger *slog.Logger
	// ReconcileEvery runs a recorded reconcile on this schedule; 0: never.
	// Each is incremental (the reports written since the last run) but
	// one every FullEvery, which compares every report.
	ReconcileEvery time.Duration
	// FullEvery is how often a scheduled reconcile is full. Default:
	// DefaultFullEvery; a negative value makes every run full.
	FullEvery time.Duration
	// Token, if set, is the command API's bearer token, instead of the one
	// in http.token_file (the demo's throwaway token lives only in memory).
	Token string
	// TemporalLogger receives the SDK's own log lines. Default: the SDK's
	// default logger.
	TemporalLogger log.Logger
	// Reader and Mirror adjust the reader and mirror configuration (tests
	// shorten intervals).
	Reader func(*adapter.ReaderConfig)
	Mirror func(*adapter.MirrorConfig)
	// HTTP adjusts the HTTP server (tests shorten its timeouts).
	HTTP func(*http.Server)
}

// Store returns the bridge schema the server works on.
func (s *Server) Store() *store.Store { return s.st }

// Leading reports whether this process leads capture.
func (s *Server) Leading() bool { return s.reader.Leading() }

// Server is a running bridge process.
type Server struct {
	opts          Options
	log           *slog.Logger
	registry      *prometheus.Registry
	defs          []*dtetype.Definition
	definition    *dtetype.Definition
	worker        worker.Worker
	http          *http.Server
	addr          string
	cancel        context.CancelFunc
	done          chan struct{}
	mu            sync.Mutex
	err           error
	lastReconcile *reconcile.Report
	// searchAttributes is what serve found of the shadow's search
	// attributes at start.
	searchAttributes shadow.SearchAttributes
	temporalAddr     string
	st               *store.Store
	reader           *adapter.Reader
	users            *legacy.Users
	store            *cutover.Store
	authority        *cutover.Authority
	executor         *cutover.Executor
	token            string
	temporal         client.Client
	// cfg is the configuration in force; Reload replaces it.
	cfg            atomic.Pointer[config.Config]
	reloadMu       sync.Mutex
	reloads        *prometheus.CounterVec
	writeBack      *cutover.WriteBack
	conflicts      *cutover.Conflicts
	findingsMu     sync.Mutex
	findings       []store.FindingCount
	findingsAt     time.Time
	cutoverMetrics *cutover.Metrics
	loops          sync.WaitGroup
	// Metrics are the capture reader's metrics.
	Metrics *adapter.Metrics
	// MirrorMetrics are the mirror's metrics.
	MirrorMetrics *adapter.MirrorMetrics
}

// Start starts every part and returns once they run. Stop ends them.
func Start(ctx context.Context, o Options) (*Server, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	defs, def, err := cfg.LoadDefinitions()
	if err != nil {
		return nil, err
	}
	tr, err := cfg.Translator(def.PhaseIDs())
	if err != nil {
		return nil, err
	}
	st := cfg.Store(o.Pool)
	if _, err := st.Version(ctx); err != nil {
		return nil, err
	}
	// The configuration against the live database, before anything runs:
	// an error refuses to start, warnings are logged.
	check, err := preflight.Run(ctx, preflight.Options{Config: cfg, Pool: o.Pool, TokenGiven: o.Token != ""})
	if err != nil {
		return nil, err
	}
	if err := check.Err(); err != nil {
		return nil, err
	}
	for _, p := range check.Problems {
		log.Warn("preflight: "+p.Message, "check", p.Check, "setting", p.Setting, "fix", p.Fix)
	}
	s := &Server{opts: o, log: log, registry: prometheus.NewRegistry(), defs: defs, definition: def, done: make(chan struct{}),
		temporalAddr: o.TemporalAddress, st: st}
	s.cfg.Store(cfg)
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reloads = newReloadCounter(s.registry)
	s.Metrics = adapter.NewMetrics(s.registry)
	s.Metrics.DeliveryGrace.Set(time.Duration(cfg.Capture.DeliveryGrace).Seconds())
	s.MirrorMetrics = adapter.NewMirrorMetrics(s.registry)
	// The SDK's client and worker metrics, and the shadow's own (emitted
	// from workflow code), go to the same registry through a client that
	// shares the caller's connection.
	sdk := telemetry.NewSDKMetrics()
	s.registry.MustRegister(sdk)
	tc, err := client.NewClientFromExisting(o.Temporal, client.Options{Namespace: o.Namespace, MetricsHandler: sdk.Handler(), Logger: o.TemporalLogger})
	if err != nil {
		return nil, fmt.Errorf("error creating the Temporal client: %w", err)
	}
	s.temporal = tc
	started := false
	defer func() {
		if !started {
			tc.Close()
		}
	}()
	o.Temporal = tc
	s.opts.Temporal = tc
	phases := def.PhaseIDs()
	s.registry.MustRegister(reconcile.NewCollector(st, phases, log), adapter.NewQuarantineCollector(st, log), shadow.NewFindingsCollector(st, log))
	if lc := cfg.Logical(); lc != nil {
		s.registry.MustRegister(adapter.NewSlotCollector(st, lc, log))
	}

	if s.token, err = cfg.Token(); err != nil {
		return nil, err
	}
	if o.Token != "" {
		s.token = o.Token
	}
	s.store = cutover.NewStore(st)
	s.authority = cutover.NewAuthority(s.store)
	if err := s.authority.Refresh(ctx); err != nil {
		return nil, err
	}
	cm := cutover.NewMetrics(s.registry, s.authority, phases, cfg.GateConfig())
	s.cutoverMetrics = cm
	var users *legacy.Users
	if cfg.Legacy.Users != nil {
		users = legacy.NewUsers(o.Pool, *cfg.Legacy.Users)
		rolesFailing := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_mirror_role_lookup_failing",
			Help: "1 while actors' roles cannot be read from legacy.users (the shadow cannot judge the role rule), else 0."})
		s.registry.MustRegister(rolesFailing)
		users.OnError = func(err error) {
			if err != nil {
				rolesFailing.Set(1)
				log.Warn("actor roles cannot be looked up; the role rule is not judged until they can", "error", err)
			} else {
				rolesFailing.Set(0)
			}
		}
	}
	s.users = users
	s.executor = &cutover.Executor{Client: o.Temporal, Store: s.store, WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Definition: def,
		Users: users, Commands: cm.Commands, Timeout: time.Duration(cfg.Cutover.CommandTimeout), Logger: log}
	writer, err := legacy.NewWriter(o.Pool, &cfg.Legacy, nil)
	if err != nil {
		return nil, err
	}

	sa := shadow.EnsureSearchAttributes(ctx, o.Temporal, cmp.Or(o.Namespace, "default"), log)
	if len(sa.WrongType) > 0 {
		// Upserting an attribute of another type fails every workflow
		// task: refuse to start rather than stall every shadow.
		return nil, errors.New(sa.Problem)
	}
	s.searchAttributes = sa
	saOK := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_shadow_search_attributes",
		Help: "1 when the shadow workflows carry their search attributes (DtebridgeCycle, ...), 0 when they run without them (see /readyz and serve's log)."})
	s.registry.MustRegister(saOK)
	if sa.OK {
		saOK.Set(1)
	} else {
		log.Warn("the shadow workflows run without their search attributes: Temporal's UI and visibility queries cannot find them by cycle, report or divergence",
			"problem", sa.Problem, "register_with", strings.Join(sa.Commands, "; "))
	}
	s.worker = shadow.NewWorker(o.Temporal, st, shadow.WorkerConfig{TaskQueue: cfg.Shadow.TaskQueue})
	wb := &cutover.WriteBack{Writer: writer, Store: st}
	s.writeBack = wb
	s.worker.RegisterActivityWithOptions(wb.WriteBack, activity.RegisterOptions{Name: shadow.WriteBackActivity})
	if err := s.worker.Start(); err != nil {
		return nil, fmt.Errorf("error starting the shadow worker: %w", err)
	}
	mc := adapter.MirrorConfig{Client: o.Temporal, Definition: def, Definitions: defs, Store: st, TaskQueue: cfg.Shadow.TaskQueue,
		WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Concurrency: cfg.Shadow.Concurrency, SearchAttributes: sa.OK, Logger: log,
		Metrics: s.MirrorMetrics, Users: users, Authority: s.authority}
	if len(cfg.Legacy.Attributes) > 0 {
		table := cfg.Legacy.Clone()
		mc.Attributes = func(ctx context.Context, keys []dtetype.Key) (map[dtetype.Key]map[string]string, error) {
			return table.ReadAttributes(ctx, o.Pool, keys)
		}
	}
	conflicts := &cutover.Conflicts{Store: s.store, Policy: cfg.Cutover.ConflictPolicy, Authority: s.authority, Legacy: &cfg.Legacy, Client: o.Temporal,
		WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Counter: cm.Conflicts, Logger: log}
	mc.OnConflict = conflicts.Handle
	s.conflicts = conflicts
	if o.Mirror != nil {
		o.Mirror(&mc)
	}
	rc := cfg.ReaderConfig()
	rc.Logger, rc.Metrics, rc.Identity = log, s.Metrics, o.Identity
	rc.KnownDefinition = func(key string) bool {
		_, err := config.Select(defs, key)
		return err == nil && strings.Contains(key, "@")
	}
	if o.Reader != nil {
		o.Reader(rc)
	}
	s.reader = adapter.NewReader(st, tr, rc)

	listen := o.Listen
	if listen == "" {
		listen = cfg.HTTP.Listen
	}
	if listen != "-" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			s.worker.Stop()
			return nil, fmt.Errorf("error listening on %s: %w (set http.listen or --listen)", listen, err)
		}
		s.addr = ln.Addr().String()
		tlsOn := cfg.HTTP.TLSCertFile != ""
		if host, _, _ := net.SplitHostPort(s.addr); !tlsOn && !net.ParseIP(host).IsLoopback() {
			log.Warn("serving HTTP without TLS on a non-loopback address: the bearer token and commands travel in clear; set http.tls_cert_file and http.tls_key_file, or put a TLS proxy in front", "listen", s.addr)
		}
		s.http = newHTTPServer(s.routes())
		if o.HTTP != nil {
			o.HTTP(s.http)
		}
		go func() {
			var err error
			if tlsOn {
				err = s.http.ServeTLS(netutil.LimitListener(ln, maxConnections), cfg.HTTP.TLSCertFile, cfg.HTTP.TLSKeyFile)
			} else {
				err = s.http.Serve(netutil.LimitListener(ln, maxConnections))
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.fail(fmt.Errorf("http server: %w", err))
			}
		}()
	}

	rctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() {
		defer close(s.done)
		err := s.reader.Run(rctx, adapter.NewMirror(mc))
		if err != nil && !errors.Is(err, context.Canceled) {
			s.fail(err)
		}
	}()
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		s.authority.Run(rctx, 2*time.Second)
	}()
	if o.ReconcileEvery > 0 {
		s.loops.Add(1)
		go func() {
			defer s.loops.Done()
			s.reconcileLoop(rctx, o.ReconcileEvery, cmp.Or(o.FullEvery, DefaultFullEvery))
		}()
	}
	log.Info("dtebridge serving", "definition", def.Key(), "http", s.addr, "search_attributes", sa.OK)
	started = true
	return s, nil
}

// DefaultFullEvery is how often a scheduled reconcile compares every
// report; the runs between are incremental.
const DefaultFullEvery = time.Hour

// reconcileLoop runs a recorded reconcile every interval until ctx ends:
// incremental, but a full one when fullEvery has passed since the last
// full run this process made (the first is full). Only the capture leader
// runs it, so replicas do not repeat each other.
func (s *Server) reconcileLoop(ctx context.Context, every, fullEvery time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	var lastFull time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.reader.Leading() {
			continue
		}
		o := s.reconcileOptions()
		o.Persist = true
		o.Incremental = fullEvery > 0 && !lastFull.IsZero() && time.Since(lastFull) < fullEvery
		r, err := reconcile.Run(ctx, o)
		if err == nil && r.Kind == store.RunFull {
			lastFull = r.StartedAt
		}
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("scheduled reconcile failed", "error", err)
			}
			continue
		}
		s.mu.Lock()
		s.lastReconcile = r
		s.mu.Unlock()
		if _, err := reconcile.MarkDivergent(ctx, o, s.reconcileTemporal(), r); err != nil && ctx.Err() == nil {
			s.log.Warn("cannot mark the divergent shadows", "error", err)
		}
		// The run is recorded and its shadows marked: the files of
		// divergences it spilled go (its figures stay).
		r.Close()
		s.log.Info("reconcile", "run", r.RunID, "kind", r.Kind, "compared", r.Compared, "consistency", r.Consistency,
			"unexpected", r.Unexpected, "new", r.New, "resolved", r.Resolved, "took", r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond))
	}
}

// reconcileOptions are reconcile's options under the configuration in
// force, phases in the definition's order.
func (s *Server) reconcileOptions() reconcile.Options {
	o := s.config().ReconcileOptions(s.opts.Pool)
	o.Order = s.definition.PhaseIDs()
	return o
}

// reconcileTemporal is how reconcile reaches this server's shadows.
func (s *Server) reconcileTemporal() reconcile.TemporalOptions {
	return reconcile.TemporalOptions{Client: s.temporal, WorkflowIDPrefix: s.config().Shadow.WorkflowIDPrefix, Actor: "console", Owned: s.authority.OnNew}
}

// Authority returns the server's view of cutover.
func (s *Server) Authority() *cutover.Authority { return s.authority }

// LastReconcile returns the last scheduled reconcile's report, or nil: its
// figures, and its divergences unless it spilled them to disk (the
// divergences are recorded; the store and the console have them).
func (s *Server) LastReconcile() *reconcile.Report {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastReconcile
}

func (s *Server) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		s.log.Error("bridge stopped", "error", err)
	}
}

// Err returns the error that stopped a part, if any.
func (s *Server) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Done is closed when the capture reader has stopped.
func (s *Server) Done() <-chan struct{} { return s.done }

// TemporalAddress returns the Temporal frontend the server's client uses.
func (s *Server) TemporalAddress() string { return s.temporalAddr }

// Addr returns the HTTP address, or "" when HTTP is off.
func (s *Server) Addr() string { return s.addr }

// Definition returns the definition new shadow workflows start with.
func (s *Server) Definition() *dtetype.Definition { return s.definition }

// Registry returns the metrics registry.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Stop stops the HTTP server (letting requests in flight finish), then the
// reader and the background loops, then the worker and the client.
func (s *Server) Stop() {
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.http.Shutdown(ctx)
		cancel()
	}
	s.cancel()
	<-s.done
	s.loops.Wait()
	s.worker.Stop()
	s.temporal.Close()
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := s.Err(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	mux.HandleFunc("GET /api/v1/definitions", func(w http.ResponseWriter, r *http.Request) {
		out := []map[string]any{}
		for _, d := range s.defs {
			out = append(out, map[string]any{"id": d.ID, "version": d.Version, "name": d.Name, "status_policy": d.StatusPolicy,
				"phases": d.Phases, "active": d == s.definition})
		}
		writeJSON(w, out)
	})
	mux.HandleFunc("GET /api/v1/cutover", func(w http.ResponseWriter, r *http.Request) {
		modes := []dtetype.Mode{}
		for _, p := range s.definition.Phases {
			modes = append(modes, s.authority.Mode(p.ID))
		}
		writeJSON(w, modes)
	})
	mux.HandleFunc("GET /api/v1/cutover/{phase}/reports", func(w http.ResponseWriter, r *http.Request) {
		p := dtetype.Phase(r.PathValue("phase"))
		if s.definition.Phase(p) == nil {
			writeError(w, http.StatusNotFound, codeNotFound, "", fmt.Sprintf("no phase %q in %s (phases: %s)", p, s.definition.Key(), strings.Join(phaseStrings(s.definition.PhaseIDs()), ", ")))
			return
		}
		on, err := cutover.NewStore(s.st).ReportsOnNew(r.Context(), p)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "", "cannot read the cutover state: "+err.Error())
			return
		}
		writeJSON(w, on)
	})
	mux.HandleFunc("POST /api/v1/cycles/{cycle}/reports/{report}/phases/{phase}/{action}", s.command)
	mux.HandleFunc("POST /api/v1/reload", s.reload)
	s.consoleRoutes(mux)
	mux.HandleFunc("GET /api/v1/definitions/{id}", func(w http.ResponseWriter, r *http.Request) {
		d, err := config.Select(s.defs, r.PathValue("id"))
		if err != nil {
			writeError(w, http.StatusNotFound, codeNotFound, "", fmt.Sprintf("no definition %q", r.PathValue("id")))
			return
		}
		writeJSON(w, d)
	})
	return mux
}

// Bounds on the HTTP server: connections held open, requests served at
// once (more answer 503 busy), and how long a client may take.
const (
	maxConnections = 256
	maxInFlight    = 64
)

// newHTTPServer returns the HTTP server with timeouts on every stage, so
// idle keep-alive connections and slow clients are let go, and a bound on
// requests in flight.
func newHTTPServer(h http.Handler) *http.Server {
	sem := make(chan struct{}, maxInFlight)
	limited := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
			h.ServeHTTP(w, r)
		default:
			writeError(w, http.StatusServiceUnavailable, codeBusy, "", "too many requests at once; retry shortly")
		}
	})
	return &http.Server{Handler: limited, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}
}

// readyz answers whether this process can do its work: 503 with the
// problems when it cannot (a part stopped, the database or Temporal out of
// reach, deliveries to the shadow failing past capture.delivery_grace), 200
// otherwise, listing what is degraded (actor roles that cannot be looked
// up). The reasons are short and name no host, port or user; callers with
// the bearer token also get the underlying errors.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	detail := s.authorized(r)
	problems, degraded := []string{}, []string{}
	add := func(list *[]string, reason string, err error) {
		if detail && err != nil {
			reason += ": " + err.Error()
		}
		*list = append(*list, reason)
	}
	if err := s.Err(); err != nil {
		add(&problems, "a part of the bridge stopped", err)
	}
	if err := s.opts.Pool.Ping(ctx); err != nil {
		add(&problems, "the database does not answer", err)
	}
	if _, err := s.opts.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		add(&problems, "Temporal does not answer", err)
	}
	if since, why := s.reader.DeliveryFailing(); !since.IsZero() && time.Since(since) > time.Duration(s.config().Capture.DeliveryGrace) {
		add(&problems, fmt.Sprintf("deliveries to the shadow have failed for %s", time.Since(since).Round(time.Second)), errors.New(why))
	}
	if s.users != nil {
		if err := s.users.Err(); err != nil {
			add(&degraded, "actor roles cannot be looked up (the role rule is not judged)", err)
		}
	}
	if sa := s.searchAttributes; !sa.OK {
		add(&degraded, "the shadow workflows run without their search attributes", errors.New(sa.Problem+"; "+strings.Join(sa.Commands, "; ")))
	}
	body := map[string]any{"ready": len(problems) == 0, "problems": problems, "degraded": degraded}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	writeJSON(w, body)
}

// authorized checks the bearer token in constant time. Without a
// configured token every mutation is refused.
func (s *Server) authorized(r *http.Request) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && s.token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.token)) == 1
}

// command serves POST /api/v1/cycles/{c}/reports/{r}/phases/{p}/{action}.
func (s *Server) command(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "", "a valid bearer token is required (http.token_file)")
		return
	}
	cycle, err1 := strconv.ParseInt(r.PathValue("cycle"), 10, 64)
	report, err2 := strconv.ParseInt(r.PathValue("report"), 10, 64)
	if err1 != nil || err2 != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "", "cycle and report must be integers")
		return
	}
	var body struct {
		ID     string         `json:"id"`
		Actor  string         `json:"actor"`
		Role   string         `json:"role"`
		Reason string         `json:"reason"`
		State  dtetype.State  `json:"state"`
		Status dtetype.Status `json:"status"`
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<16))
	if err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "", bodyError(err))
		return
	}
	if !utf8.Valid(raw) {
		// Go's decoder would quietly replace what is not UTF-8.
		writeError(w, http.StatusBadRequest, codeBadRequest, "", "the body is not valid UTF-8")
		return
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, codeBadRequest, "", bodyError(err))
		return
	}
	if strings.TrimSpace(body.Actor) == "" || strings.TrimSpace(body.Reason) == "" {
		writeError(w, http.StatusBadRequest, codeBadRequest, "", "actor and reason are required")
		return
	}
	action := r.PathValue("action")
	if !slices.Contains(dtetype.Actions(), action) {
		writeError(w, http.StatusNotFound, codeNotFound, "", fmt.Sprintf("unknown action %q: use %s", action, strings.Join(dtetype.Actions(), ", ")))
		return
	}
	if s.definition.Phase(dtetype.Phase(r.PathValue("phase"))) == nil {
		writeError(w, http.StatusNotFound, codeNotFound, "", fmt.Sprintf("no phase %q in %s (phases: %s)", r.PathValue("phase"), s.definition.Key(),
			strings.Join(phaseStrings(s.definition.PhaseIDs()), ", ")))
		return
	}
	cmd := shadow.Command{ID: body.ID, Action: action, Phase: dtetype.Phase(r.PathValue("phase")), Actor: body.Actor, Role: body.Role,
		Reason: body.Reason, State: body.State, Status: body.Status}
	res, err := s.executor.Execute(r.Context(), dtetype.Key{CycleID: cycle, ReportID: report}, cmd)
	var rej *cutover.RejectedError
	var bad *cutover.InputError
	switch {
	case errors.As(err, &bad):
		writeError(w, http.StatusBadRequest, codeBadRequest, "", bad.Problem)
	case errors.Is(err, cutover.ErrNoWorkflow):
		writeError(w, http.StatusNotFound, codeNotFound, "", err.Error())
	case errors.As(err, &rej):
		writeError(w, http.StatusConflict, codeRejected, rej.Rule, rej.Message)
	case errors.Is(err, cutover.ErrNotOnNew):
		writeError(w, http.StatusConflict, codeRejected, "not_on_new", err.Error())
	case err != nil:
		s.log.Warn("command failed", "action", action, "phase", cmd.Phase, "error", err)
		writeError(w, http.StatusBadGateway, codeUnavailable, "", "the command could not be completed; it may be retried with the same id (the log of dtebridge serve says why)")
	default:
		s.log.Info("command applied", "action", action, "phase", cmd.Phase, "cycle", cycle, "report", report, "actor", body.Actor)
		writeJSON(w, res)
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func phaseStrings(ps []dtetype.Phase) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = string(p)
	}
	return out
}
