package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/store"
)

// exitDivergent is reconcile's exit code for unexpected divergences, and a
// phase command's for a command the definition refuses.
const exitDivergent = 3

type reconcileOptions struct {
	Cycle            int64
	Phase            string
	Since            string
	Format           string
	FailOnDivergence bool
	Repair           bool
	Deep             string
	LagGrace         time.Duration
	NoRecord         bool
	Limit            int
	NoProgress       bool
	Incremental      bool
}

// since parses --since: an RFC 3339 time, or a duration meaning that long ago.
func (o *reconcileOptions) since(now time.Time) (*time.Time, error) {
	if o.Since == "" {
		return nil, nil
	}
	if d, err := time.ParseDuration(o.Since); err == nil {
		t := now.Add(-d)
		return &t, nil
	}
	t, err := time.Parse(time.RFC3339, o.Since)
	if err != nil {
		return nil, usagef("invalid --since %q: use a time such as 2026-11-25T08:00:00Z or a duration such as 2h", o.Since)
	}
	return &t, nil
}

func (o *reconcileOptions) deep() (int, bool, error) {
	switch o.Deep {
	case "":
		return 0, false, nil
	case "all":
		return 0, true, nil
	}
	n, err := strconv.Atoi(o.Deep)
	if err != nil || n <= 0 {
		return 0, false, usagef("invalid --deep %q: use a number of workflows or all", o.Deep)
	}
	return n, true, nil
}

func reconcileCommand(g *globals) *cli.Command {
	var o reconcileOptions
	return &cli.Command{
		Name:  "reconcile",
		Usage: "compare every legacy phase with the shadow, classify the divergences, report and optionally repair them",
		Description: "Streams every legacy (cycle, report, phase) in key order against the shadow projection. Reports the shadow\n" +
			"is still catching up on are in flight, not divergent, until --lag-grace passes. Differences matching a\n" +
			"reconcile.expected rule are reported as expected and do not count against consistency. Each run is\n" +
			"recorded in dtebridge.reconcile_runs (unless --no-record), and divergences are tracked across runs.\n" +
			"--incremental compares only the reports written on either side since the last full or incremental run\n" +
			"(it runs in full when there is none, or when the mapping, rules or modes changed since); the cutover\n" +
			"gates count full runs, and any incremental run since the last full one that found an unexpected\n" +
			"divergence in a phase holds its gate closed.\n" +
			"Exit codes: 0 ok, 1 error, 3 unexpected divergences remain (with --fail-on-divergence).",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "cycle", Usage: "only this test cycle", DefaultText: "every cycle", Destination: &o.Cycle},
			&cli.StringFlag{Name: "phase", Usage: "only this canonical phase id", Destination: &o.Phase},
			&cli.BoolFlag{Name: "incremental", Usage: "compare only the reports written since the last recorded full or incremental run", Destination: &o.Incremental},
			&cli.StringFlag{Name: "since", Usage: "only reports changed since then: a time (RFC 3339) or a duration ago (2h)", Destination: &o.Since},
			&cli.StringFlag{Name: "format", Usage: "text, json or markdown", Value: "text", Destination: &o.Format},
			&cli.BoolFlag{Name: "fail-on-divergence", Usage: "exit 3 if unexpected divergences remain", Destination: &o.FailOnDivergence},
			&cli.BoolFlag{Name: "repair", Usage: "re-drive divergent reports from legacy truth, then re-check (needs --temporal-address)", Destination: &o.Repair},
			&cli.StringFlag{Name: "deep", Usage: "also query N shadow workflows (or all) in Temporal and compare them with the projection", Destination: &o.Deep},
			&cli.DurationFlag{Name: "lag-grace", Usage: "how long a report may be behind before it is stale", DefaultText: "reconcile.lag_grace, else 30s", Destination: &o.LagGrace},
			&cli.BoolFlag{Name: "no-record", Usage: "do not record the run or track divergences", Destination: &o.NoRecord},
			&cli.IntFlag{Name: "limit", Usage: "divergences listed in text and markdown (0: all)", Value: 50, Destination: &o.Limit},
			&cli.BoolFlag{Name: "no-progress", Usage: "no progress bar, even on a terminal", Destination: &o.NoProgress},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			if o.Format != "text" && o.Format != "json" && o.Format != "markdown" {
				return usagef("invalid --format %q: use text, json or markdown", o.Format)
			}
			since, err := o.since(time.Now())
			if err != nil {
				return err
			}
			if o.Incremental && (c.IsSet("cycle") || o.Phase != "" || since != nil) {
				return usagef("--incremental looks at every report written since the last run: drop --cycle, --phase and --since")
			}
			deepN, deep, err := o.deep()
			if err != nil {
				return err
			}
			cfg, pool, err := g.open(c.Context)
			if err != nil {
				return err
			}
			defer pool.Close()
			_, def, err := cfg.LoadDefinitions()
			if err != nil {
				return err
			}
			if err := checkPhase(def, o.Phase); err != nil {
				return err
			}
			// What --repair and --deep need is checked before the run is
			// recorded, so a failure leaves nothing half done.
			var tc client.Client
			if o.Repair || deep {
				if tc, err = g.dialTemporal(c.Context, cfg, ""); err != nil {
					return err
				}
				defer tc.Close()
			}
			if o.Repair {
				alive, err := cfg.Store(pool).LeaderAlive(c.Context, store.MirrorConsumer)
				if err != nil {
					return err
				}
				if !alive {
					return fmt.Errorf("--repair re-drives reports through the running bridge, and %w: nothing was recorded or repaired", adapter.ErrNoLeader)
				}
			}
			// Repair leaves alone what the new engine owns.
			auth := cutover.NewAuthority(cutover.NewStore(cfg.Store(pool)))
			if err := auth.Refresh(c.Context); err != nil {
				return err
			}
			ro := cfg.ReconcileOptions(pool)
			ro.Order = def.PhaseIDs()
			ro.Persist = !o.NoRecord
			if c.IsSet("cycle") {
				ro.Scope.Cycle = &o.Cycle
			}
			ro.Scope.Phase, ro.Scope.Since, ro.Incremental = dtetype.Phase(o.Phase), since, o.Incremental
			if o.LagGrace > 0 {
				ro.LagGrace = o.LagGrace
			}
			bar := newProgress(g.Stderr, !o.NoProgress && o.Format == "text", "reconciling", "keys")
			ro.Progress = bar.update
			r, err := reconcile.Run(c.Context, ro)
			bar.finish()
			if err != nil {
				return err
			}
			defer r.Close()
			if o.Repair || deep {
				to, err := reconcileTemporal(cfg, tc)
				if err != nil {
					return err
				}
				to.Owned = auth.OnNew
				ro.Progress = nil
				if deep {
					if err := reconcile.Deep(c.Context, ro, to, deepN, r); err != nil {
						return err
					}
				}
				if o.Repair {
					if err := reconcile.Repair(c.Context, ro, to, r); err != nil {
						return err
					}
				}
			}
			switch o.Format {
			case "json":
				err = r.WriteJSON(g.Stdout)
			case "markdown":
				err = r.WriteMarkdown(g.Stdout, o.Limit)
			default:
				err = r.WriteText(g.Stdout, o.Limit)
			}
			if err != nil {
				return err
			}
			if remaining := r.Remaining(); o.FailOnDivergence && remaining > 0 {
				return cli.Exit(fmt.Sprintf("%d unexpected divergences remain", remaining), exitDivergent)
			}
			return nil
		},
	}
}

// temporalOptions is how reconcile reaches the shadow workflows.
func reconcileTemporal(cfg *config.Config, tc client.Client) (reconcile.TemporalOptions, error) {
	return reconcile.TemporalOptions{Client: tc, WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Actor: "reconcile --repair"}, nil
}
