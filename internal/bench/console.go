package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/reconcile"
)

// ConsolePages measures the console's pages over the reconcile data set
// (url, from ReconcileData) with divergences open divergences added: each
// page, fetched from a served bridge, against a plain query of the rows it
// shows, medians of rounds fetches each.
func ConsolePages(ctx context.Context, url string, tc client.Client, temporalAddr string, divergences, rounds int, log *slog.Logger) ([]Row, error) {
	pool, cfg, err := productionOn(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	cfg.Shadow.TaskQueue, cfg.Shadow.WorkflowIDPrefix = "bench-console", "bench-console-"
	// Recorded runs, as the overview reads them, then the open divergences.
	o := cfg.ReconcileOptions(pool)
	o.Persist = true
	for range 3 {
		if _, err := reconcile.Run(ctx, o); err != nil {
			return nil, err
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO dtebridge.divergences (cycle_id, report_id, phase, kind, legacy_value, shadow_value, detail, rule,
			first_seen, last_seen, last_run)
		SELECT cycle_id, report_id, phase, CASE WHEN n % 2 = 0 THEN 'state_mismatch' ELSE 'rule_violation' END, 'completed', 'in_progress',
			'State: legacy "completed", shadow "in_progress"', CASE WHEN n % 2 = 1 THEN 'legacy-does-not-enforce-the-new-rules' END,
			now() - n * interval '1 second', now(), (SELECT max(run_id) FROM dtebridge.reconcile_runs)
		FROM (SELECT cycle_id, report_id, phase, row_number() OVER () AS n FROM dtebridge.shadow_phases
		      ORDER BY hashtext(cycle_id || '/' || report_id || '/' || phase) LIMIT $1) s`, divergences); err != nil {
		return nil, fmt.Errorf("error adding divergences: %w", err)
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE dtebridge.divergences"); err != nil {
		return nil, err
	}
	srv, err := serve.Start(ctx, serve.Options{Config: cfg, Pool: pool, Temporal: tc, Namespace: "default", TemporalAddress: temporalAddr,
		Listen: "127.0.0.1:0", Logger: log})
	if err != nil {
		return nil, err
	}
	defer srv.Stop()
	var k struct{ c, r int64 }
	if err := pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.divergences ORDER BY first_seen DESC LIMIT 1`).Scan(&k.c, &k.r); err != nil {
		return nil, err
	}
	median := func(f func() error) (time.Duration, error) {
		var ds []time.Duration
		for range rounds {
			began := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			ds = append(ds, time.Since(began))
		}
		slices.Sort(ds)
		return ds[len(ds)/2], nil
	}
	get := func(path string) func() error {
		return func() error {
			resp, err := http.Get("http://" + srv.Addr() + path)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
			return nil
		}
	}
	query := func(q string, args ...any) func() error {
		return func() error {
			rows, err := pool.Query(ctx, q, args...)
			if err != nil {
				return err
			}
			for rows.Next() {
			}
			rows.Close()
			return rows.Err()
		}
	}
	group := fmt.Sprintf("console pages: %d open divergences over the reconcile data set, served (median of %d)", divergences, rounds)
	var rows []Row
	for _, tc := range []struct {
		key, name, path, baseline string
		query                     func() error
	}{
		{"overview", "overview (/)", "/", "plain: open divergences counted by phase and kind, and the last 200 runs",
			func() error {
				if err := query(`SELECT phase, kind, rule IS NOT NULL, count(*) FROM dtebridge.divergences WHERE resolved_at IS NULL GROUP BY 1, 2, 3`)(); err != nil {
					return err
				}
				return query(`SELECT * FROM dtebridge.reconcile_runs ORDER BY run_id DESC LIMIT 200`)()
			}},
		{"divergences", "divergences, first page (/divergences)", "/divergences", "plain: the 50 newest open divergences and their count",
			func() error {
				if err := query(`SELECT * FROM dtebridge.divergences WHERE resolved_at IS NULL ORDER BY first_seen DESC LIMIT 50`)(); err != nil {
					return err
				}
				return query(`SELECT count(*) FROM dtebridge.divergences WHERE resolved_at IS NULL`)()
			}},
		{"divergences_filtered", "divergences, one phase and kind", "/divergences?phase=testing&kind=state_mismatch&expected=no", "plain: the same 50 rows and count",
			func() error {
				if err := query(`SELECT * FROM dtebridge.divergences WHERE resolved_at IS NULL AND phase = 'testing' AND kind = 'state_mismatch' AND rule IS NULL
					ORDER BY first_seen DESC LIMIT 50`)(); err != nil {
					return err
				}
				return query(`SELECT count(*) FROM dtebridge.divergences WHERE resolved_at IS NULL AND phase = 'testing' AND kind = 'state_mismatch' AND rule IS NULL`)()
			}},
		{"report", "report page", fmt.Sprintf("/reports/%d/%d", k.c, k.r), "plain: the report's legacy rows, projection and divergences",
			func() error {
				if err := query(`SELECT * FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2`, k.c, k.r)(); err != nil {
					return err
				}
				if err := query(`SELECT * FROM dtebridge.shadow_phases WHERE cycle_id = $1 AND report_id = $2`, k.c, k.r)(); err != nil {
					return err
				}
				return query(`SELECT * FROM dtebridge.divergences WHERE cycle_id = $1 AND report_id = $2`, k.c, k.r)()
			}},
	} {
		log.Info("console benchmark", "page", tc.path)
		if err := get(tc.path)(); err != nil { // warm up
			return nil, err
		}
		page, err := median(get(tc.path))
		if err != nil {
			return nil, err
		}
		base, err := median(tc.query)
		if err != nil {
			return nil, err
		}
		rows = append(rows, Row{Group: group, Name: tc.name, Figure: fmt.Sprintf("%s (baseline %s: %s)", ms(page), ms(base), tc.baseline),
			Versus: fmt.Sprintf("%.1f× the plain query", page.Seconds()/base.Seconds()),
			Key:    "console." + tc.key, Value: float64(page) / float64(time.Millisecond), Unit: "ms", Ratio: page.Seconds() / base.Seconds()})
	}
	return rows, nil
}
