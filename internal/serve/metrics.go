package serve

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/reconcile"
)

// cutoverMetrics are the cutover metrics of a serving process.
type cutoverMetrics struct {
	conflicts *prometheus.CounterVec
	commands  *prometheus.CounterVec
}

func newCutoverMetrics(reg prometheus.Registerer, a *cutover.Authority, phases []dtetype.Phase, gate cutover.GateConfig) *cutoverMetrics {
	m := &cutoverMetrics{
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_cutover_authority_conflicts_total",
			Help: "Legacy writes to a phase and report the new engine owns, by phase."}, []string{"phase"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_cutover_commands_total",
			Help: "Engine commands by phase and outcome (accepted, rejected, failed)."}, []string{"phase", "outcome"}),
	}
	for _, p := range phases {
		m.conflicts.WithLabelValues(string(p))
		for _, o := range []string{"accepted", "rejected", "failed"} {
			m.commands.WithLabelValues(string(p), o)
		}
	}
	minConsistency := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_cutover_gate_min_consistency",
		Help: "The promotion gate's consistency threshold (cutover.gate.min_consistency), for dashboards and alerts."})
	gateRuns := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_cutover_gate_runs",
		Help: "Reconcile runs the promotion gate needs (cutover.gate.runs)."})
	minConsistency.Set(gate.MinConsistency)
	gateRuns.Set(float64(gate.Runs))
	reg.MustRegister(m.conflicts, m.commands, &modeCollector{a: a, phases: phases}, minConsistency, gateRuns)
	return m
}

// modeCollector exports each phase's cutover mode and percentage as they
// are when scraped, for every phase of the active definition.
type modeCollector struct {
	a      *cutover.Authority
	phases []dtetype.Phase
}

var (
	modeDesc = prometheus.NewDesc("dtebridge_cutover_mode", "1 for the mode each phase is in (legacy, shadow or new), 0 for the others; phases never set are in shadow.",
		[]string{"phase", "mode"}, nil)
	percentDesc = prometheus.NewDesc("dtebridge_cutover_percent", "Percentage of reports on the new engine, per phase (0 unless the phase is in mode new).",
		[]string{"phase"}, nil)
)

func (c *modeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- modeDesc
	ch <- percentDesc
}

func (c *modeCollector) Collect(ch chan<- prometheus.Metric) {
	modes := c.a.Modes()
	for _, p := range c.phases {
		m := cutover.ModeOf(modes, p)
		for _, mode := range []string{cutover.ModeLegacy, cutover.ModeShadow, cutover.ModeNew} {
			v := 0.0
			if m.Mode == mode {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, v, string(p), mode)
		}
		pct := 0.0
		if m.Mode == cutover.ModeNew {
			pct = float64(m.Percent)
		}
		ch <- prometheus.MustNewConstMetric(percentDesc, prometheus.GaugeValue, pct, string(p))
	}
}

// dbCollector exports what the bridge schema records, whichever process
// wrote it: reconcile runs (scheduled ones and dtebridge reconcile alike),
// open divergences and pending quarantine. It reads at scrape time, at most
// every cacheFor, and exports nothing (rather than stale figures) when the
// database does not answer.
type dbCollector struct {
	pool     *pgxpool.Pool
	schema   string
	phases   []dtetype.Phase
	log      *slog.Logger
	cacheFor time.Duration

	mu     sync.Mutex
	at     time.Time
	cached []prometheus.Metric
}

var (
	runsDesc         = prometheus.NewDesc("dtebridge_reconcile_runs_total", "Reconcile runs recorded (scheduled and on demand).", nil, nil)
	lastDurationDesc = prometheus.NewDesc("dtebridge_reconcile_last_duration_seconds", "Duration of the last recorded reconcile run.", nil, nil)
	lastSuccessDesc  = prometheus.NewDesc("dtebridge_reconcile_last_success_timestamp_seconds", "Unix time the last recorded reconcile run finished.", nil, nil)
	comparedDesc     = prometheus.NewDesc("dtebridge_reconcile_rows_compared_total", "Legacy keys compared by recorded reconcile runs, in all.", nil, nil)
	lastComparedDesc = prometheus.NewDesc("dtebridge_reconcile_last_rows_compared", "Legacy keys the last recorded reconcile run compared.", nil, nil)
	newDesc          = prometheus.NewDesc("dtebridge_reconcile_new_divergences_total", "Divergences first seen by a recorded run, in all.", nil, nil)
	resolvedDesc     = prometheus.NewDesc("dtebridge_reconcile_resolved_divergences_total", "Divergences a recorded run no longer found, in all.", nil, nil)
	consistencyDesc  = prometheus.NewDesc("dtebridge_reconcile_consistency_ratio", "Consistent keys over compared keys per phase, from the last recorded run that covered the phase (the cutover gate's figure).",
		[]string{"phase"}, nil)
	divergencesDesc = prometheus.NewDesc("dtebridge_reconcile_divergences", "Open divergences (as the last run that saw them left them, plus authority conflicts), by phase, kind, and whether a reconcile.expected rule accepts them.",
		[]string{"phase", "kind", "expected"}, nil)
	quarantineDesc = prometheus.NewDesc("dtebridge_capture_quarantine_pending", "Quarantined changes not yet delivered, by reason.", []string{"reason"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{runsDesc, lastDurationDesc, lastSuccessDesc, comparedDesc, lastComparedDesc, newDesc, resolvedDesc,
		consistencyDesc, divergencesDesc, quarantineDesc} {
		ch <- d
	}
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cached == nil || time.Since(c.at) >= c.cacheFor {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ms, err := c.read(ctx)
		cancel()
		if err != nil {
			c.log.Warn("metrics: cannot read the bridge schema", "error", err)
			c.cached = nil
			return
		}
		c.cached, c.at = ms, time.Now()
	}
	for _, m := range c.cached {
		ch <- m
	}
}

func (c *dbCollector) read(ctx context.Context) ([]prometheus.Metric, error) {
	schema := pgx.Identifier{c.schema}.Sanitize()
	var out []prometheus.Metric
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
	}
	counter := func(d *prometheus.Desc, v float64) {
		out = append(out, prometheus.MustNewConstMetric(d, prometheus.CounterValue, v))
	}
	var runs, compared, newN, resolved int64
	var lastDur, lastAt *float64
	var lastCompared *int64
	err := c.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(compared), 0)::bigint, coalesce(sum(new), 0)::bigint, coalesce(sum(resolved), 0)::bigint,
			(SELECT extract(epoch FROM finished_at - started_at)::float8 FROM `+schema+`.reconcile_runs ORDER BY run_id DESC LIMIT 1),
			(SELECT extract(epoch FROM finished_at)::float8 FROM `+schema+`.reconcile_runs ORDER BY run_id DESC LIMIT 1),
			(SELECT compared FROM `+schema+`.reconcile_runs ORDER BY run_id DESC LIMIT 1)
		FROM `+schema+`.reconcile_runs`).Scan(&runs, &compared, &newN, &resolved, &lastDur, &lastAt, &lastCompared)
	if err != nil {
		return nil, err
	}
	counter(runsDesc, float64(runs))
	counter(comparedDesc, float64(compared))
	counter(newDesc, float64(newN))
	counter(resolvedDesc, float64(resolved))
	if lastDur != nil {
		gauge(lastDurationDesc, *lastDur)
		gauge(lastSuccessDesc, *lastAt)
		gauge(lastComparedDesc, float64(*lastCompared))
	}
	recent, err := reconcile.Runs(ctx, c.pool, c.schema, 50)
	if err != nil {
		return nil, err
	}
	for _, p := range c.phases {
	runs:
		for _, r := range recent {
			for _, pr := range r.Phases {
				if pr.Phase == p && pr.Compared > 0 {
					gauge(consistencyDesc, pr.Consistency, string(p))
					break runs
				}
			}
		}
	}
	// Every phase and kind is exported, zero included, so a divergence
	// appearing is a change of value, not a new series.
	open := map[[3]string]float64{}
	for _, p := range c.phases {
		for _, k := range append(reconcile.Kinds(), cutover.KindAuthorityConflict) {
			open[[3]string{string(p), k, "false"}] = 0
		}
	}
	rows, err := c.pool.Query(ctx, `SELECT phase, kind, (coalesce(rule, '') <> '')::text, count(*) FROM `+schema+`.divergences
		WHERE resolved_at IS NULL GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var phase, kind, expected string
		var n int64
		if err := rows.Scan(&phase, &kind, &expected, &n); err != nil {
			rows.Close()
			return nil, err
		}
		open[[3]string{phase, kind, expected}] = float64(n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for k, v := range open {
		gauge(divergencesDesc, v, k[0], k[1], k[2])
	}
	pending := map[string]float64{}
	rows, err = c.pool.Query(ctx, `SELECT reason, count(*) FROM `+schema+`.quarantine WHERE delivered_at IS NULL GROUP BY 1`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var reason string
		var n int64
		if err := rows.Scan(&reason, &n); err != nil {
			rows.Close()
			return nil, err
		}
		pending[reason] = float64(n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, r := range adapter.Reasons() {
		gauge(quarantineDesc, pending[r], r)
		delete(pending, r)
	}
	for r, n := range pending {
		gauge(quarantineDesc, n, r)
	}
	return out, nil
}
