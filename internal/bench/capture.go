package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/store"
)

// CaptureOptions sizes the capture benchmarks. Zero fields take defaults.
type CaptureOptions struct {
	// Rows is the size of the legacy table. Default: 20,000.
	Rows int
	// Clients run single-row updates concurrently. Default: 4.
	Clients int
	// Rounds alternate the variants, each for Slice, and the median counts.
	// Defaults: 5 rounds of 2s.
	Rounds int
	Slice  time.Duration
	// BulkRows is the size of a bulk UPDATE. Default: 1,000.
	BulkRows int
	// ReaderChanges is the backlog the reader drains. Default: 100,000.
	ReaderChanges int
	// LagRate is the write rate, in changes per second, at which lag is
	// measured, for LagDuration. Defaults: 500/s for 15s.
	LagRate     float64
	LagDuration time.Duration
	Logger      *slog.Logger
}

func (o *CaptureOptions) defaults() {
	if o.Rows == 0 {
		o.Rows = 20000
	}
	if o.Clients == 0 {
		o.Clients = 4
	}
	if o.Rounds == 0 {
		o.Rounds = 5
	}
	if o.Slice == 0 {
		o.Slice = 2 * time.Second
	}
	if o.BulkRows == 0 {
		o.BulkRows = 1000
	}
	if o.ReaderChanges == 0 {
		o.ReaderChanges = 100000
	}
	if o.LagRate == 0 {
		o.LagRate = 500
	}
	if o.LagDuration == 0 {
		o.LagDuration = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// legacyDB creates a production-profile legacy database of n phase rows
// and, unless mode is "", installs capture: a trigger mode (row,
// statement) or log-based capture (logical).
func legacyDB(ctx context.Context, c *localpg.Cluster, name string, n int, mode string) (*pgxpool.Pool, error) {
	url, err := c.CreateDatabase(ctx, name)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	if err := legacysim.Init(ctx, pool, legacysim.Production); err != nil {
		return nil, err
	}
	// Rows shaped like the model's, generated in SQL for speed.
	_, err = pool.Exec(ctx, fmt.Sprintf(`
		INSERT INTO test_cycles (cycle_name, start_date) VALUES ('bench', '2026-01-01');
		INSERT INTO reports (report_name) SELECT 'Report ' || g FROM generate_series(1, (%[1]d + 8) / 9) g;
		INSERT INTO workflow_phases (cycle_id, report_id, phase_name, phase_order, status, state, schedule_status,
			planned_start_date, planned_end_date, actual_start_date, started_by, notes, metadata, phase_data,
			progress_percentage, sla_deadline, is_sla_breached, risk_level, created_by_id)
		SELECT 1, r.report_id, p.label::phase_name_enum, p.ord, 'In Progress', 'In Progress', 'On Track',
			'2026-01-01'::date + p.ord * 7, '2026-01-08'::date + p.ord * 7, now(), 11, 'bench row',
			'{"created_by": "orchestrator"}', '{"attributes": 12, "samples": 25}', 40, now(), false, 'Low', 11
		FROM reports r, (VALUES (0, 'Planning'), (1, 'Data Profiling'), (2, 'Scoping'), (3, 'Sample Selection'),
			(4, 'Data Provider ID'), (5, 'Request Info'), (6, 'Testing'), (7, 'Observations'), (8, 'Finalize Test Report')) p(ord, label)
		LIMIT %[1]d`, n))
	if err != nil {
		return nil, fmt.Errorf("error generating legacy rows: %w", err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE workflow_phases"); err != nil {
		return nil, err
	}
	if mode != "" {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return nil, err
		}
		defer conn.Close(ctx)
		cfg, err := config.Example("production")
		if err != nil {
			return nil, err
		}
		if mode == adapter.ModeLogical || mode == logicalDeferred {
			cfg.Capture.Mode = adapter.ModeLogical
		} else {
			cfg.Capture.Trigger = mode
		}
		if _, err := adapter.Install(ctx, conn, cfg.CaptureConfig(), false); err != nil {
			return nil, err
		}
	}
	return pool, nil
}

// logicalDeferred is log-based capture measured with its slot in place but
// nothing decoding it meanwhile: the legacy write path's own cost.
const logicalDeferred = "logical_deferred"

// CaptureOverhead measures what capture adds to legacy writes: single-row
// updates from several clients, the legacy model's own transactions, and
// single-client bulk updates, on identical databases without capture, with
// each trigger mode and with log-based capture, alternating them in rounds.
// Log-based capture is measured twice: as it runs in production, with its
// reader decoding the slot meanwhile on the same machine (on two cores,
// decoding competes with legacy for the CPU), and with the slot in place
// but decoded only afterwards, which is what the legacy transaction itself
// pays (the old row images of REPLICA IDENTITY FULL). The trigger modes'
// readers are not running (their cost is inside the legacy transaction).
func CaptureOverhead(ctx context.Context, c *localpg.Cluster, label string, o CaptureOptions) ([]Row, error) {
	o.defaults()
	modes := []string{"", adapter.TriggerRow, adapter.TriggerStatement, adapter.ModeLogical, logicalDeferred}
	names := map[string]string{"": "no capture (baseline)", adapter.TriggerRow: "row trigger", adapter.TriggerStatement: "statement trigger",
		adapter.ModeLogical: "log-based (logical decoding)", logicalDeferred: "log-based, decoded afterwards (the write path alone)"}
	keys := map[string]string{"": "none", adapter.TriggerRow: "row_trigger", adapter.TriggerStatement: "statement_trigger", adapter.ModeLogical: "logical",
		logicalDeferred: "logical_write_path"}
	pools := map[string]*pgxpool.Pool{}
	for i, m := range modes {
		p, err := legacyDB(ctx, c, fmt.Sprintf("bench_overhead_%s_%d", strings.ReplaceAll(label, " ", "_"), i), o.Rows, m)
		if err != nil {
			return nil, err
		}
		defer p.Close()
		pools[m] = p
	}
	// Log-based capture runs with its reader, which creates the slot and
	// backfills first.
	cons := &counting{}
	stopReader, err := startReader(ctx, pools[adapter.ModeLogical], adapter.ModeLogical, 500, cons)
	if err != nil {
		return nil, err
	}
	defer stopReader()
	if err := waitUntil(ctx, time.Minute, func() bool { _, b := cons.counts(); return b > 0 }); err != nil {
		return nil, fmt.Errorf("log-based capture's backfill: %w", err)
	}
	// The deferred variant's slot is created by a reader that then stops;
	// after each round the slot is moved to the end of the WAL, as a
	// reader catching up would.
	deferred := &counting{}
	stopDeferred, err := startReader(ctx, pools[logicalDeferred], adapter.ModeLogical, 500, deferred)
	if err != nil {
		return nil, err
	}
	if err := waitUntil(ctx, time.Minute, func() bool { _, b := deferred.counts(); return b > 0 }); err != nil {
		return nil, fmt.Errorf("log-based capture's backfill: %w", err)
	}
	if err := stopDeferred(); err != nil {
		return nil, err
	}
	single := map[string][]float64{}
	model := map[string][]float64{}
	bulk := map[string][]float64{}
	for round := range o.Rounds {
		order := slices.Clone(modes)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, m := range order {
			o.Logger.Info("capture overhead", "round", round+1, "mode", names[m])
			tps, err := singleRowUpdates(ctx, pools[m], o.Rows, o.Clients, o.Slice)
			if err != nil {
				return nil, err
			}
			single[m] = append(single[m], tps)
			ops, err := modelOperations(ctx, pools[m], o.Rows, o.Clients, o.Slice)
			if err != nil {
				return nil, err
			}
			model[m] = append(model[m], ops)
			per, err := bulkUpdates(ctx, pools[m], o.Rows, o.BulkRows, o.Slice)
			if err != nil {
				return nil, err
			}
			bulk[m] = append(bulk[m], per)
			if m == logicalDeferred {
				if _, err := pools[m].Exec(ctx, `SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn()) FROM pg_replication_slots
					WHERE database = current_database()`); err != nil {
					return nil, err
				}
				continue
			}
			if m != "" {
				if m == adapter.ModeLogical {
					// Let the decoder catch up before the next variant runs.
					wal, err := adapter.WALNow(ctx, pools[m])
					if err != nil {
						return nil, err
					}
					cfg, _ := config.Example("production")
					cfg.Capture.Mode = m
					if err := adapter.WaitLogged(ctx, cfg.Store(pools[m]), cfg.Logical(), wal, 5*time.Minute); err != nil {
						return nil, err
					}
				}
				if _, err := pools[m].Exec(ctx, "TRUNCATE dtebridge.changes"); err != nil {
					return nil, err
				}
			}
		}
	}
	var rows []Row
	slug := map[string]string{"durable commits": "durable", "fsync off (worst case)": "fsync_off"}[label]
	if slug == "" {
		slug = strings.ReplaceAll(label, " ", "_")
	}
	g1 := fmt.Sprintf("capture overhead: single-row UPDATE, %d clients, %s", o.Clients, label)
	base := median(single[""])
	for _, m := range modes {
		tps := median(single[m])
		r := Row{Group: g1, Name: names[m], Figure: fmt.Sprintf("%.0f tx/s", tps), Versus: "baseline",
			Key: "capture.overhead." + slug + ".single_row." + keys[m], Value: tps, Unit: "tx/s", Ratio: 1}
		if m != "" {
			r.Versus, r.Ratio = pct(base/tps), base/tps
		}
		rows = append(rows, r)
	}
	gm := fmt.Sprintf("capture overhead: legacy model operations, %d clients, %s", o.Clients, label)
	baseModel := median(model[""])
	for _, m := range modes {
		ops := median(model[m])
		r := Row{Group: gm, Name: names[m], Figure: fmt.Sprintf("%.0f tx/s", ops), Versus: "baseline",
			Key: "capture.overhead." + slug + ".model." + keys[m], Value: ops, Unit: "tx/s", Ratio: 1}
		if m != "" {
			r.Versus, r.Ratio = pct(baseModel/ops), baseModel/ops
		}
		rows = append(rows, r)
	}
	g2 := fmt.Sprintf("capture overhead: %d-row UPDATE, 1 client, %s", o.BulkRows, label)
	baseBulk := median(bulk[""])
	for _, m := range modes {
		per := median(bulk[m])
		r := Row{Group: g2, Name: names[m], Figure: ms(time.Duration(per)) + " per statement", Versus: "baseline",
			Key: "capture.overhead." + slug + ".bulk." + keys[m], Value: per / 1e6, Unit: "ms/statement", Ratio: 1}
		if m != "" {
			r.Versus, r.Ratio = pct(per/baseBulk), per/baseBulk
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// singleRowUpdates runs autocommit single-row updates from clients for d and
// returns transactions per second.
func singleRowUpdates(ctx context.Context, pool *pgxpool.Pool, rows, clients int, d time.Duration) (float64, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	deadline := time.Now().Add(d)
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for time.Now().Before(deadline) {
				id := 1 + rng.IntN(rows)
				if _, err := pool.Exec(ctx, `UPDATE workflow_phases SET progress_percentage = $2, updated_at = now() WHERE phase_id = $1`, id, rng.IntN(100)); err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n.Load()) / d.Seconds(), nil
}

// modelOperations runs the legacy application's own transactions (override
// and clear-override: read the row for update, then update it) from
// clients for d, and returns transactions per second.
func modelOperations(ctx context.Context, pool *pgxpool.Pool, rows, clients int, d time.Duration) (float64, error) {
	m := legacysim.NewModel(pool, legacysim.Production, nil)
	var keys []dtetype.Key
	r, err := pool.Query(ctx, `SELECT DISTINCT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Testing'`)
	if err != nil {
		return 0, err
	}
	for r.Next() {
		var k dtetype.Key
		if err := r.Scan(&k.CycleID, &k.ReportID); err != nil {
			return 0, err
		}
		keys = append(keys, k)
	}
	if err := r.Err(); err != nil || len(keys) == 0 {
		return 0, fmt.Errorf("no Testing rows to operate on (%v)", err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	deadline := time.Now().Add(d)
	state := dtetype.StateCompleted
	for w := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; time.Now().Before(deadline); i++ {
				ref := legacysim.Ref{Key: keys[rng.IntN(len(keys))], Phase: "Testing"}
				var err error
				if i%2 == 0 {
					_, err = m.Override(ctx, ref, 7, legacysim.OverrideOptions{State: &state, Reason: "bench"})
				} else {
					_, err = m.ClearOverride(ctx, ref)
				}
				if err != nil {
					errs <- err
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(n.Load()) / d.Seconds(), nil
}

// bulkUpdates runs size-row updates for d and returns nanoseconds per
// statement.
func bulkUpdates(ctx context.Context, pool *pgxpool.Pool, rows, size int, d time.Duration) (float64, error) {
	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	var n int
	began := time.Now()
	for time.Since(began) < d || n < 3 {
		lo := 1 + rng.IntN(max(1, rows-size))
		if _, err := pool.Exec(ctx, `UPDATE workflow_phases SET progress_percentage = (progress_percentage + 1) % 100, updated_at = now()
			WHERE phase_id >= $1 AND phase_id < $1 + $2`, lo, size); err != nil {
			return 0, err
		}
		n++
	}
	return float64(time.Since(began)) / float64(n), nil
}

// counting is a consumer that counts changes and records their lag.
type counting struct {
	mu        sync.Mutex
	stream    int
	backfills int
	lags      []time.Duration
}

func (c *counting) Deliver(_ context.Context, b adapter.Batch) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.Last {
		c.backfills++
	}
	if b.Backfill != "" {
		return nil
	}
	c.stream += len(b.Changes)
	for _, ch := range b.Changes {
		c.lags = append(c.lags, now.Sub(ch.CapturedAt))
	}
	return nil
}

func (c *counting) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stream, c.backfills
}

func startReader(ctx context.Context, pool *pgxpool.Pool, mode string, batch int, c adapter.Consumer) (stop func() error, err error) {
	cfg, err := config.Example("production")
	if err != nil {
		return nil, err
	}
	if mode == adapter.ModeLogical || mode == logicalDeferred {
		cfg.Capture.Mode = adapter.ModeLogical
	}
	tr, err := cfg.Translator(nil)
	if err != nil {
		return nil, err
	}
	rc := cfg.ReaderConfig()
	rc.BatchSize = batch
	rc.PollInterval = 100 * time.Millisecond
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- adapter.NewReader(cfg.Store(pool), tr, rc).Run(rctx, c) }()
	return func() error {
		cancel()
		if err := <-done; err != nil && err != context.Canceled {
			return err
		}
		return nil
	}, nil
}

func waitUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// ReaderThroughput measures how fast the reader drains a backlog of
// committed changes, for two batch sizes, under trigger capture (the
// changes wait in the change log) and under log-based capture (they wait
// in the slot, and are decoded, written and delivered).
func ReaderThroughput(ctx context.Context, c *localpg.Cluster, o CaptureOptions) ([]Row, error) {
	o.defaults()
	var rows []Row
	group := fmt.Sprintf("capture reader: drain a backlog of %d changes", o.ReaderChanges)
	trigger := map[int]float64{}
	for i, v := range []struct {
		mode  string
		batch int
	}{{adapter.TriggerRow, 500}, {adapter.TriggerRow, 2000}, {adapter.ModeLogical, 500}, {adapter.ModeLogical, 2000}} {
		pool, err := legacyDB(ctx, c, fmt.Sprintf("bench_reader_%d", i), o.Rows, v.mode)
		if err != nil {
			return nil, err
		}
		defer pool.Close()
		c1 := &counting{}
		stop, err := startReader(ctx, pool, v.mode, v.batch, c1)
		if err != nil {
			return nil, err
		}
		// Wait for the backfill to be checkpointed, not just delivered: a
		// reader stopped in between backfills again on its next start.
		if err := waitUntil(ctx, time.Minute, func() bool {
			cps, err := store.New(pool, config.DefaultSchema).Checkpoints(ctx, config.DefaultConsumerLease)
			return err == nil && len(cps) == 1 && cps[0].BackfilledAt != nil
		}); err != nil {
			return nil, fmt.Errorf("backfill: %w", err)
		}
		if err := stop(); err != nil {
			return nil, err
		}
		// The backlog: bulk updates while no reader runs.
		for done := 0; done < o.ReaderChanges; done += o.BulkRows {
			size := min(o.BulkRows, o.ReaderChanges-done)
			lo := 1 + (done % max(1, o.Rows-size))
			if _, err := pool.Exec(ctx, `UPDATE workflow_phases SET progress_percentage = (progress_percentage + 1) % 100
				WHERE phase_id >= $1 AND phase_id < $1 + $2`, lo, size); err != nil {
				return nil, err
			}
		}
		o.Logger.Info("reader throughput", "mode", v.mode, "batch", v.batch, "backlog", o.ReaderChanges)
		c2 := &counting{}
		began := time.Now()
		stop, err = startReader(ctx, pool, v.mode, v.batch, c2)
		if err != nil {
			return nil, err
		}
		err = waitUntil(ctx, 10*time.Minute, func() bool { n, _ := c2.counts(); return n >= o.ReaderChanges })
		elapsed := time.Since(began)
		if serr := stop(); err == nil {
			err = serr
		}
		if err != nil {
			return nil, err
		}
		rate := float64(o.ReaderChanges) / elapsed.Seconds()
		r := Row{Group: group, Name: fmt.Sprintf("trigger capture, batch %d", v.batch), Figure: fmt.Sprintf("%.0f changes/s", rate),
			Versus: fmt.Sprintf("%.1fs in all", elapsed.Seconds()), Key: fmt.Sprintf("capture.reader.trigger.batch_%d", v.batch), Value: rate, Unit: "changes/s"}
		if v.mode == adapter.ModeLogical {
			r.Name = fmt.Sprintf("log-based capture, batch %d (decode, write, deliver)", v.batch)
			r.Key = fmt.Sprintf("capture.reader.logical.batch_%d", v.batch)
			r.Ratio = rate / trigger[v.batch]
			r.Versus = fmt.Sprintf("%.2f× the trigger reader, %.1fs in all", r.Ratio, elapsed.Seconds())
		} else {
			trigger[v.batch] = rate
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// CaptureLag measures end-to-end capture lag (legacy's commit to the
// consumer's acknowledgement) while single-row updates arrive at a fixed
// rate, under trigger capture and under log-based capture.
func CaptureLag(ctx context.Context, c *localpg.Cluster, o CaptureOptions) ([]Row, error) {
	o.defaults()
	var rows []Row
	for _, mode := range []string{adapter.TriggerRow, adapter.ModeLogical} {
		r, err := captureLag(ctx, c, mode, o)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

func captureLag(ctx context.Context, c *localpg.Cluster, mode string, o CaptureOptions) ([]Row, error) {
	pool, err := legacyDB(ctx, c, "bench_lag_"+mode, o.Rows, mode)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	cons := &counting{}
	stop, err := startReader(ctx, pool, mode, 500, cons)
	if err != nil {
		return nil, err
	}
	defer stop()
	if err := waitUntil(ctx, time.Minute, func() bool { _, b := cons.counts(); return b > 0 }); err != nil {
		return nil, err
	}
	o.Logger.Info("capture lag", "mode", mode, "rate", o.LagRate, "duration", o.LagDuration)
	total := int(o.LagRate * o.LagDuration.Seconds())
	interval := time.Duration(float64(time.Second) / o.LagRate)
	began := time.Now()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range total {
		if d := time.Until(began.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		if _, err := pool.Exec(ctx, `UPDATE workflow_phases SET progress_percentage = $2 WHERE phase_id = $1`, 1+rng.IntN(o.Rows), i%100); err != nil {
			return nil, err
		}
	}
	achieved := float64(total) / time.Since(began).Seconds()
	if err := waitUntil(ctx, time.Minute, func() bool { n, _ := cons.counts(); return n >= total }); err != nil {
		return nil, err
	}
	cons.mu.Lock()
	lags := slices.Clone(cons.lags)
	cons.mu.Unlock()
	slices.Sort(lags)
	name := "trigger capture"
	if mode == adapter.ModeLogical {
		name = "log-based capture"
	}
	group := fmt.Sprintf("capture lag at %.0f changes/s (legacy commit to consumer ack)", achieved)
	key := "capture.lag." + map[string]string{adapter.TriggerRow: "trigger", adapter.ModeLogical: "logical"}[mode]
	msf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return []Row{
		{Group: group, Name: name + ", p50", Figure: ms(percentile(lags, 0.50)), Key: key + ".p50", Value: msf(percentile(lags, 0.50)), Unit: "ms"},
		{Group: group, Name: name + ", p99", Figure: ms(percentile(lags, 0.99)), Key: key + ".p99", Value: msf(percentile(lags, 0.99)), Unit: "ms"},
		{Group: group, Name: name + ", max", Figure: ms(lags[len(lags)-1]), Versus: fmt.Sprintf("%d changes", len(lags)), Key: key + ".max", Value: msf(lags[len(lags)-1]), Unit: "ms"},
	}, nil
}
