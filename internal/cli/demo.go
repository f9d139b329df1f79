package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dashboards"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localprom"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

type demoOptions struct {
	simulateOptions
	KeepRunning    bool
	TemporalCLI    string
	WithPrometheus bool
	ReconcileEvery time.Duration
	Phase          string
	Percent        int
	Capture        string
}

func demoCommand(g *globals) *cli.Command {
	o := demoOptions{}
	flags := o.simulateOptions.flags()
	flags = append(flags,
		&cli.BoolFlag{Name: "keep-running", Usage: "keep the services up after the demo until Ctrl-C, and print their addresses", Destination: &o.KeepRunning},
		&cli.BoolFlag{Name: "with-prometheus", Usage: "also start a local Prometheus (the system's prometheus binary) scraping the bridge, with the alert rules", Destination: &o.WithPrometheus},
		&cli.DurationFlag{Name: "reconcile-every", Usage: "how often serve reconciles during the demo", Value: 5 * time.Second, Destination: &o.ReconcileEvery},
		&cli.StringFlag{Name: "cutover-phase", Usage: "the phase the demo moves to the new engine", Value: "planning", Destination: &o.Phase},
		&cli.IntFlag{Name: "cutover-percent", Usage: "the percentage of reports it moves", Value: 50, Destination: &o.Percent},
		&cli.StringFlag{Name: "capture", Usage: "capture mode: trigger (reconcile finds the injected fault) or logical (log-based capture delivers it)", DefaultText: "capture.mode of the config: trigger", Destination: &o.Capture},
		&cli.StringFlag{Name: "temporal-cli", Usage: "temporal binary for the local dev server", DefaultText: "./bin/temporal, then PATH", EnvVars: []string{"DTEBRIDGE_TEMPORAL_CLI"}, Destination: &o.TemporalCLI},
	)
	return &cli.Command{
		Name:  "demo",
		Usage: "run the bridge end to end on local defaults",
		Description: "Starts a throwaway PostgreSQL cluster and a Temporal dev server with its Web UI (unless\n" +
			"--database-url or --temporal-address point elsewhere), applies the legacy schema, installs the\n" +
			"bridge and serves it with a periodic reconcile. It simulates legacy traffic; halfway through it\n" +
			"injects a fault (legacy changes made with session_replication_role = replica, which no trigger\n" +
			"sees): with trigger capture reconcile finds it and repair fixes it; with --capture logical the\n" +
			"log-based capture delivers it and reconcile finds nothing. Then it moves one phase to the new engine for a share of reports through\n" +
			"the reconcile gate, sends engine commands that are written back to legacy, reconciles once more,\n" +
			"prints a final report, and stops everything it started. It exits non-zero unless the end is\n" +
			"100% consistent.",
		Flags:  flags,
		Before: noArgs,
		Action: func(c *cli.Context) error {
			p, err := o.validate()
			if err != nil {
				return err
			}
			if o.Percent < 1 || o.Percent > 100 {
				return usagef("--cutover-percent must be 1 to 100, got %d", o.Percent)
			}
			if o.Capture != "" && o.Capture != adapter.ModeTrigger && o.Capture != adapter.ModeLogical {
				return usagef("--capture must be trigger or logical, got %q", o.Capture)
			}
			return runDemo(c, g, &o, p)
		},
	}
}

// demo is one run of dtebridge demo.
type demo struct {
	g     *globals
	o     *demoOptions
	p     *legacysim.Profile
	cfg   *config.Config
	pool  *pgxpool.Pool
	srv   *serve.Server
	to    reconcile.TemporalOptions
	token string
	out   io.Writer
	// What the final report tells.
	injected  map[string]int
	found     map[string]int
	repaired  int
	commands  map[string]int
	traffic   time.Duration
	delivered float64
	// capturedFault: log-based capture delivered the fault itself.
	capturedFault bool
}

func (d *demo) step(format string, args ...any) { fmt.Fprintf(d.out, "==> "+format+"\n", args...) }

// demoConfig is --config if given, else the shipped example of the demo's
// profile: the demo runs on local defaults.
func demoConfig(g *globals, p *legacysim.Profile) (*config.Config, error) {
	if g.ConfigPath != "" {
		return config.Load(g.ConfigPath)
	}
	cfg, err := config.Example(p.Name)
	if err != nil {
		return nil, err
	}
	// The demo's gate runs are a second apart, not the hour a real gate
	// wants them to span.
	cfg.Cutover.Gate.MinSpan = config.Duration(time.Second)
	return cfg, nil
}

func runDemo(c *cli.Context, g *globals, o *demoOptions, p *legacysim.Profile) error {
	ctx := c.Context
	d := &demo{g: g, o: o, p: p, out: g.Stdout, injected: map[string]int{}, found: map[string]int{}, commands: map[string]int{}}
	fmt.Fprintf(d.out, "dtebridge %s demo, %s profile\n", Version(), p.Name)
	cfg, err := demoConfig(g, p)
	if err != nil {
		return err
	}
	if o.Capture != "" {
		cfg.Capture.Mode = o.Capture
	}
	d.cfg = cfg
	_, def, err := cfg.LoadDefinitions()
	if err != nil {
		return err
	}
	if def.Phase(dtetype.Phase(o.Phase)) == nil {
		return usagef("--cutover-phase %q is not in %s (phases: %v)", o.Phase, def.Key(), def.PhaseIDs())
	}

	began := time.Now()
	svc, err := startServices(ctx, g, servicesOptions{Database: "dtebridge_demo", TemporalCLI: o.TemporalCLI, UI: true, Report: d.step})
	if err != nil {
		return err
	}
	defer func() {
		d.step("Stopping the services the demo started")
		svc.stop()
	}()
	d.step("Services ready in %.1fs", time.Since(began).Seconds())

	if d.pool, err = connect(ctx, svc.DatabaseURL); err != nil {
		return err
	}
	defer d.pool.Close()
	d.step("Applying the %s legacy schema", p.Name)
	if err := legacysim.Init(ctx, d.pool, p); err != nil {
		return fmt.Errorf("%w (the demo needs an empty database)", err)
	}
	// A migration never starts on an empty database: legacy has a past,
	// which the bridge backfills and judges against the new rules.
	hist := o.simulateOptions
	hist.Reports, hist.Ops, hist.Rate, hist.Seed = max(2, o.Reports/4), max(300, o.Ops/4), 0, o.Seed+100
	d.step("Writing legacy history before the bridge exists: %d reports, %d operations, as the legacy application made them", hist.Reports, hist.Ops)
	if _, err := legacysim.Simulate(ctx, d.pool, hist.config(p, nil)); err != nil {
		return err
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
	if cfg.Capture.Mode == adapter.ModeLogical {
		d.step("Installed the bridge (schema version %d) and published %s for log-based capture (REPLICA IDENTITY FULL; no trigger)", res.ToVersion, cfg.Legacy.Name)
	} else {
		d.step("Installed the bridge (schema version %d) and attached capture triggers to %s", res.ToVersion, cfg.Legacy.Name)
	}

	// A throwaway bearer token for the command API, only in memory: it
	// dies with the demo's services.
	d.token = cutover.NewCommandID()

	tc, err := g.dialTemporal(ctx, cfg, svc.TemporalAddress)
	if err != nil {
		return err
	}
	defer tc.Close()
	if d.to, err = reconcileTemporal(cfg, tc); err != nil {
		return err
	}
	// A free loopback port: the demo prints it, and never fights whatever
	// already listens on the configured one.
	d.srv, err = serve.Start(ctx, serve.Options{Config: cfg, Pool: d.pool, Temporal: tc, Namespace: svc.TemporalNamespace,
		TemporalLogger:  g.temporalLogger(),
		TemporalAddress: svc.TemporalAddress, TemporalUI: svc.TemporalUI, Listen: "127.0.0.1:0", Logger: g.Logger, ReconcileEvery: o.ReconcileEvery, Token: d.token})
	if err != nil {
		return err
	}
	defer d.srv.Stop()
	d.step("Serving: capture reader, mirror and shadow workers for %s; HTTP on http://%s; reconcile every %s", d.srv.Definition().Key(), d.srv.Addr(), o.ReconcileEvery)
	var prom *localprom.Server
	if o.WithPrometheus {
		prom, err = localprom.Start(ctx, localprom.Config{Targets: []string{d.srv.Addr()}, ScrapeInterval: 2 * time.Second, Rules: [][]byte{dashboards.Alerts}})
		if err != nil {
			return err
		}
		defer prom.Stop()
		d.step("Prometheus on %s, scraping the bridge every 2s with the alert rules of dashboards/alerts.yml", prom.URL())
	}

	if err := waitQuiescent(ctx, d.pool, cfg, d.srv, 2*time.Minute); err != nil {
		return err
	}
	findings, err := shadow.Findings(ctx, cfg.Store(d.pool), d.srv.Definition(), "", 3)
	if err != nil {
		return err
	}
	d.step("Backfilled the history; how it measures against the new rules (dtebridge findings):")
	if err := findings.WriteTable(d.out); err != nil {
		return err
	}

	half := o.simulateOptions
	half.Reports = max(1, o.Reports/2)
	half.Duration = o.Duration / 2
	half.Ops = o.Ops / 2
	if err := d.simulate(ctx, half, "first half"); err != nil {
		return err
	}
	if err := d.fault(ctx); err != nil {
		return err
	}
	half.Seed++
	if err := d.simulate(ctx, half, "second half"); err != nil {
		return err
	}
	if err := d.cutover(ctx); err != nil {
		return err
	}
	d.step("Reconciling once more")
	rep, err := d.reconcile(ctx)
	if err != nil {
		return err
	}
	if err := d.report(ctx, rep); err != nil {
		return err
	}
	if svc.TemporalUI != "" {
		fmt.Fprintf(d.out, "Temporal Web UI: %s (shadow workflows are %s<cycle>-<report>)\n", svc.TemporalUI, cfg.Shadow.WorkflowIDPrefix)
	}
	fmt.Fprintf(d.out, "Temporal frontend: %s (namespace %s)\n", svc.TemporalAddress, svc.TemporalNamespace)
	if prom != nil {
		fmt.Fprintf(d.out, "Prometheus: %s (try dtebridge_reconcile_consistency_ratio, or import dashboards/*.json into Grafana against it)\n", prom.URL())
	}
	if rep.Unexpected > 0 || rep.Consistency < 1 {
		return fmt.Errorf("the demo ended %.2f%% consistent with %d unexpected divergences; see above", rep.Consistency*100, rep.Unexpected)
	}
	if o.KeepRunning {
		fmt.Fprintf(d.out, "Legacy database: %s\n", Redact(svc.DatabaseURL))
		fmt.Fprintf(d.out, "Console: http://%s/ (log in with the token below to change anything)\n", d.srv.Addr())
		fmt.Fprintf(d.out, "Metrics: http://%s/metrics  API: http://%s/api/v1/overview  http://%s/api/v1/cutover\n", d.srv.Addr(), d.srv.Addr(), d.srv.Addr())
		fmt.Fprintf(d.out, "Command API: POST http://%s/api/v1/cycles/{c}/reports/{r}/phases/{p}/{action} with Authorization: Bearer %s (this demo's throwaway token)\n", d.srv.Addr(), d.token)
		fmt.Fprintln(d.out, "Services keep running; press Ctrl-C to stop them.")
		select {
		case <-ctx.Done():
		case <-d.srv.Done():
		}
		fmt.Fprintln(d.out)
	}
	return d.srv.Err()
}

// simulate runs legacy traffic and waits for the shadow to catch up.
func (d *demo) simulate(ctx context.Context, o simulateOptions, what string) error {
	bar := newProgress(d.g.Stderr, !o.NoProgress, "simulating", "operations")
	d.step("Simulating legacy traffic, %s: %d reports, %s at %g operations/s", what, o.Reports, o.Duration, o.Rate)
	before := counterValue(d.srv.Metrics.Delivered)
	began := time.Now()
	s, err := legacysim.Simulate(ctx, d.pool, o.config(d.p, bar.update))
	bar.finish()
	if err != nil {
		return err
	}
	if err := waitQuiescent(ctx, d.pool, d.cfg, d.srv, 2*time.Minute); err != nil {
		return err
	}
	d.traffic += time.Since(began)
	d.delivered += counterValue(d.srv.Metrics.Delivered) - before
	var rejected int64
	for _, n := range s.Rejected {
		rejected += n
	}
	fmt.Fprintf(d.out, "    Simulated %d reports: %d legacy operations in %.1fs (%d refused by legacy gates); the shadow caught up.\n",
		s.Reports, s.TotalOps(), s.ElapsedSecs, rejected)
	return nil
}

// reconcile runs a recorded reconcile of everything.
func (d *demo) reconcile(ctx context.Context) (*reconcile.Report, error) {
	ro := d.cfg.ReconcileOptions(d.pool)
	ro.Order = d.srv.Definition().PhaseIDs()
	ro.Persist = true
	return reconcile.Run(ctx, ro)
}

// fault changes legacy rows with the capture trigger bypassed, as a bulk
// fix-up script or a restore would, then shows reconcile finding it and
// repair fixing it.
func (d *demo) fault(ctx context.Context) error {
	inProgress, completed := d.p.State(dtetype.StateInProgress), d.p.State(dtetype.StateCompleted)
	faults := []struct {
		kind, what, sql string
		args            []any
	}{
		{"actor_mismatch", "started_by rewritten", `UPDATE workflow_phases SET started_by = 4242 WHERE phase_id =
			(SELECT min(phase_id) FROM workflow_phases WHERE started_by IS NOT NULL AND state_override IS NULL)`, nil},
		// The legacy status rule tells complete from not complete, whatever
		// the dates of a completed phase, so these two change nothing but
		// what they say.
		{"dates_mismatch", "planned end of a completed phase moved by 3 days", `UPDATE workflow_phases SET planned_end_date = planned_end_date + 3 WHERE phase_id =
			(SELECT max(phase_id) FROM workflow_phases WHERE planned_end_date IS NOT NULL AND state = $1 AND state_override IS NULL)`, []any{completed}},
		{"state_mismatch", "a not-started phase set in progress", `UPDATE workflow_phases SET state = $1 WHERE phase_id =
			(SELECT min(phase_id) FROM workflow_phases WHERE state <> $1 AND state <> $2 AND actual_start_date IS NULL AND state_override IS NULL
				AND phase_id > (SELECT min(phase_id) + 20 FROM workflow_phases))`, []any{inProgress, completed}},
	}
	logical := d.cfg.Capture.Mode == adapter.ModeLogical
	d.step("Injecting a fault: %d legacy rows changed with session_replication_role = replica, as fix-up scripts and restores do: no trigger fires", len(faults))
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL session_replication_role = replica`); err != nil {
			return fmt.Errorf("%w (the fault needs a superuser, as the demo's own database has)", err)
		}
		for _, f := range faults {
			tag, err := tx.Exec(ctx, f.sql, f.args...)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 1 {
				d.injected[f.kind]++
				fmt.Fprintf(d.out, "    %s (expect %s)\n", f.what, f.kind)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("error injecting the fault: %w", err)
	}
	if logical {
		d.step("Log-based capture reads the WAL, triggers or not: waiting for the shadow to follow, then reconciling")
		if err := waitQuiescent(ctx, d.pool, d.cfg, d.srv, time.Minute); err != nil {
			return err
		}
	} else {
		d.step("Reconciling: trigger capture saw none of it, so only reconcile can find it")
	}
	rep, err := d.reconcile(ctx)
	if err != nil {
		return err
	}
	if logical {
		if rep.Unexpected > 0 {
			return fmt.Errorf("reconcile found %d unexpected divergences after log-based capture delivered the fault", rep.Unexpected)
		}
		d.capturedFault = true
		fmt.Fprintf(d.out, "    run %d: %.2f%% consistent, %d unexpected divergences: capture delivered the fault like any legacy change\n", rep.RunID, rep.Consistency*100, rep.Unexpected)
		return nil
	}
	for dv, err := range rep.All() {
		if err != nil {
			return err
		}
		if !dv.Expected {
			d.found[dv.Kind]++
			fmt.Fprintf(d.out, "    found %s: %s %s: %s\n", dv.Kind, dv.Key, dv.Phase, dv.Detail)
		}
	}
	fmt.Fprintf(d.out, "    run %d: %.2f%% consistent, %d unexpected divergences\n", rep.RunID, rep.Consistency*100, rep.Unexpected)
	d.step("Repairing: each divergent report's shadow is re-driven from its legacy rows")
	to := d.to
	to.Owned = d.srv.Authority().OnNew
	if err := reconcile.Repair(ctx, d.cfg.ReconcileOptions(d.pool), to, rep); err != nil {
		return err
	}
	d.repaired = rep.Repair.Repaired
	fmt.Fprintf(d.out, "    %d of %d divergences repaired (%d reports re-driven), %d remain\n", rep.Repair.Repaired, rep.Repair.Attempted,
		rep.Repair.Reports, len(rep.Repair.Remaining))
	if len(rep.Repair.Remaining) > 0 {
		return fmt.Errorf("repair left %d divergences", len(rep.Repair.Remaining))
	}
	return nil
}

// cutover moves the demo phase to the new engine for a share of reports,
// through the gate, and sends it commands.
func (d *demo) cutover(ctx context.Context) error {
	phase := dtetype.Phase(d.o.Phase)
	store := cutover.NewStore(d.cfg.Store(d.pool))
	gate := d.cfg.GateConfig()
	d.step("Reconciling %d times: the gate to move %s needs %d clean runs spanning %s", gate.Runs, phase, gate.Runs, gate.MinSpan)
	for i := range gate.Runs {
		if i > 0 {
			if err := sleepCtx(ctx, gate.MinSpan+100*time.Millisecond); err != nil {
				return err
			}
		}
		rep, err := d.reconcile(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(d.out, "    run %d: %.2f%% consistent, %d unexpected divergences\n", rep.RunID, rep.Consistency*100, rep.Unexpected)
	}
	d.step("Moving %s to the new engine for %d%% of reports", phase, d.o.Percent)
	res, err := store.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeNew, Percent: d.o.Percent, Actor: "demo", LegacyTable: d.cfg.Legacy.Name,
		Reason: "demo: the new engine takes a share of " + string(phase)}, gate)
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "    %s\n    %s: %s -> %s %d%% (cutover_log %d)\n", res.Gate, phase, res.From.Mode, res.To.Mode, res.To.Percent, res.LogID)
	if err := d.srv.Authority().Refresh(ctx); err != nil {
		return err
	}

	// New reports arrive in legacy, as they always do; the engine owns the
	// phase for the covered ones and takes commands for them.
	var cycle int64
	if err := d.pool.QueryRow(ctx, `SELECT max(cycle_id) FROM test_cycles`).Scan(&cycle); err != nil {
		return err
	}
	model := legacysim.NewModel(d.pool, d.p, nil)
	var keys []dtetype.Key
	for i := range 6 {
		id, err := model.CreateReport(ctx, fmt.Sprintf("cutover demo %d", i+1), "FRB")
		if err != nil {
			return err
		}
		k := dtetype.Key{CycleID: cycle, ReportID: id}
		if _, err := model.AddReport(ctx, k, legacysim.AddOptions{Tester: 100}); err != nil {
			return err
		}
		keys = append(keys, k)
	}
	if err := waitQuiescent(ctx, d.pool, d.cfg, d.srv, time.Minute); err != nil {
		return err
	}
	label := d.cfg.Legacy.Phases.LabelOf(phase)
	d.step("Sending engine commands over the API (POST /api/v1/cycles/{c}/reports/{r}/phases/%s/{action}, bearer token)", phase)
	for _, k := range keys {
		code, body, err := d.command(ctx, k, phase, "start", `{"actor": "100", "role": "Tester", "reason": "demo: kick-off"}`)
		if err != nil {
			return err
		}
		if code == 409 && strings.Contains(body, "not_on_new") {
			d.commands["legacy"]++
			if _, err := model.Start(ctx, legacysim.Ref{Key: k, Phase: label}, 100, legacysim.StartOptions{}); err != nil {
				return err
			}
			fmt.Fprintf(d.out, "    %s: legacy is authoritative (not in the %d%%), so the legacy app starts it\n", k, d.o.Percent)
			continue
		}
		if code != 200 {
			return fmt.Errorf("start %s %s: HTTP %d %s", k, phase, code, body)
		}
		d.commands["accepted"]++
		// A command the definition refuses writes nothing.
		code, body, err = d.command(ctx, k, phase, "start", `{"actor": "100", "role": "Tester", "reason": "demo: twice"}`)
		if err != nil {
			return err
		}
		if code == 409 {
			d.commands["refused"]++
		}
		var rule struct {
			Rule string `json:"rule"`
		}
		_ = json.Unmarshal([]byte(body), &rule)
		code, body, err = d.command(ctx, k, phase, "complete", `{"actor": "13", "role": "Test Executive", "reason": "demo: done"}`)
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("complete %s %s: HTTP %d %s", k, phase, code, body)
		}
		d.commands["accepted"]++
		var state, by string
		if err := d.pool.QueryRow(ctx, `SELECT state::text, coalesce(completed_by::text, '') FROM workflow_phases
			WHERE cycle_id = $1 AND report_id = $2 AND phase_name::text = $3 ORDER BY phase_id LIMIT 1`, k.CycleID, k.ReportID, label).Scan(&state, &by); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "    %s: on the new engine: start, a second start (refused: %s), complete; legacy row now %q, completed_by %s\n", k, rule.Rule, state, by)
	}
	return waitQuiescent(ctx, d.pool, d.cfg, d.srv, time.Minute)
}

// command posts one engine command to the served API.
func (d *demo) command(ctx context.Context, k dtetype.Key, phase dtetype.Phase, action, body string) (int, string, error) {
	url := fmt.Sprintf("http://%s/api/v1/cycles/%d/reports/%d/phases/%s/%s", d.srv.Addr(), k.CycleID, k.ReportID, phase, action)
	req, err := http.NewRequestWithContext(ctx, "POST", url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// report prints the final report.
func (d *demo) report(ctx context.Context, rep *reconcile.Report) error {
	fmt.Fprintln(d.out)
	fmt.Fprintln(d.out, "Final report")
	fmt.Fprintln(d.out, "------------")
	if err := rep.WriteText(d.out, 10); err != nil {
		return err
	}
	fmt.Fprintln(d.out)
	kinds := slices.Sorted(maps.Keys(d.injected))
	var inj, fnd []string
	for _, k := range kinds {
		inj = append(inj, fmt.Sprintf("%s %d", k, d.injected[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(d.found)) {
		fnd = append(fnd, fmt.Sprintf("%s %d", k, d.found[k]))
	}
	total := 0
	for _, n := range d.found {
		total += n
	}
	if d.capturedFault {
		fmt.Fprintf(d.out, "Fault: injected %s; log-based capture delivered it, so reconcile found nothing to repair. Now %d unexpected divergences.\n",
			strings.Join(inj, ", "), rep.Unexpected)
	} else {
		fmt.Fprintf(d.out, "Fault: injected %s; reconcile found %s; repaired %d of %d. Now %d unexpected divergences.\n",
			strings.Join(inj, ", "), strings.Join(fnd, ", "), d.repaired, total, rep.Unexpected)
	}
	if err := writeBridgeReport(ctx, d.out, d.pool, d.cfg, d.srv); err != nil {
		return err
	}
	fmt.Fprintf(d.out, "Throughput: %.0f changes delivered to the shadow in %.1fs of traffic (%.0f/s).\n", d.delivered, d.traffic.Seconds(),
		d.delivered/max(d.traffic.Seconds(), 0.001))
	fmt.Fprintf(d.out, "Commands: %d accepted and written back to legacy, %d refused by the definition (nothing written), %d left to legacy (report not on new).\n",
		d.commands["accepted"], d.commands["refused"], d.commands["legacy"])
	fmt.Fprintln(d.out, "Cutover:")
	modes, err := d.cfg.Store(d.pool).Modes(ctx)
	if err != nil {
		return err
	}
	for _, p := range d.srv.Definition().PhaseIDs() {
		m := dtetype.ModeOf(modes, p)
		pct := ""
		if m.Mode == dtetype.ModeNew {
			pct = fmt.Sprintf(" %d%%", m.Percent)
		}
		fmt.Fprintf(d.out, "    %-18s %s%s\n", p, m.Mode, pct)
	}
	fmt.Fprintln(d.out)
	return nil
}

// waitQuiescent waits until capture has delivered everything and every
// shadow workflow has projected what it was sent.
func waitQuiescent(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, srv *serve.Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	if lc := cfg.Logical(); lc != nil {
		// Legacy's commits so far must reach the change log first.
		wal, err := adapter.WALNow(ctx, pool)
		if err != nil {
			return err
		}
		if err := adapter.WaitLogged(ctx, cfg.Store(pool), lc, wal, timeout); err != nil {
			return err
		}
	}
	for {
		if err := srv.Err(); err != nil {
			return err
		}
		st := cfg.Store(pool)
		b, err := st.BacklogOf(ctx, store.MirrorConsumer)
		if err != nil {
			return err
		}
		behind, err := st.ReportsBehind(ctx)
		if err != nil {
			return err
		}
		cps, err := st.Checkpoints(ctx, time.Duration(cfg.Capture.ConsumerLease))
		if err != nil {
			return err
		}
		backfilled := false
		for _, cp := range cps {
			backfilled = backfilled || (cp.Consumer == store.MirrorConsumer && cp.BackfilledAt != nil)
		}
		if b.Changes == 0 && behind == 0 && backfilled {
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
	st := cfg.Store(pool)
	changes, err := st.ChangeCount(ctx)
	if err != nil {
		return err
	}
	q, err := st.ListQuarantine(ctx, false)
	if err != nil {
		return err
	}
	m := srv.Metrics
	fmt.Fprintf(w, "Capture: %d legacy changes captured, %.0f delivered in order, %d quarantined; lag p50 %s, p99 %s.\n",
		changes, counterValue(m.Delivered), len(q), quantile(m.Lag, 0.5), quantile(m.Lag, 0.99))
	fmt.Fprintf(w, "Mirror: %.0f signals to Temporal (%.1f changes per signal).\n", counterValue(srv.MirrorMetrics.Signals),
		counterValue(m.Delivered)/max(1, counterValue(srv.MirrorMetrics.Signals)))

	workflows, counts, err := st.ShadowSummary(ctx)
	if err != nil {
		return err
	}
	legacyStates, err := effectiveStates(ctx, pool, cfg)
	if err != nil {
		return err
	}
	projected, err := st.ShadowPhaseStates(ctx)
	if err != nil {
		return err
	}
	agree := 0
	for _, p := range projected {
		if legacyStates[fmt.Sprintf("%d/%d/%s", p.Key.CycleID, p.Key.ReportID, p.Phase)] == string(p.State) {
			agree++
		}
	}
	var rules []string
	for _, r := range slices.Sorted(maps.Keys(counts)) {
		rules = append(rules, fmt.Sprintf("%s %d", r, counts[r]))
	}
	fmt.Fprintf(w, "Shadow: %d workflows on %s; phase states agree with legacy for %d of %d phases.\n", workflows, srv.Definition().Key(), agree, len(legacyStates))
	fmt.Fprintf(w, "Rule violations legacy let through, by rule: %s\n", strings.Join(rules, ", "))
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
		p, _ := cfg.Legacy.Phases.Get(phase)
		st, _ := cfg.Legacy.States.Get(state)
		out[fmt.Sprintf("%d/%d/%s", c, r, p)] = string(st)
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
