package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/legacy"
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
			"--database-url or --temporal-address point elsewhere), applies the legacy schema, simulates\n" +
			"legacy traffic, prints a summary, and stops everything it started.",
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
	cfg, err := g.loadConfig(p.Name)
	if err != nil {
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
	step("Installed the bridge (schema version %d) and attached capture to %s", res.ToVersion, orDefault(cfg.Legacy.Table, "public.workflow_phases"))

	tr, err := cfg.Translator(nil)
	if err != nil {
		return err
	}
	stats := &captureStats{}
	rc := cfg.ReaderConfig()
	rc.Logger = g.Logger
	rc.Metrics = adapter.NewMetrics(nil)
	readerCtx, stopReader := context.WithCancel(ctx)
	readerDone := make(chan error, 1)
	go func() { readerDone <- adapter.NewReader(pool, tr, rc).Run(readerCtx, stats) }()
	defer func() {
		stopReader()
		<-readerDone
	}()
	step("Capture reader running (consumer %s)", orDefault(rc.Consumer, "mirror"))

	bar := newProgress(g.Stderr, !o.NoProgress, "simulating")
	step("Simulating legacy traffic: %d reports, %s at %g operations/s", o.Reports, o.Duration, o.Rate)
	s, err := legacy.Simulate(ctx, pool, o.config(p, bar.update))
	bar.finish()
	if err != nil {
		return err
	}
	step("Waiting for capture to drain")
	drainBy := time.Now().Add(60 * time.Second)
	for {
		b, err := adapter.BacklogOf(ctx, pool, cfg.CaptureConfig(), orDefault(rc.Consumer, "mirror"))
		if err != nil {
			return err
		}
		if b.Changes == 0 && stats.backfilled() {
			break
		}
		if time.Now().After(drainBy) {
			return fmt.Errorf("capture still has %d changes to deliver after 60s", b.Changes)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Fprintln(out)
	if err := writeSummary(out, o.Format, s, p); err != nil {
		return err
	}
	fmt.Fprintln(out)
	changes, err := adapter.ChangeCount(ctx, pool, cfg.CaptureConfig())
	if err != nil {
		return err
	}
	q, err := adapter.ListQuarantine(ctx, pool, cfg.CaptureConfig(), false)
	if err != nil {
		return err
	}
	stats.write(out, changes, len(q))
	fmt.Fprintln(out)
	if svc.TemporalUI != "" {
		fmt.Fprintf(out, "Temporal Web UI: %s\n", svc.TemporalUI)
	}
	fmt.Fprintf(out, "Temporal frontend: %s (namespace %s)\n", svc.TemporalAddress, svc.TemporalNamespace)
	if o.KeepRunning {
		fmt.Fprintf(out, "Legacy database: %s\n", Redact(svc.DatabaseURL))
		fmt.Fprintln(out, "Services keep running; press Ctrl-C to stop them.")
		<-ctx.Done()
		fmt.Fprintln(out)
	}
	return nil
}

// captureStats is the demo's stand-in consumer until the mirror lands: it
// counts what capture delivers and how long each change took.
type captureStats struct {
	mu        sync.Mutex
	snapshot  int
	stream    int
	lags      []time.Duration
	backfills int
}

func (c *captureStats) Deliver(_ context.Context, b adapter.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if b.Backfill != "" {
		c.snapshot += len(b.Changes)
		if b.Last {
			c.backfills++
		}
		return nil
	}
	c.stream += len(b.Changes)
	for _, ch := range b.Changes {
		c.lags = append(c.lags, now.Sub(ch.CapturedAt))
	}
	return nil
}

func (c *captureStats) backfilled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.backfills > 0
}

func (c *captureStats) write(w io.Writer, captured int64, quarantined int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	slices.Sort(c.lags)
	pct := func(p float64) time.Duration {
		if len(c.lags) == 0 {
			return 0
		}
		return c.lags[min(len(c.lags)-1, int(p*float64(len(c.lags))))].Round(time.Millisecond)
	}
	fmt.Fprintf(w, "Capture: %d legacy changes captured, %d delivered in order (after a backfill of %d rows), %d quarantined.\n",
		captured, c.stream, c.snapshot, quarantined)
	fmt.Fprintf(w, "Capture lag (trigger to acknowledgement): p50 %s, p99 %s.\n", pct(0.50), pct(0.99))
}
