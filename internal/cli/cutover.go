package cli

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

type cutoverSetOptions struct {
	Phase, Mode, Actor, Reason string
	Percent                    int
	Force                      bool
}

func cutoverCommand(g *globals) *cli.Command {
	var set cutoverSetOptions
	var format, phase string
	var limit int
	return &cli.Command{
		Name:  "cutover",
		Usage: "read and change each phase's mode: legacy, shadow, or new (optionally for a percentage of reports)",
		Subcommands: []*cli.Command{{
			Name:   "status",
			Usage:  "each phase's mode, percentage and promotion gate",
			Flags:  []cli.Flag{formatFlag(&format)},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if err := checkFormat(format); err != nil {
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
				store := cutover.NewStore(cfg.Store(pool))
				modes, err := store.Modes(c.Context)
				if err != nil {
					return err
				}
				lines := []cutoverStatusLine{}
				for _, p := range def.Phases {
					gate, err := store.Gate(c.Context, p.ID, cfg.GateConfig())
					if err != nil {
						return err
					}
					lines = append(lines, cutoverStatusLine{Mode: dtetype.ModeOf(modes, p.ID), Gate: gate})
				}
				if format == "json" {
					return writeJSON(g.Stdout, lines)
				}
				tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "PHASE\tMODE\tPERCENT\tGATE\tCHANGED")
				for _, l := range lines {
					verdict := "passes"
					if !l.Gate.Pass {
						verdict = "refuses (" + l.Gate.Why[0] + ")"
					}
					changed := "-"
					if l.UpdatedAt != nil {
						changed = l.UpdatedAt.Format(time.RFC3339) + " by " + l.UpdatedBy
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", l.Phase, l.Mode.Mode, l.Percent, verdict, changed)
				}
				return tw.Flush()
			},
		}, {
			Name:  "set",
			Usage: "change a phase's mode; promotions must pass the reconcile gate unless --force",
			Description: "Moving to new, or raising its percentage, needs the last cutover.gate.runs reconcile runs within\n" +
				"cutover.gate.within to show at least cutover.gate.min_consistency for the phase and no unexpected\n" +
				"divergences. Moving out of new is a rollback: always allowed; the engine stops writing back and the\n" +
				"shadow resyncs from legacy. Every change is recorded in dtebridge.cutover_log.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "phase", Usage: "canonical phase id", Required: true, Destination: &set.Phase},
				&cli.StringFlag{Name: "mode", Usage: "legacy, shadow or new", Required: true, Destination: &set.Mode},
				&cli.IntFlag{Name: "percent", Usage: "with --mode new: the percentage of reports on new, 1 to 100", DefaultText: "100 with --mode new", Destination: &set.Percent},
				&cli.StringFlag{Name: "actor", Usage: "who makes the change (recorded)", Required: true, Destination: &set.Actor},
				&cli.StringFlag{Name: "reason", Usage: "why (recorded)", Required: true, Destination: &set.Reason},
				&cli.BoolFlag{Name: "force", Usage: "override a gate refusal (recorded)", Destination: &set.Force},
				formatFlag(&format),
			},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if err := checkFormat(format); err != nil {
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
				if set.Mode == dtetype.ModeNew && !c.IsSet("percent") {
					set.Percent = 100
				}
				if def.Phase(dtetype.Phase(set.Phase)) == nil {
					return usagef("phase %q is not in %s (phases: %v)", set.Phase, def.Key(), def.PhaseIDs())
				}
				res, err := cutover.NewStore(cfg.Store(pool)).Set(c.Context, cutover.Change{Phase: dtetype.Phase(set.Phase), Mode: set.Mode, LegacyTable: cfg.Legacy.Name,
					Percent: set.Percent, Actor: set.Actor, Reason: set.Reason, Force: set.Force}, cfg.GateConfig())
				if errors.Is(err, cutover.ErrInvalidChange) {
					return usagef("%v", err)
				}
				var ge *cutover.GateError
				if errors.As(err, &ge) {
					if format == "json" {
						if err := writeJSON(g.Stdout, refusalJSON{Refused: true, Message: ge.Error(), Gate: ge.Gate}); err != nil {
							return err
						}
						return cli.Exit("", exitGateRefused)
					}
					return cli.Exit(ge.Error(), exitGateRefused)
				}
				if err != nil {
					return err
				}
				if format == "json" {
					rr := cutoverSetJSON{Result: res}
					if len(res.Redrives) > 0 {
						if rr.Redrives, err = adapter.AwaitRedrives(c.Context, cfg.Store(pool), res.Redrives, time.Minute); err != nil {
							return err
						}
					}
					return writeJSON(g.Stdout, rr)
				}
				if res.NoOp {
					fmt.Fprintf(g.Stdout, "%s is already %s %d%%: nothing changed, nothing logged.\n", set.Phase, res.To.Mode, res.To.Percent)
					return nil
				}
				fmt.Fprintf(g.Stdout, "%s: %s %d%% -> %s %d%% (log %d).\n", set.Phase, res.From.Mode, res.From.Percent, res.To.Mode, res.To.Percent, res.LogID)
				if res.Forced {
					fmt.Fprintf(g.Stdout, "Forced past the gate: %s\n", res.Gate)
				}
				if len(res.Redrives) > 0 {
					return reportRedrives(c.Context, g, cfg.Store(pool), res)
				}
				return nil
			},
		}, {
			Name:   "reports",
			Usage:  "the reports a phase is on the new engine for",
			Flags:  []cli.Flag{&cli.StringFlag{Name: "phase", Usage: "canonical phase id", Required: true, Destination: &phase}, formatFlag(&format)},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if err := checkFormat(format); err != nil {
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
				if err := checkPhase(def, phase); err != nil {
					return err
				}
				on, err := cutover.NewStore(cfg.Store(pool)).ReportsOnNew(c.Context, dtetype.Phase(phase))
				if err != nil {
					return err
				}
				if format == "json" {
					return writeJSON(g.Stdout, on)
				}
				fmt.Fprintf(g.Stdout, "%s is %s %d%%: the new engine owns it for %d of the %d reports the shadow follows.\n",
					phase, on.Mode.Mode, on.Mode.Percent, len(on.Reports), on.Followed)
				for _, r := range on.Reports {
					pinned := ""
					if r.Pinned {
						pinned = " (pinned)"
					}
					fmt.Fprintf(g.Stdout, "%s%s\n", r.Key, pinned)
				}
				return nil
			},
		}, {
			Name:  "history",
			Usage: "the audit log of mode changes, newest first",
			Flags: []cli.Flag{&cli.StringFlag{Name: "phase", Usage: "only this phase", Destination: &phase},
				&cli.IntFlag{Name: "limit", Usage: "how many entries, newest first", Value: 50, Destination: &limit}, formatFlag(&format)},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if err := checkFormat(format); err != nil {
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
				if err := checkPhase(def, phase); err != nil {
					return err
				}
				entries, err := cutover.NewStore(cfg.Store(pool)).History(c.Context, dtetype.Phase(phase), limit)
				if err != nil {
					return err
				}
				if format == "json" {
					if entries == nil {
						entries = []store.LogEntry{}
					}
					return writeJSON(g.Stdout, entries)
				}
				tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "AT\tPHASE\tFROM\tTO\tACTOR\tFORCED\tREASON")
				for _, e := range entries {
					fmt.Fprintf(tw, "%s\t%s\t%s %d%%\t%s %d%%\t%s\t%v\t%s\n", e.At.Format(time.RFC3339), e.Phase, e.FromMode, e.FromPercent, e.ToMode, e.ToPercent, e.Actor, e.Forced, e.Reason)
				}
				return tw.Flush()
			},
		}},
	}
}

// reportRedrives waits for the re-drives a mode change requested in its own
// transaction (the reports a rollback released, or every report when the
// phase leaves legacy mode), and says how far they got: the running bridge
// finishes whatever is left by itself.
func reportRedrives(ctx context.Context, g *globals, st *store.Store, res *cutover.Result) error {
	what := fmt.Sprintf("Rolled back: %d reports released", len(res.Released))
	if len(res.Released) == 0 {
		what = fmt.Sprintf("The shadow did not follow the phase in legacy mode: %d reports", len(res.Resynced))
	}
	alive, err := st.LeaderAlive(ctx, store.MirrorConsumer)
	if err != nil {
		return err
	}
	if !alive {
		fmt.Fprintf(g.Stdout, "%s; no dtebridge serve is running, so they are re-driven from legacy when it starts.\n", what)
		return nil
	}
	rr, err := adapter.AwaitRedrives(ctx, st, res.Redrives, time.Minute)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.Stdout, "%s, %d resynced from legacy", what, len(rr.Applied))
	if len(rr.Pending) > 0 {
		fmt.Fprintf(g.Stdout, "; %d still being re-driven by the running bridge", len(rr.Pending))
	}
	fmt.Fprintln(g.Stdout, ".")
	for k, why := range rr.Failed {
		fmt.Fprintf(g.Stdout, "Not resynced: %s: %s\n", k, why)
	}
	return nil
}

type phaseCommandOptions struct {
	Cycle, Report              int64
	Phase, Actor, Role, Reason string
	State, Status, ID, Format  string
}

func phaseCommand(g *globals) *cli.Command {
	var o phaseCommandOptions
	flags := func(override bool) []cli.Flag {
		f := []cli.Flag{
			&cli.Int64Flag{Name: "cycle", Usage: "the report's cycle id", Required: true, Destination: &o.Cycle},
			&cli.Int64Flag{Name: "report", Usage: "the report id", Required: true, Destination: &o.Report},
			&cli.StringFlag{Name: "phase", Usage: "canonical phase id", Required: true, Destination: &o.Phase},
			&cli.StringFlag{Name: "actor", Usage: "legacy user id acting", Required: true, Destination: &o.Actor},
			&cli.StringFlag{Name: "role", Usage: "the role they act in; with legacy.users configured the users table decides, and a stated role must agree", Destination: &o.Role},
			&cli.StringFlag{Name: "reason", Usage: "why", Required: true, Destination: &o.Reason},
			&cli.StringFlag{Name: "id", Usage: "command id, to retry a command exactly once", DefaultText: "a new one", Destination: &o.ID},
			formatFlag(&o.Format),
		}
		if override {
			f = append(f, &cli.StringFlag{Name: "state", Usage: "override state: not_started, in_progress or completed", Destination: &o.State},
				&cli.StringFlag{Name: "status", Usage: "override status: on_schedule, at_risk or behind_schedule", Destination: &o.Status})
		}
		return f
	}
	var subs []*cli.Command
	for _, action := range dtetype.Actions() {
		subs = append(subs, &cli.Command{
			Name:   action,
			Usage:  "send " + action + " to the new engine for a phase it owns; it writes the result back to legacy",
			Flags:  flags(action == dtetype.ActionOverride),
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if err := checkFormat(o.Format); err != nil {
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
				tc, err := g.dialTemporal(c.Context, cfg, "")
				if err != nil {
					return err
				}
				defer tc.Close()
				x := &cutover.Executor{Client: tc, Store: cutover.NewStore(cfg.Store(pool)), WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Definition: def,
					Timeout: time.Duration(cfg.Cutover.CommandTimeout), Logger: g.Logger}
				if cfg.Legacy.Users != nil {
					x.Users = legacy.NewUsers(pool, *cfg.Legacy.Users)
				}
				res, err := x.Execute(c.Context, dtetype.Key{CycleID: o.Cycle, ReportID: o.Report}, shadow.Command{ID: o.ID, Action: action,
					Phase: dtetype.Phase(o.Phase), Actor: o.Actor, Role: o.Role, Reason: o.Reason, State: dtetype.State(o.State), Status: dtetype.Status(o.Status)})
				var rej *cutover.RejectedError
				var bad *cutover.InputError
				if errors.As(err, &bad) {
					return usagef("%v", bad)
				}
				if errors.As(err, &rej) {
					if o.Format == "json" {
						if err := writeJSON(g.Stdout, refusalJSON{Refused: true, Rule: rej.Rule, Message: rej.Message}); err != nil {
							return err
						}
						return cli.Exit("", exitDivergent)
					}
					return cli.Exit(fmt.Sprintf("%s refused by rule %s: %s (nothing was written)", action, rej.Rule, rej.Message), exitDivergent)
				}
				if err != nil {
					return err
				}
				if o.Format == "json" {
					return writeJSON(g.Stdout, res)
				}
				fmt.Fprintf(g.Stdout, "%s %s of %d/%d: now %s, %s; %d legacy rows written back.\n", action, o.Phase, o.Cycle, o.Report, res.State, res.Status, res.Rows)
				return nil
			},
		})
	}
	return &cli.Command{
		Name:        "phase",
		Usage:       "send commands to the new engine for phases and reports it owns",
		Description: "Refused commands (wrong role, unmet dependency, invalid transition) write nothing and exit 3 with the rule.",
		Subcommands: subs,
	}
}
