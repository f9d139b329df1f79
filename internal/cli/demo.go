package cli

import (
	"context"
	"fmt"
	sdklog "go.temporal.io/sdk/log"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

type demoOptions struct {
	simulateOptions
	KeepRunning bool
	TemporalCLI string
}

func demoCommand(g *globals) *cli.Command {
	o := demoOptions{}
	flags := o.simulateOptions.flags()
	flags = append(flags,
		&cli.BoolFlag{Name: "keep-running", Usage: "keep the services up after the demo until Ctrl-C", Destination: &o.KeepRunning},
		&cli.StringFlag{Name: "temporal-cli", Usage: "temporal binary for the local dev server (default: ./bin/temporal, then PATH)", EnvVars: []string{"DTEBRIDGE_TEMPORAL_CLI"}, Destination: &o.TemporalCLI},
	)
	return &cli.Command{
		Name:  "demo",
		Usage: "run the bridge end to end on local defaults",
		Description: "Starts a throwaway PostgreSQL cluster and a Temporal dev server with its Web UI (unless\n" +
			"--database-url or --temporal-address point elsewhere), applies the legacy schema, installs the\n" +
			"bridge, serves it, simulates legacy traffic, prints what the shadow saw, and stops everything it started.",
		Flags:  flags,
		Before: noArgs,
		Action: func(c *cli.Context) error {
			p, err := o.validate()
			if err != nil {
				return err
			}
			return runDemo(c, g, &o, p)
		},
	}
}

func runDemo(c *cli.Context, g *globals, o *demoOptions, p *legacy.Profile) error {
	ctx := c.Context
	out := g.Stdout
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }
	fmt.Fprintf(out, "dtebridge %s demo, %s profile\n", Version(), p.Name)
	cfg, err := g.loadConfig(p.Name)
	if err != nil {
		return err
	}

	began := time.Now()
	svc, err := startServices(ctx, g, servicesOptions{Database: "dtebridge_demo", TemporalCLI: o.TemporalCLI, UI: true, Report: step})
	if err != nil {
		return err
	}
	defer func() {
		step("Stopping the services the demo started")
		svc.stop()
	}()
	step("Services ready in %.1fs", time.Since(began).Seconds())

	pool, err := connect(ctx, svc.DatabaseURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	step("Applying the %s legacy schema", p.Name)
	if err := legacy.Init(ctx, pool, p); err != nil {
		return fmt.Errorf("%w (the demo needs an empty database)", err)
	}
	conn, err := connectOne(ctx, svc.DatabaseURL)
	if err != nil {
		return err
	}
	res, err := adapter.Install(ctx, conn, cfg.CaptureConfig(), false)
	conn.Close(context.Background())
	if err != nil {
		return err
	}
	step("Installed the bridge (schema version %d) and attached capture to %s", res.ToVersion, orDefault(cfg.Legacy.Table, "public.workflow_phases"))

	tc, err := g.dialTemporal(ctx, svc.TemporalAddress)
	if err != nil {
		return err
	}
	defer tc.Close()
	// A free loopback port: the demo prints it, and never fights whatever
	// already listens on the configured one.
	srv, err := serve.Start(ctx, serve.Options{Config: cfg, Pool: pool, Temporal: tc, Namespace: svc.TemporalNamespace,
		TemporalLogger:  sdklog.NewStructuredLogger(g.SDKLogger.With("component", "temporal")),
		TemporalAddress: svc.TemporalAddress, Listen: "127.0.0.1:0", Logger: g.Logger})
	if err != nil {
		return err
	}
	defer srv.Stop()
	step("Serving: capture reader, mirror and shadow workers for %s; HTTP on http://%s", srv.Definition().Key(), srv.Addr())

	bar := newProgress(g.Stderr, !o.NoProgress, "simulating")
	step("Simulating legacy traffic: %d reports, %s at %g operations/s", o.Reports, o.Duration, o.Rate)
	s, err := legacy.Simulate(ctx, pool, o.config(p, bar.update))
	bar.finish()
	if err != nil {
		return err
	}
	step("Waiting for the shadow to catch up")
	if err := waitQuiescent(ctx, pool, cfg, srv, 2*time.Minute); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := writeSummary(out, o.Format, s, p); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := writeBridgeReport(ctx, out, pool, cfg, srv); err != nil {
		return err
	}
	fmt.Fprintln(out)
	step("Reconciling legacy with the shadow")
	ro := cfg.ReconcileOptions(pool)
	ro.Persist = true
	rep, err := reconcile.Run(ctx, ro)
	if err != nil {
		return err
	}
	if err := rep.WriteText(out, 10); err != nil {
		return err
	}
	fmt.Fprintln(out)
	if svc.TemporalUI != "" {
		fmt.Fprintf(out, "Temporal Web UI: %s (shadow workflows are %s<cycle>-<report>)\n", svc.TemporalUI, orDefault(cfg.Shadow.WorkflowIDPrefix, shadow.DefaultWorkflowIDPrefix))
	}
	fmt.Fprintf(out, "Temporal frontend: %s (namespace %s)\n", svc.TemporalAddress, svc.TemporalNamespace)
	if o.KeepRunning {
		fmt.Fprintf(out, "Legacy database: %s\n", Redact(svc.DatabaseURL))
		fmt.Fprintf(out, "Metrics: http://%s/metrics  API: http://%s/api/v1/definitions\n", srv.Addr(), srv.Addr())
		fmt.Fprintln(out, "Services keep running; press Ctrl-C to stop them.")
		select {
		case <-ctx.Done():
		case <-srv.Done():
		}
		fmt.Fprintln(out)
	}
	return srv.Err()
}

// waitQuiescent waits until capture has delivered everything and every
// shadow workflow has projected what it was sent.
func waitQuiescent(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, srv *serve.Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := srv.Err(); err != nil {
			return err
		}
		b, err := adapter.BacklogOf(ctx, pool, cfg.CaptureConfig(), "mirror")
		if err != nil {
			return err
		}
		var behind int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.mirror_keys m LEFT JOIN dtebridge.shadow_keys s USING (cycle_id, report_id)
			WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq`).Scan(&behind); err != nil {
			return err
		}
		if b.Changes == 0 && behind == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the shadow has not caught up after %s: %d changes to deliver, %d reports behind", timeout, b.Changes, behind)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// writeBridgeReport prints what capture and the shadow did.
func writeBridgeReport(ctx context.Context, w io.Writer, pool *pgxpool.Pool, cfg *config.Config, srv *serve.Server) error {
	changes, err := adapter.ChangeCount(ctx, pool, cfg.CaptureConfig())
	if err != nil {
		return err
	}
	q, err := adapter.ListQuarantine(ctx, pool, cfg.CaptureConfig(), false)
	if err != nil {
		return err
	}
	m := srv.Metrics
	fmt.Fprintf(w, "Capture: %d legacy changes captured, %.0f delivered in order, %d quarantined; lag p50 %s, p99 %s.\n",
		changes, counterValue(m.Delivered), len(q), quantile(m.Lag, 0.5), quantile(m.Lag, 0.99))
	fmt.Fprintf(w, "Mirror: %.0f signals to Temporal (%.1f changes per signal).\n", counterValue(srv.MirrorMetrics.Signals),
		counterValue(m.Delivered)/max(1, counterValue(srv.MirrorMetrics.Signals)))

	var workflows, agree, phases int
	var counts []byte
	err = pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM dtebridge.shadow_keys),
		(SELECT coalesce(jsonb_object_agg(rule, n), '{}') FROM (SELECT key AS rule, sum(value::int) AS n
			FROM dtebridge.shadow_keys, jsonb_each_text(violation_counts) GROUP BY key) r)`).Scan(&workflows, &counts)
	if err != nil {
		return err
	}
	legacyStates, err := effectiveStates(ctx, pool, cfg)
	if err != nil {
		return err
	}
	rows, err := pool.Query(ctx, `SELECT cycle_id, report_id, phase, state FROM dtebridge.shadow_phases`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c, r int64
		var phase, state string
		if err := rows.Scan(&c, &r, &phase, &state); err != nil {
			rows.Close()
			return err
		}
		if legacyStates[fmt.Sprintf("%d/%d/%s", c, r, phase)] == state {
			agree++
		}
	}
	rows.Close()
	phases = len(legacyStates)
	fmt.Fprintf(w, "Shadow: %d workflows on %s; phase states agree with legacy for %d of %d phases.\n", workflows, srv.Definition().Key(), agree, phases)
	fmt.Fprintf(w, "Rule violations legacy let through, by rule: %s\n", strings.Trim(string(counts), "{}"))
	return nil
}

// effectiveStates maps cycle/report/phase to legacy's effective state, in
// canonical terms, following the oldest row as legacy does.
func effectiveStates(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) (map[string]string, error) {
	rows, err := pool.Query(ctx, `SELECT cycle_id, report_id, phase_name::text,
		(array_agg(coalesce(state_override, state)::text ORDER BY phase_id))[1] FROM workflow_phases GROUP BY 1, 2, 3`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var c, r int64
		var phase, state string
		if err := rows.Scan(&c, &r, &phase, &state); err != nil {
			return nil, err
		}
		out[fmt.Sprintf("%d/%d/%s", c, r, cfg.Legacy.Phases[phase])] = string(cfg.Legacy.States[state])
	}
	return out, rows.Err()
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}

// quantile estimates a quantile from a histogram's buckets (the upper bound
// of the bucket it falls in).
func quantile(h prometheus.Histogram, q float64) string {
	var m dto.Metric
	if err := h.Write(&m); err != nil || m.GetHistogram().GetSampleCount() == 0 {
		return "n/a"
	}
	hist := m.GetHistogram()
	target := q * float64(hist.GetSampleCount())
	buckets := slices.Clone(hist.GetBucket())
	for _, b := range buckets {
		if float64(b.GetCumulativeCount()) >= target {
			return "≤ " + (time.Duration(b.GetUpperBound() * float64(time.Second))).String()
		}
	}
	return "> " + (time.Duration(buckets[len(buckets)-1].GetUpperBound() * float64(time.Second))).String()
}
