package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// MirrorOptions sizes the mirror benchmarks. Zero fields take defaults.
type MirrorOptions struct {
	// Signals is the raw SignalWithStart loop's length. Default: 2,000.
	Signals int
	// Reports and Changes shape the backlog the mirror drains. Defaults:
	// 200 reports, 20,000 changes.
	Reports int
	Changes int
	// Concurrency is the mirror's (and the raw loop's) parallelism. Default: 16.
	Concurrency int
	// LagDuration is how long lag is measured. Default: 20s.
	LagDuration time.Duration
	// Topology, if set, names the Temporal server (for example "pg" for
	// PostgreSQL persistence, one process per service): it is added to the
	// rows' group, keys and databases, and lag is not measured.
	Topology, TopologyName string
}

func (o *MirrorOptions) defaults() {
	if o.Signals == 0 {
		o.Signals = 2000
	}
	if o.Reports == 0 {
		o.Reports = 200
	}
	if o.Changes == 0 {
		o.Changes = 20000
	}
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.LagDuration == 0 {
		o.LagDuration = 20 * time.Second
	}
}

// RawSignalRate measures the dev server's SignalWithStart ceiling with a
// plain loop of workers, each signalling its own workflows, while a shadow
// worker processes them. It returns signals per second.
func RawSignalRate(ctx context.Context, tc client.Client, pool *pgxpool.Pool, def *dtetype.Definition, queue string, n, workers int) (float64, error) {
	w := shadow.NewWorker(tc, store.New(pool, config.DefaultSchema), shadow.WorkerConfig{TaskQueue: queue})
	if err := w.Start(); err != nil {
		return 0, err
	}
	defer w.Stop()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	now := time.Now()
	began := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				key := dtetype.Key{CycleID: 9, ReportID: i % 200}
				c := dtetype.PhaseChange{EventID: fmt.Sprintf("raw%d", i), Seq: i, Key: key, RowID: "1", Phase: "planning",
					Op: dtetype.OpUpdate, State: dtetype.StateInProgress, BaseState: dtetype.StateInProgress,
					Status: dtetype.StatusOnSchedule, BaseStatus: dtetype.StatusOnSchedule, TxTime: now, CapturedAt: now}
				id := shadow.WorkflowID(queue+"-raw-", key)
				_, err := tc.SignalWithStartWorkflow(ctx, id, shadow.SignalChanges, shadow.Signal{Changes: []dtetype.PhaseChange{c}},
					client.StartWorkflowOptions{ID: id, TaskQueue: queue}, shadow.WorkflowName, shadow.Input{Key: key, Definition: *def})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n) / time.Since(began).Seconds(), nil
}

// timing wraps a consumer and records each change's lag and the ack count.
type timing struct {
	next  adapter.Consumer
	mu    sync.Mutex
	lags  []time.Duration
	acked atomic.Int64
	snaps atomic.Int64
}

func (t *timing) Deliver(ctx context.Context, b adapter.Batch) error {
	if err := t.next.Deliver(ctx, b); err != nil {
		return err
	}
	now := time.Now()
	if b.Backfill != "" {
		if b.Last {
			t.snaps.Add(1)
		}
		return nil
	}
	t.mu.Lock()
	for _, c := range b.Changes {
		t.lags = append(t.lags, now.Sub(c.CapturedAt))
	}
	t.mu.Unlock()
	t.acked.Add(int64(len(b.Changes)))
	return nil
}

// MirrorBench measures, on one PostgreSQL cluster and one Temporal server:
// the raw SignalWithStart ceiling, capture-to-acknowledgement lag at half
// the ceiling, and the mirror's end-to-end throughput in legacy changes per
// second when draining a backlog, as a ratio to the ceiling. Lag goes first:
// the dev server slows as its in-memory history grows.
func MirrorBench(ctx context.Context, c *localpg.Cluster, tc client.Client, o MirrorOptions) ([]Row, error) {
	o.defaults()
	cfg, err := config.Example("seed")
	if err != nil {
		return nil, err
	}
	_, def, err := cfg.LoadDefinitions()
	if err != nil {
		return nil, err
	}
	key, db, group := "mirror", "bench_mirror", "mirror: legacy changes into shadow workflows"
	if o.Topology != "" {
		key, db, group = key+"."+o.Topology, db+"_"+o.Topology, group+", "+o.TopologyName
	}
	pool, err := legacyDB(ctx, c, db, 0, "")
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	raw, err := RawSignalRate(ctx, tc, pool, def, "bench-raw", o.Signals, o.Concurrency)
	if err != nil {
		return nil, fmt.Errorf("raw signal loop: %w", err)
	}
	rows := []Row{{Group: group, Name: fmt.Sprintf("raw SignalWithStart loop, %d workers (ceiling)", o.Concurrency), Figure: fmt.Sprintf("%.0f signals/s", raw), Versus: "baseline",
		Key: key + ".raw_signals", Value: raw, Unit: "signals/s", Ratio: 1}}
	if o.Topology == "" {
		lag, err := mirrorLag(ctx, c, tc, cfg, def, o, raw)
		if err != nil {
			return nil, err
		}
		rows = append(rows, lag...)
	}
	// Drain a backlog through the mirror and the shadow workers, with the
	// default batch and with a smaller one (capture.batch_size).
	for _, batch := range []int{config.DefaultBatchSize, 500} {
		bcfg := *cfg
		bcfg.Capture.BatchSize = batch
		suffix, name, k := "", "", key
		if batch != config.DefaultBatchSize {
			suffix, name, k = fmt.Sprintf("_b%d", batch), fmt.Sprintf(", capture.batch_size %d", batch), fmt.Sprintf("%s.batch%d", key, batch)
		}
		lpool, err := seedLegacy(ctx, c, db+"_drain"+suffix, &bcfg, o.Reports)
		if err != nil {
			return nil, err
		}
		defer lpool.Close()
		if err := rowUpdates(ctx, lpool, o.Changes, 0); err != nil {
			return nil, err
		}
		backlog, err := bcfg.Store(lpool).BacklogOf(ctx, store.MirrorConsumer)
		if err != nil {
			return nil, err
		}
		drain, err := runMirror(ctx, lpool, tc, &bcfg, def, "bench-drain"+suffix, o.Concurrency, func(t *timing) bool { return t.acked.Load() >= backlog.Changes })
		if err != nil {
			return nil, err
		}
		rate := float64(backlog.Changes) / drain.acked.Seconds()
		rows = append(rows,
			Row{Group: group, Name: fmt.Sprintf("mirror, drain %d changes of %d reports%s", backlog.Changes, o.Reports, name), Figure: fmt.Sprintf("%.0f changes/s", rate),
				Versus: fmt.Sprintf("%.2f× the ceiling", rate/raw), Key: k + ".drain", Value: rate, Unit: "changes/s", Ratio: rate / raw},
			Row{Group: group, Name: "  applied and projected by the shadow", Figure: fmt.Sprintf("%.0f changes/s", float64(backlog.Changes)/drain.projected.Seconds()),
				Versus: fmt.Sprintf("%.1fs in all", drain.projected.Seconds()), Key: k + ".drain.projected", Value: float64(backlog.Changes) / drain.projected.Seconds(), Unit: "changes/s"},
			Row{Group: group, Name: "  changes per signal", Figure: fmt.Sprintf("%.1f", float64(backlog.Changes)/drain.signals),
				Key: k + ".drain.changes_per_signal", Value: float64(backlog.Changes) / drain.signals, Unit: "changes"})
	}
	return rows, nil
}

// mirrorLag measures capture-to-acknowledgement lag at half the raw
// ceiling.
func mirrorLag(ctx context.Context, c *localpg.Cluster, tc client.Client, cfg *config.Config, def *dtetype.Definition, o MirrorOptions, raw float64) ([]Row, error) {
	lagPool, err := seedLegacy(ctx, c, "bench_mirror_lag", cfg, o.Reports)
	if err != nil {
		return nil, err
	}
	defer lagPool.Close()
	target := raw / 2
	var lags []time.Duration
	var achieved float64
	_, err = runMirror(ctx, lagPool, tc, cfg, def, "bench-lag", o.Concurrency, func(t *timing) bool {
		began := time.Now()
		n := int(target * o.LagDuration.Seconds())
		if err := rowUpdates(ctx, lagPool, n, target); err != nil {
			return true
		}
		achieved = float64(n) / time.Since(began).Seconds()
		for time.Since(began) < o.LagDuration+time.Minute && t.acked.Load() < int64(n) {
			time.Sleep(20 * time.Millisecond)
		}
		t.mu.Lock()
		lags = slices.Clone(t.lags)
		t.mu.Unlock()
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(lags)
	lg := fmt.Sprintf("mirror lag at %.0f changes/s (half the ceiling), trigger to Temporal ack", achieved)
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return []Row{{Group: lg, Name: "p50", Figure: ms(percentile(lags, 0.5)), Key: "mirror.lag.p50", Value: msf(percentile(lags, 0.5)), Unit: "ms"},
		{Group: lg, Name: "p99", Figure: ms(percentile(lags, 0.99)), Versus: fmt.Sprintf("%d changes", len(lags)), Key: "mirror.lag.p99", Value: msf(percentile(lags, 0.99)), Unit: "ms"}}, nil
}

// rowUpdates makes n single-row legacy updates across the table, from four
// writers, at rate per second in all (0: as fast as possible).
func rowUpdates(ctx context.Context, pool *pgxpool.Pool, n int, rate float64) error {
	var ids []int64
	if err := pool.QueryRow(ctx, `SELECT array_agg(phase_id) FROM workflow_phases`).Scan(&ids); err != nil {
		return err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	began := time.Now()
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if rate > 0 {
					if d := time.Until(began.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
						time.Sleep(d)
					}
				}
				id := ids[(int(i)*7919+w)%len(ids)]
				if _, err := pool.Exec(ctx, `UPDATE workflow_phases SET completed_by = coalesce(completed_by, 0) + 1, updated_at = now() WHERE phase_id = $1`, id); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// seedLegacy creates a seed-profile legacy database with reports and the
// bridge installed.
func seedLegacy(ctx context.Context, c *localpg.Cluster, name string, cfg *config.Config, reports int) (*pgxpool.Pool, error) {
	url, err := c.CreateDatabase(ctx, name)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := legacysim.Init(ctx, pool, legacysim.Seed); err != nil {
		return nil, err
	}
	if _, err := legacysim.Simulate(ctx, pool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: reports, ReportsPerCycle: 50, Ops: 1, Rate: 0, Concurrency: 4}); err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	if _, err := adapter.Install(ctx, conn.Conn(), cfg.CaptureConfig(), false); err != nil {
		return nil, err
	}
	// As if the bridge had run and backfilled: the stream starts now.
	if _, err := pool.Exec(ctx, `INSERT INTO dtebridge.checkpoints (consumer, acked_snapshot, backfilled_at)
		VALUES ('mirror', pg_current_snapshot(), now())`); err != nil {
		return nil, err
	}
	return pool, nil
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

type drainResult struct {
	acked, projected time.Duration
	signals          float64
}

// runMirror runs a reader, the mirror and a shadow worker until done says
// so, and times how long the acknowledgements and the projections took.
func runMirror(ctx context.Context, pool *pgxpool.Pool, tc client.Client, cfg *config.Config, def *dtetype.Definition, queue string, conc int, done func(*timing) bool) (*drainResult, error) {
	w := shadow.NewWorker(tc, store.New(pool, config.DefaultSchema), shadow.WorkerConfig{TaskQueue: queue})
	if err := w.Start(); err != nil {
		return nil, err
	}
	defer w.Stop()
	tr, err := cfg.Translator(def.PhaseIDs())
	if err != nil {
		return nil, err
	}
	mm := adapter.NewMirrorMetrics(nil)
	t := &timing{next: adapter.NewMirror(adapter.MirrorConfig{Client: tc, Definition: def, Store: cfg.Store(pool), TaskQueue: queue,
		WorkflowIDPrefix: queue + "-", Concurrency: conc, Metrics: mm})}
	rc := cfg.ReaderConfig()
	rc.PollInterval = 100 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	began := time.Now()
	go func() { errc <- adapter.NewReader(cfg.Store(pool), tr, rc).Run(rctx, t) }()
	res := &drainResult{}
	for !done(t) {
		select {
		case err := <-errc:
			cancel()
			return nil, err
		case <-time.After(5 * time.Millisecond):
		}
	}
	res.acked = time.Since(began)
	for {
		behind, err := cfg.Store(pool).ReportsBehind(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		if behind == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.projected = time.Since(began)
	res.signals = counterValue(mm.Signals)
	cancel()
	<-errc
	return res, nil
}
