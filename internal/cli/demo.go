package cli

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

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

	cfg := o.config(p, nil)
	bar := newProgress(g.Stderr, !o.NoProgress, "simulating")
	cfg.Progress = bar.update
	step("Simulating legacy traffic: %d reports, %s at %g operations/s", o.Reports, o.Duration, o.Rate)
	s, err := legacy.Simulate(ctx, pool, cfg)
	bar.finish()
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	if err := writeSummary(out, o.Format, s, p); err != nil {
		return err
	}
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
