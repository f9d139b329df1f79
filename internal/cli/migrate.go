package cli

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/defmigrate"
)

// parseKey reads a report key written cycle/report.
func parseKey(s string) (dtetype.Key, error) {
	c, r, ok := strings.Cut(strings.TrimSpace(s), "/")
	cy, err1 := strconv.ParseInt(c, 10, 64)
	rp, err2 := strconv.ParseInt(r, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return dtetype.Key{}, usagef("invalid report %q: write cycle/report, as 1/42", s)
	}
	return dtetype.Key{CycleID: cy, ReportID: rp}, nil
}

type migrateOptions struct {
	To, Actor, Reason, Format string
	Reports                   cli.StringSlice
	All, PhaseSafe, DryRun    bool
	NoProgress                bool
	Wait                      time.Duration
}

func definitionsMigrateCommand(g *globals) *cli.Command {
	var o migrateOptions
	return &cli.Command{
		Name:  "migrate",
		Usage: "move running shadow workflows to another definition version, re-judging each report under it",
		UsageText: "dtebridge definitions migrate --to ID@VERSION (--all | --reports C/R,...) [--phase-safe] [--dry-run]\n" +
			"   --actor NAME --reason TEXT [--format text|json]",
		Description: `Each chosen report is re-driven from its legacy truth through the running serve,
onto the target version: its shadow judges the report's state under the new
rules (those findings replace the old version's) and continues as new,
pinned to it. --dry-run previews each report's findings under the target
and changes nothing. --phase-safe leaves alone reports with a phase in
progress. Every run is audited (definitions migrations); running it again
resumes: reports already on the target are skipped. New reports start on
the config's shadow.definition: set it to the target as well.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "to", Usage: "target definition, id@version (loaded by the config's definitions)", Required: true, Destination: &o.To},
			&cli.BoolFlag{Name: "all", Usage: "every report the shadow follows", Destination: &o.All},
			&cli.StringSliceFlag{Name: "reports", Usage: "these reports, cycle/report (repeat or comma-separate)", Destination: &o.Reports},
			&cli.BoolFlag{Name: "phase-safe", Usage: "skip reports with a phase in progress", Destination: &o.PhaseSafe},
			&cli.BoolFlag{Name: "dry-run", Usage: "preview the findings under the target; change nothing", Destination: &o.DryRun},
			&cli.StringFlag{Name: "actor", Usage: "who migrates (audited)", Destination: &o.Actor},
			&cli.StringFlag{Name: "reason", Usage: "why (audited)", Destination: &o.Reason},
			&cli.StringFlag{Name: "format", Usage: "text or json", Value: "text", Destination: &o.Format},
			&cli.DurationFlag{Name: "wait", Usage: "how long to wait for each batch of re-drives", Value: 5 * time.Minute, Destination: &o.Wait},
			&cli.BoolFlag{Name: "no-progress", Usage: "do not draw a progress bar", Destination: &o.NoProgress},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			if err := checkFormat(o.Format); err != nil {
				return err
			}
			if o.All == (len(o.Reports.Value()) > 0) {
				return usagef("name the reports to move: --all, or --reports cycle/report,...")
			}
			if !strings.Contains(o.To, "@") {
				return usagef("--to %q: name the version, id@version", o.To)
			}
			if !o.DryRun && (strings.TrimSpace(o.Actor) == "" || strings.TrimSpace(o.Reason) == "") {
				return usagef("a migration is audited: --actor and --reason are required (or --dry-run)")
			}
			var keys []dtetype.Key
			for _, s := range o.Reports.Value() {
				for _, part := range strings.Split(s, ",") {
					k, err := parseKey(part)
					if err != nil {
						return err
					}
					keys = append(keys, k)
				}
			}
			cfg, pool, err := g.open(c.Context)
			if err != nil {
				return err
			}
			defer pool.Close()
			defs, _, err := cfg.LoadDefinitions()
			if err != nil {
				return err
			}
			target, err := config.Select(defs, o.To)
			if err != nil {
				return usagef("--to: %v", err)
			}
			if err := cfg.CheckAttributes(target); err != nil {
				return err
			}
			mo := defmigrate.Options{Store: cfg.Store(pool), WorkflowIDPrefix: cfg.Shadow.WorkflowIDPrefix, Target: target, Keys: keys,
				PhaseSafe: o.PhaseSafe, DryRun: o.DryRun, Actor: o.Actor, Reason: o.Reason, Wait: o.Wait}
			if o.DryRun {
				tc, err := g.dialTemporal(c.Context, cfg, "")
				if err != nil {
					return err
				}
				defer tc.Close()
				mo.Client = tc
			}
			bar := newProgress(g.Stderr, !o.NoProgress, "migrating", "reports")
			mo.Progress = bar.update
			res, err := defmigrate.Run(c.Context, mo)
			bar.finish()
			if err != nil {
				return err
			}
			if o.Format == "json" {
				return writeJSON(g.Stdout, res)
			}
			writeMigration(g, res)
			if res.Failed > 0 {
				return fmt.Errorf("%d reports could not be moved (see above)", res.Failed)
			}
			return nil
		},
	}
}

func writeMigration(g *globals, res *defmigrate.Result) {
	verb := "Moved"
	if res.DryRun {
		verb = "Dry run: would move"
	}
	fmt.Fprintf(g.Stdout, "%s %d reports to %s", verb, res.Migrated, res.Target)
	if res.MigrationID != 0 {
		fmt.Fprintf(g.Stdout, " (migration %d)", res.MigrationID)
	}
	fmt.Fprintf(g.Stdout, "; %d already on it, %d skipped, %d pending, %d failed.\n", res.AlreadyOnTarget, len(res.Skipped), res.Pending, res.Failed)
	if len(res.Reports) > 0 {
		tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nREPORT\tFROM\tOUTCOME\tFINDINGS\tADDED\tREMOVED")
		for _, r := range res.Reports {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d -> %d\t%s\t%s\n", r.Key, r.From, r.Outcome, len(r.Before), len(r.After), orNone(r.Added), orNone(r.Removed))
		}
		tw.Flush()
	}
	if len(res.FindingsBefore)+len(res.FindingsAfter) > 0 {
		tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\nPHASE RULE\tBEFORE\tAFTER")
		all := maps.Clone(res.FindingsBefore)
		maps.Copy(all, res.FindingsAfter)
		for _, k := range slices.Sorted(maps.Keys(all)) {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", k, res.FindingsBefore[k], res.FindingsAfter[k])
		}
		tw.Flush()
	}
	for _, k := range slices.Sorted(maps.Keys(res.Skipped)) {
		fmt.Fprintf(g.Stdout, "skipped %s: %s\n", k, res.Skipped[k])
	}
	if res.Pending > 0 {
		fmt.Fprintln(g.Stdout, "Pending reports are moved by the running serve; run the same command again to record them.")
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ", ")
}

func definitionsMigrationsCommand(g *globals) *cli.Command {
	var format string
	var limit int
	return &cli.Command{
		Name:  "migrations",
		Usage: "list the definition migrations (the audit of definitions migrate)",
		Flags: []cli.Flag{formatFlag(&format),
			&cli.IntFlag{Name: "limit", Usage: "how many, newest first", Value: 20, Destination: &limit}},
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
			ms, err := cfg.Store(pool).Migrations(c.Context, limit)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(g.Stdout, ms)
			}
			if len(ms) == 0 {
				fmt.Fprintln(g.Stdout, "No definition migrations.")
				return nil
			}
			tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTARTED\tTARGET\tACTOR\tREQUESTED\tMIGRATED\tFAILED\tPHASE-SAFE\tREASON")
			for _, m := range ms {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%v\t%s\n", m.ID, m.StartedAt.Format(time.RFC3339), m.Target, m.Actor, m.Requested, m.Migrated, m.Failed, m.PhaseSafe, m.Reason)
			}
			return tw.Flush()
		},
	}
}
