package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/reconcile"
)

// ReconcileData generates, directly in SQL, a production-profile legacy
// table of reports × 9 phases and a shadow projection that agrees with it,
// in a new database with the bridge installed, and returns its URL.
func ReconcileData(ctx context.Context, c *localpg.Cluster, name string, reports int) (string, error) {
	pool, err := legacyDB(ctx, c, name, 0, "row")
	if err != nil {
		return "", err
	}
	defer pool.Close()
	stmts := []string{
		`ALTER TABLE workflow_phases DISABLE TRIGGER dtebridge_capture`,
		fmt.Sprintf(`INSERT INTO reports (report_name) SELECT 'Report ' || g FROM generate_series(1, %d) g`, reports),
		`INSERT INTO test_cycles (cycle_name, start_date) SELECT 'Cycle ' || g, '2026-01-01' FROM generate_series(1, 100) g`,
		`INSERT INTO workflow_phases (cycle_id, report_id, phase_name, phase_order, status, state, schedule_status,
			planned_start_date, planned_end_date, actual_start_date, actual_end_date, started_by, completed_by, updated_at)
		SELECT (r.report_id % 100) + 1, r.report_id, p.label::phase_name_enum, p.ord,
			(CASE WHEN p.ord < 4 THEN 'Complete' WHEN p.ord = 4 THEN 'In Progress' ELSE 'Not Started' END)::phase_status_enum,
			(CASE WHEN p.ord < 4 THEN 'Complete' WHEN p.ord = 4 THEN 'In Progress' ELSE 'Not Started' END)::phase_state_enum,
			(CASE WHEN p.ord = 4 THEN 'At Risk' ELSE 'On Track' END)::schedule_status_enum,
			'2026-01-01'::date + p.ord * 7, '2026-01-08'::date + p.ord * 7,
			CASE WHEN p.ord <= 4 THEN '2026-01-02 09:00:00+00'::timestamptz + p.ord * interval '7 days' END,
			CASE WHEN p.ord < 4 THEN '2026-01-06 17:00:00+00'::timestamptz + p.ord * interval '7 days' END,
			CASE WHEN p.ord <= 4 THEN 11 END, CASE WHEN p.ord < 4 THEN 12 END, now()
		FROM reports r, (VALUES (0, 'Planning'), (1, 'Data Profiling'), (2, 'Scoping'), (3, 'Sample Selection'),
			(4, 'Data Provider ID'), (5, 'Request Info'), (6, 'Testing'), (7, 'Observations'), (8, 'Finalize Test Report')) p(ord, label)`,
		`INSERT INTO dtebridge.shadow_phases (cycle_id, report_id, phase, row_id, rows, state, base_state, legacy_status, status,
			planned_start, planned_end, actual_start, actual_end, started_by, completed_by, last_event_id, last_seq, tx_time, version)
		SELECT w.cycle_id, w.report_id, m.phase, w.phase_id::text, 1, s.canon, s.canon, t.canon, t.canon,
			w.planned_start_date, w.planned_end_date, w.actual_start_date, w.actual_end_date, w.started_by::text, w.completed_by::text,
			's', 0, w.updated_at, 1
		FROM workflow_phases w
		JOIN (VALUES ('Planning', 'planning'), ('Data Profiling', 'data_profiling'), ('Scoping', 'scoping'), ('Sample Selection', 'sample_selection'),
			('Data Provider ID', 'data_provider_id'), ('Request Info', 'request_info'), ('Testing', 'testing'), ('Observations', 'observations'),
			('Finalize Test Report', 'finalize_test_report')) m(label, phase) ON m.label = w.phase_name::text
		JOIN (VALUES ('Not Started', 'not_started'), ('In Progress', 'in_progress'), ('Complete', 'completed')) s(label, canon) ON s.label = w.state::text
		JOIN (VALUES ('On Track', 'on_schedule'), ('At Risk', 'at_risk'), ('Past Due', 'behind_schedule')) t(label, canon) ON t.label = w.schedule_status::text`,
		`INSERT INTO dtebridge.shadow_keys (cycle_id, report_id, definition_id, definition_version, version, applied_seq, applied, violations,
			violation_counts, recent_violations)
		SELECT DISTINCT cycle_id, report_id, 'production_dt_testing', '1.0', 1, 0, 9, 0, '{}'::jsonb, '[]'::jsonb FROM dtebridge.shadow_phases`,
		`INSERT INTO dtebridge.checkpoints (consumer, acked_snapshot, backfilled_at) VALUES ('mirror', pg_current_snapshot(), now())`,
		`ALTER TABLE workflow_phases ENABLE TRIGGER dtebridge_capture`,
	}
	for _, s := range stmts {
		if _, err := pool.Exec(ctx, s); err != nil {
			return "", fmt.Errorf("error generating reconcile data: %w", err)
		}
	}
	for _, s := range []string{"VACUUM ANALYZE workflow_phases", "VACUUM ANALYZE dtebridge.shadow_phases", "VACUUM ANALYZE dtebridge.shadow_keys"} {
		if _, err := pool.Exec(ctx, s); err != nil {
			return "", err
		}
	}
	return c.URL(name), nil
}

// DivergeShadow makes share of the shadow's phases disagree with legacy.
func DivergeShadow(ctx context.Context, url string, share float64) (int64, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	tag, err := pool.Exec(ctx, `UPDATE dtebridge.shadow_phases SET state = CASE WHEN state = 'completed' THEN 'in_progress' ELSE 'completed' END
		WHERE (hashtext(cycle_id::text || '/' || report_id || '/' || phase) & 1023) < $1`, int(share*1024))
	if err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// ReconcileResult is one timed reconcile.
type ReconcileResult struct {
	Rows       int64         `json:"rows"`
	Elapsed    time.Duration `json:"elapsed"`
	Unexpected int64         `json:"unexpected"`
	Compared   int64         `json:"compared"`
}

// TimeReconcile runs one reconcile over url with the production example
// configuration. With record, it is recorded and its JSON report written
// (to nowhere), as `dtebridge reconcile --format json` does with a
// recorded run; spill is Options.Spill (0: the default).
func TimeReconcile(ctx context.Context, url string, spill int, record bool) (*ReconcileResult, error) {
	pool, cfg, err := productionOn(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	o := cfg.ReconcileOptions(pool)
	o.Spill, o.Persist = spill, record
	began := time.Now()
	r, err := reconcile.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if record {
		if err := r.WriteJSON(io.Discard); err != nil {
			return nil, err
		}
	}
	return &ReconcileResult{Rows: r.RowsScanned, Elapsed: time.Since(began), Unexpected: r.Unexpected, Compared: r.Compared}, nil
}

// ScanBaseline times a plain count of both tables reconcile reads: the floor
// any comparison pays.
func ScanBaseline(ctx context.Context, url string) (time.Duration, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return 0, err
	}
	defer pool.Close()
	began := time.Now()
	var a, b int64
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM workflow_phases), (SELECT count(*) FROM dtebridge.shadow_phases)`).Scan(&a, &b); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// IncrementalResult is one timed incremental reconcile.
type IncrementalResult struct {
	// Written is how many reports were written on both sides since the
	// base; Touched, how many the run looked at.
	Written, Touched int64
	Elapsed          time.Duration
	Unexpected       int64
	Kind             string
}

// TimeIncremental records a full run of url as the base (unless one is
// recorded), writes n reports spread over every cycle on both sides (the
// legacy rows through the capture trigger, the projection as the shadow
// writes it, the change log acknowledged as the mirror does), and times
// the incremental run that follows, recorded, as serve runs it.
func TimeIncremental(ctx context.Context, url string, n int) (*IncrementalResult, error) {
	pool, cfg, err := productionOn(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	o := cfg.ReconcileOptions(pool)
	o.Persist, o.Incremental = true, true
	if _, err := reconcile.Run(ctx, o); err != nil {
		return nil, err
	}
	var reports int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM reports`).Scan(&reports); err != nil {
		return nil, err
	}
	step := max(1, reports/int64(n))
	stmts := []string{
		`UPDATE workflow_phases SET updated_at = updated_at WHERE report_id % $1 = 0 AND report_id / $1 <= $2 AND phase_name = 'Planning'`,
		`UPDATE dtebridge.shadow_phases SET tx_time = tx_time WHERE report_id % $1 = 0 AND report_id / $1 <= $2 AND phase = 'planning'`,
	}
	for _, s := range stmts {
		if _, err := pool.Exec(ctx, s, step, n); err != nil {
			return nil, fmt.Errorf("error writing reports: %w", err)
		}
	}
	if _, err := pool.Exec(ctx, `UPDATE dtebridge.checkpoints SET acked_snapshot = pg_current_snapshot() WHERE consumer = 'mirror'`); err != nil {
		return nil, err
	}
	began := time.Now()
	r, err := reconcile.Run(ctx, o)
	if err != nil {
		return nil, err
	}
	res := &IncrementalResult{Written: int64(n), Elapsed: time.Since(began), Unexpected: r.Unexpected, Kind: r.Kind}
	if r.Touched != nil {
		res.Touched = *r.Touched
	}
	return res, nil
}

// productionOn connects to url, a database of the production profile, and
// returns the production example configuration for it.
func productionOn(ctx context.Context, url string) (*pgxpool.Pool, *config.Config, error) {
	cfg, err := config.Example("production")
	if err != nil {
		return nil, nil, err
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	return pool, cfg, nil
}

// ForgetRuns removes the recorded reconcile runs and divergences of url.
func ForgetRuns(ctx context.Context, url string) error {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, `DELETE FROM dtebridge.divergences; DELETE FROM dtebridge.reconcile_runs`)
	return err
}
