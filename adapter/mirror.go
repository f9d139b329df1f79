package adapter

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

// MirrorConfig configures a Mirror. Client, Definition and Pool are required.
type MirrorConfig struct {
	// Client reaches Temporal.
	Client client.Client
	// Definition starts new shadow workflows; running ones keep theirs.
	Definition *dtetype.Definition
	// Pool is the bridge database, for the per-report delivery watermark.
	Pool *pgxpool.Pool
	// Schema is the bridge schema. Default: dtebridge.
	Schema string
	// TaskQueue is the shadow workers' queue. Default: shadow.DefaultTaskQueue.
	TaskQueue string
	// WorkflowIDPrefix prefixes workflow ids. Default: shadow.DefaultWorkflowIDPrefix.
	WorkflowIDPrefix string
	// Concurrency bounds the reports signalled at once. Default: 16.
	Concurrency int
	// MaxSignalChanges caps the changes in one signal. Default: 200.
	MaxSignalChanges int
	// SignalTimeout bounds one SignalWithStart call. Default: 10s.
	SignalTimeout time.Duration
	// SearchAttributes says the server has the shadow's search attributes.
	SearchAttributes bool
	// Roles, if set, resolves actors' roles for the role rule.
	Roles *RoleResolver
	// Authority, if set, says which phases are mirrored and which reports
	// the new engine owns (package cutover implements it).
	Authority Authority
	// OnConflict handles legacy writes to phases and reports the new engine
	// owns; they are not delivered. It must succeed for the batch to be
	// acknowledged.
	OnConflict func(ctx context.Context, conflicts []dtetype.PhaseChange) error
	// Logger receives operational messages. Default: discard.
	Logger *slog.Logger
	// Metrics receives the mirror's metrics. Default: unregistered.
	Metrics *MirrorMetrics
}

// MirrorMetrics are the mirror's Prometheus metrics.
type MirrorMetrics struct {
	Signals      prometheus.Counter
	SignalSize   prometheus.Histogram
	Delivery     prometheus.Histogram
	Failures     prometheus.Counter
	Availability prometheus.Gauge
}

// NewMirrorMetrics creates the mirror metrics and registers them on reg
// (nil: not registered).
func NewMirrorMetrics(reg prometheus.Registerer) *MirrorMetrics {
	m := &MirrorMetrics{
		Signals: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_mirror_signals_total",
			Help: "SignalWithStart calls Temporal accepted."}),
		SignalSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_mirror_signal_changes",
			Help: "Changes carried per signal (one report's share of a batch).", Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200}}),
		Delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_mirror_delivery_seconds",
			Help: "Time to hand one capture batch to Temporal, all its reports.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_mirror_retries_total",
			Help: "Batches Temporal did not accept in full; the reader redelivers each one, with backoff."}),
		Availability: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_mirror_temporal_available",
			Help: "0 if the mirror's last delivery to Temporal failed, else 1 (also before any delivery, and on standbys)."}),
	}
	m.Availability.Set(1)
	if reg != nil {
		reg.MustRegister(m.Signals, m.SignalSize, m.Delivery, m.Failures, m.Availability)
	}
	return m
}

// Mirror is the adapter's second half: a Consumer that delivers each batch
// to the shadow workflows, one SignalWithStart per report, reports in
// parallel and each report's changes in order. It acknowledges a batch only
// when Temporal accepted every signal; otherwise the reader redelivers it,
// and the workflows deduplicate by event id.
type Mirror struct {
	cfg    MirrorConfig
	schema string
}

// NewMirror returns a mirror.
func NewMirror(cfg MirrorConfig) *Mirror {
	if cfg.TaskQueue == "" {
		cfg.TaskQueue = shadow.DefaultTaskQueue
	}
	if cfg.WorkflowIDPrefix == "" {
		cfg.WorkflowIDPrefix = shadow.DefaultWorkflowIDPrefix
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.MaxSignalChanges <= 0 {
		cfg.MaxSignalChanges = 200
	}
	if cfg.SignalTimeout <= 0 {
		cfg.SignalTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMirrorMetrics(nil)
	}
	return &Mirror{cfg: cfg, schema: pgx.Identifier{orDefault(cfg.Schema, "dtebridge")}.Sanitize()}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Authority is cutover's view, as the mirror needs it.
type Authority interface {
	// Mirrored is false for a phase in legacy mode.
	Mirrored(p dtetype.Phase) bool
	// OnNew reports whether the new engine owns phase p of report k.
	OnNew(k dtetype.Key, p dtetype.Phase) bool
	// AsOf brings the view up to date with legacy transaction time t.
	AsOf(ctx context.Context, t time.Time) error
}

// route drops what the shadow must not apply: the bridge's own write-backs
// (the engine applied them already), phases in legacy mode, and legacy
// changes to rows of phases the new engine owns, which it returns as
// conflicts. Inserts and snapshots still flow: legacy creates reports' rows
// whatever the mode, and the engine learns of them that way.
func (m *Mirror) route(changes []dtetype.PhaseChange) (deliver, conflicts []dtetype.PhaseChange) {
	for _, c := range changes {
		switch {
		case c.Origin == dtetype.OriginBridge:
		case m.cfg.Authority == nil:
			deliver = append(deliver, c)
		case !m.cfg.Authority.Mirrored(c.Phase):
		case (c.Op == dtetype.OpUpdate || c.Op == dtetype.OpDelete) && m.cfg.Authority.OnNew(c.Key, c.Phase):
			conflicts = append(conflicts, c)
		default:
			deliver = append(deliver, c)
		}
	}
	return deliver, conflicts
}

// Deliver signals each report's changes to its shadow workflow.
func (m *Mirror) Deliver(ctx context.Context, b Batch) error {
	if m.cfg.Authority != nil && len(b.Changes) > 0 {
		var newest time.Time
		for _, c := range b.Changes {
			if c.TxTime.After(newest) {
				newest = c.TxTime
			}
		}
		if err := m.cfg.Authority.AsOf(ctx, newest); err != nil {
			return fmt.Errorf("error refreshing cutover modes: %w", err)
		}
	}
	var conflicts []dtetype.PhaseChange
	b.Changes, conflicts = m.route(b.Changes)
	if len(conflicts) > 0 && m.cfg.OnConflict != nil {
		if err := m.cfg.OnConflict(ctx, conflicts); err != nil {
			return fmt.Errorf("error handling authority conflicts: %w", err)
		}
	}
	if len(b.Changes) == 0 {
		return nil
	}
	began := time.Now()
	if m.cfg.Roles != nil {
		if err := m.cfg.Roles.Enrich(ctx, b.Changes); err != nil {
			m.cfg.Logger.Warn("could not resolve actor roles", "error", err)
		}
	}
	var keys []dtetype.Key
	byKey := map[dtetype.Key][]dtetype.PhaseChange{}
	for _, c := range b.Changes {
		if _, ok := byKey[c.Key]; !ok {
			keys = append(keys, c.Key)
		}
		byKey[c.Key] = append(byKey[c.Key], c)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.cfg.Concurrency)
	for _, k := range keys {
		changes := byKey[k]
		g.Go(func() error { return m.signal(gctx, k, changes) })
	}
	if err := g.Wait(); err != nil {
		m.cfg.Metrics.Failures.Inc()
		m.cfg.Metrics.Availability.Set(0)
		return err
	}
	m.cfg.Metrics.Availability.Set(1)
	if err := m.watermark(ctx, keys, byKey); err != nil {
		return err
	}
	m.cfg.Metrics.Delivery.Observe(time.Since(began).Seconds())
	return nil
}

// signal hands one report's changes to its workflow, in order, starting the
// workflow if it does not run.
func (m *Mirror) signal(ctx context.Context, k dtetype.Key, changes []dtetype.PhaseChange) error {
	id := shadow.WorkflowID(m.cfg.WorkflowIDPrefix, k)
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: m.cfg.TaskQueue}
	if m.cfg.SearchAttributes {
		opts.TypedSearchAttributes = temporal.NewSearchAttributes(shadow.SACycle.ValueSet(k.CycleID), shadow.SAReport.ValueSet(k.ReportID),
			shadow.SADefinition.ValueSet(m.cfg.Definition.Key()), shadow.SAHasViolations.ValueSet(false))
	}
	in := shadow.Input{Key: k, Definition: *m.cfg.Definition, SearchAttributes: m.cfg.SearchAttributes}
	for len(changes) > 0 {
		n := min(len(changes), m.cfg.MaxSignalChanges)
		sctx, cancel := context.WithTimeout(ctx, m.cfg.SignalTimeout)
		_, err := m.cfg.Client.SignalWithStartWorkflow(sctx, id, shadow.SignalChanges, shadow.Signal{Changes: changes[:n]}, opts, shadow.WorkflowName, in)
		cancel()
		if err != nil {
			return fmt.Errorf("error signalling %s: %w", id, err)
		}
		m.cfg.Metrics.Signals.Inc()
		m.cfg.Metrics.SignalSize.Observe(float64(n))
		changes = changes[n:]
	}
	return nil
}

// watermark records, per report, the last change handed to Temporal.
func (m *Mirror) watermark(ctx context.Context, keys []dtetype.Key, byKey map[dtetype.Key][]dtetype.PhaseChange) error {
	cycles := make([]int64, len(keys))
	reports := make([]int64, len(keys))
	seqs := make([]int64, len(keys))
	for i, k := range keys {
		cycles[i], reports[i] = k.CycleID, k.ReportID
		for _, c := range byKey[k] {
			seqs[i] = max(seqs[i], c.Seq)
		}
	}
	_, err := m.cfg.Pool.Exec(ctx, `INSERT INTO `+m.schema+`.mirror_keys AS k (cycle_id, report_id, delivered_seq, delivered_at, pending_since)
		SELECT c, r, s, now(), now() FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(c, r, s)
		ON CONFLICT (cycle_id, report_id) DO UPDATE SET delivered_seq = greatest(k.delivered_seq, excluded.delivered_seq),
			delivered_at = now(), pending_since = coalesce(k.pending_since, now())`,
		cycles, reports, seqs)
	if err != nil {
		return fmt.Errorf("error recording delivery: %w", err)
	}
	return nil
}

// ReportsBehind counts the reports whose shadow has not yet projected
// everything the mirror handed it (the mirror's watermark against the
// projection's applied sequence).
func ReportsBehind(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig) (int, error) {
	schema := pgx.Identifier{cfg.withDefaults().Schema}.Sanitize()
	var n int
	err := db.QueryRow(ctx, `SELECT count(*) FROM `+schema+`.mirror_keys m LEFT JOIN `+schema+`.shadow_keys s USING (cycle_id, report_id)
		WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq`).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("error reading the shadow's progress: %w", err)
	}
	return n, nil
}

// RoleConfig locates the legacy users table, to resolve actors' roles.
type RoleConfig struct {
	// Table is the users table, e.g. public.users.
	Table string `yaml:"table"`
	// ID and Role are its user-id and role columns. Defaults: user_id, role.
	ID   string `yaml:"id"`
	Role string `yaml:"role"`
}

// RoleResolver looks up legacy users' roles, caching the users table.
type RoleResolver struct {
	pool    *pgxpool.Pool
	cfg     RoleConfig
	mu      sync.Mutex
	roles   map[string]string
	loaded  time.Time
	refresh time.Duration
}

// NewRoleResolver returns a resolver for cfg on pool.
func NewRoleResolver(pool *pgxpool.Pool, cfg RoleConfig) *RoleResolver {
	cfg.ID, cfg.Role = orDefault(cfg.ID, "user_id"), orDefault(cfg.Role, "role")
	return &RoleResolver{pool: pool, cfg: cfg, refresh: time.Minute}
}

// Enrich sets StartedByRole and CompletedByRole where the actors are known.
func (r *RoleResolver) Enrich(ctx context.Context, changes []dtetype.PhaseChange) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	missing := false
	for i := range changes {
		c := &changes[i]
		for _, p := range []struct {
			id   string
			role *string
		}{{c.StartedBy, &c.StartedByRole}, {c.CompletedBy, &c.CompletedByRole}} {
			if p.id == "" {
				continue
			}
			role, ok := r.roles[p.id]
			missing = missing || !ok
			*p.role = role
		}
	}
	if (missing && time.Since(r.loaded) > 5*time.Second) || time.Since(r.loaded) > r.refresh {
		if err := r.load(ctx); err != nil {
			return err
		}
		for i := range changes {
			c := &changes[i]
			c.StartedByRole, c.CompletedByRole = r.roles[c.StartedBy], r.roles[c.CompletedBy]
		}
	}
	return nil
}

func (r *RoleResolver) load(ctx context.Context) error {
	q := fmt.Sprintf(`SELECT %s::text, %s::text FROM %s`, pgx.Identifier{r.cfg.ID}.Sanitize(), pgx.Identifier{r.cfg.Role}.Sanitize(),
		(&CaptureConfig{Table: r.cfg.Table}).tableIdent().Sanitize())
	rows, err := r.pool.Query(ctx, q)
	if err != nil {
		r.loaded = time.Now() // do not hammer a missing table
		return fmt.Errorf("error reading roles from %s: %w", r.cfg.Table, err)
	}
	defer rows.Close()
	roles := map[string]string{}
	for rows.Next() {
		var id, role *string
		if err := rows.Scan(&id, &role); err != nil {
			return err
		}
		if id != nil && role != nil {
			roles[*id] = *role
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	r.roles, r.loaded = roles, time.Now()
	return nil
}
