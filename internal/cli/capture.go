package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/store"
)

// loadConfig reads --config, which every command that touches the bridge
// needs: without it the bridge cannot know the legacy table, its labels or
// its own schema, and guessing would act on the wrong ones.
func (g *globals) loadConfig() (*config.Config, error) {
	if g.ConfigPath != "" {
		return config.Load(g.ConfigPath)
	}
	return nil, usagef("no configuration: pass --config FILE or set DTEBRIDGE_CONFIG (start from `dtebridge config example --profile seed|production`)")
}

// open loads the configuration and connects to the database; the caller
// closes the pool.
func (g *globals) open(ctx context.Context) (*config.Config, *pgxpool.Pool, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	pool, err := connect(ctx, g.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pool, nil
}

// translatorFor returns the config's translator, which quarantines changes
// to phases the selected workflow definition does not know, as serve does.
func translatorFor(cfg *config.Config) (*legacy.Translator, error) {
	_, def, err := cfg.LoadDefinitions()
	if err != nil {
		return nil, err
	}
	return cfg.Translator(def.PhaseIDs())
}

func formatFlag(dest *string) *cli.StringFlag {
	return &cli.StringFlag{Name: "format", Usage: "output format: text or json", Value: "text", Destination: dest}
}

func checkFormat(f string) error {
	if f != "text" && f != "json" {
		return usagef("invalid --format %q: use text or json", f)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func configCommand(g *globals) *cli.Command {
	var profile string
	return &cli.Command{
		Name:  "config",
		Usage: "work with the configuration file",
		Subcommands: []*cli.Command{{
			Name:   "example",
			Usage:  "print an example configuration for a legacy label profile",
			Flags:  []cli.Flag{profileFlag(&profile)},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				b, err := config.ExampleYAML(profile)
				if err != nil {
					return usagef("unknown profile %q: use seed or production", profile)
				}
				_, err = g.Stdout.Write(b)
				return err
			},
		}, {
			Name:      "validate",
			Usage:     "check a configuration file",
			ArgsUsage: "FILE",
			Action: func(c *cli.Context) error {
				if c.Args().Len() != 1 {
					return usagef("config validate takes one FILE")
				}
				if _, err := config.Load(c.Args().First()); err != nil {
					return err
				}
				fmt.Fprintf(g.Stdout, "%s: ok\n", c.Args().First())
				return nil
			},
		}},
	}
}

// connectOne opens a single connection (install and uninstall need one).
func connectOne(ctx context.Context, url string) (*pgx.Conn, error) {
	pool, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	pool.Close()
	return pgx.Connect(ctx, url)
}

type installOptions struct {
	DryRun bool
}

func installCommand(g *globals) *cli.Command {
	var o installOptions
	return &cli.Command{
		Name:  "install",
		Usage: "create or upgrade the bridge schema and attach change capture to the legacy table",
		Description: "Idempotent: run it again after an upgrade or a config change. Uses --config for the legacy table,\n" +
			"key columns, bridge schema and trigger mode (defaults: public.workflow_phases, phase_id, dtebridge, row).",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "dry-run", Usage: "print the SQL instead of running it", Destination: &o.DryRun}},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			cfg, pool, err := g.open(c.Context)
			if err != nil {
				return err
			}
			err = preflightInstall(c.Context, g, cfg, pool)
			pool.Close()
			if err != nil {
				return err
			}
			conn, err := connectOne(c.Context, g.DatabaseURL)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			res, err := adapter.Install(c.Context, conn, cfg.CaptureConfig(), o.DryRun)
			if err != nil {
				return err
			}
			if o.DryRun {
				fmt.Fprintln(g.Stdout, strings.Join(res.SQL, "\n\n"))
				return nil
			}
			fmt.Fprintf(g.Stdout, "Installed: schema %s at version %d (was %d); capturing %s with %s triggers.\n",
				cfg.Capture.Schema, res.ToVersion, res.FromVersion, cfg.Legacy.Name, cfg.Capture.Trigger)
			if res.Baseline {
				fmt.Fprintf(g.Stdout, "Recorded the legacy baseline: %d phases hold duplicate rows now; reconcile reports rows added later apart from these.\n", res.Duplicates)
			}
			return nil
		},
	}
}

type uninstallOptions struct {
	DryRun, Yes bool
}

func uninstallCommand(g *globals) *cli.Command {
	var o uninstallOptions
	return &cli.Command{
		Name:  "uninstall",
		Usage: "remove change capture and the bridge schema (legacy data is never touched)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "dry-run", Usage: "print the SQL instead of running it", Destination: &o.DryRun},
			&cli.BoolFlag{Name: "yes", Usage: "confirm: the captured changes, checkpoints and quarantine are dropped", Destination: &o.Yes},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			if !o.DryRun && !o.Yes {
				return usagef("uninstall drops the bridge schema with its captured changes, checkpoints and quarantine: pass --yes to confirm, or --dry-run to see the SQL")
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			conn, err := connectOne(c.Context, g.DatabaseURL)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			sql, err := adapter.Uninstall(c.Context, conn, cfg.CaptureConfig(), o.DryRun)
			if err != nil {
				return err
			}
			if o.DryRun {
				fmt.Fprintln(g.Stdout, strings.Join(sql, "\n"))
				return nil
			}
			fmt.Fprintln(g.Stdout, "Uninstalled: capture detached and the bridge schema dropped; legacy data untouched.")
			return nil
		},
	}
}

type backfillOptions struct {
	Consumer string
	Wait     time.Duration
}

func backfillCommand(g *globals) *cli.Command {
	var o backfillOptions
	return &cli.Command{
		Name:  "backfill",
		Usage: "ask the running bridge for a new consistent snapshot of every legacy row",
		Description: "The leading capture reader takes the snapshot, emits every row, and joins the change stream at\n" +
			"that snapshot, so nothing is missed or applied twice. A reader's first start backfills by itself.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "consumer", Usage: "the stream consumer to backfill", Value: store.MirrorConsumer, Destination: &o.Consumer},
			&cli.DurationFlag{Name: "wait", Usage: "wait up to this long for the backfill to finish (0: do not wait)", Destination: &o.Wait},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			cfg, pool, err := g.open(c.Context)
			if err != nil {
				return err
			}
			defer pool.Close()
			requested := time.Now()
			st := cfg.Store(pool)
			if err := st.RequestBackfill(c.Context, o.Consumer); err != nil {
				return err
			}
			if o.Wait <= 0 {
				fmt.Fprintf(g.Stdout, "Backfill requested for %s; the leading reader takes it within its maintenance interval.\n", o.Consumer)
				return nil
			}
			deadline := time.Now().Add(o.Wait)
			for time.Now().Before(deadline) {
				cps, err := st.Checkpoints(c.Context, time.Duration(cfg.Capture.ConsumerLease))
				if err != nil {
					return err
				}
				for _, cp := range cps {
					if cp.Consumer == o.Consumer && cp.BackfilledAt != nil && cp.BackfilledAt.After(requested.Add(-time.Second)) && !cp.BackfillRequested {
						fmt.Fprintf(g.Stdout, "Backfill of %s finished at %s.\n", o.Consumer, cp.BackfilledAt.Format(time.RFC3339))
						return nil
					}
				}
				if err := sleepCtx(c.Context, 500*time.Millisecond); err != nil {
					return err
				}
			}
			return fmt.Errorf("backfill of %s not finished after %s: is dtebridge serve running?", o.Consumer, o.Wait)
		},
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

type resolveOptions struct {
	Action, Actor, Reason, Format string
	Wait                          time.Duration
}

func quarantineCommand(g *globals) *cli.Command {
	var all bool
	var format string
	var ro resolveOptions
	return &cli.Command{
		Name:  "quarantine",
		Usage: "inspect, retry and resolve legacy changes the bridge could not translate or deliver",
		Subcommands: []*cli.Command{{
			Name:   "list",
			Usage:  "list quarantined changes with their reason and raw row",
			Flags:  []cli.Flag{&cli.BoolFlag{Name: "all", Usage: "include delivered entries", Destination: &all}, formatFlag(&format)},
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
				entries, err := cfg.Store(pool).ListQuarantine(c.Context, all)
				if err != nil {
					return err
				}
				if format == "json" {
					return writeJSON(g.Stdout, entries)
				}
				if len(entries) == 0 {
					fmt.Fprintln(g.Stdout, "Quarantine is empty.")
					return nil
				}
				tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "EVENT\tREPORT\tSTATUS\tREASON\tDETAIL\tSINCE")
				for _, e := range entries {
					key := "-"
					if e.Key != nil {
						key = e.Key.String()
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.EventID, key, e.Status(), e.Reason, e.Detail, e.QuarantinedAt.Format(time.RFC3339))
				}
				return tw.Flush()
			},
		}, {
			Name:      "resolve",
			Usage:     "resolve a quarantined change: skip it, or resync its report from legacy (recorded with actor and reason)",
			ArgsUsage: "EVENT_ID",
			Description: "skip drops the change and releases the report's changes held behind it that now translate.\n" +
				"resync drops every pending change of the report and re-drives the report from its legacy rows as\n" +
				"they stand (served by the running dtebridge serve). Use resync where a change can never be\n" +
				"delivered (too_large, a value the mapping will never know).",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "action", Usage: "skip or resync", Required: true, Destination: &ro.Action},
				&cli.StringFlag{Name: "actor", Usage: "who resolves it (recorded)", Required: true, Destination: &ro.Actor},
				&cli.StringFlag{Name: "reason", Usage: "why (recorded)", Required: true, Destination: &ro.Reason},
				&cli.DurationFlag{Name: "wait", Usage: "with resync: wait this long for the shadow to apply the re-drive", Value: 30 * time.Second, Destination: &ro.Wait},
				formatFlag(&ro.Format),
			},
			Action: func(c *cli.Context) error {
				if err := checkFormat(ro.Format); err != nil {
					return err
				}
				if c.Args().Len() != 1 {
					return usagef("quarantine resolve takes one EVENT_ID (see dtebridge quarantine list)")
				}
				if ro.Action != store.ResolveSkip && ro.Action != store.ResolveResync {
					return usagef("invalid --action %q: use skip or resync", ro.Action)
				}
				cfg, pool, err := g.open(c.Context)
				if err != nil {
					return err
				}
				defer pool.Close()
				tr, err := translatorFor(cfg)
				if err != nil {
					return err
				}
				res, err := adapter.ResolveQuarantine(c.Context, cfg.Store(pool), tr, c.Args().First(), ro.Action, ro.Actor, ro.Reason, ro.Wait)
				if errors.Is(err, store.ErrNoSuchEntry) {
					return usagef("%v (see dtebridge quarantine list)", err)
				}
				if err != nil {
					return err
				}
				if ro.Format == "json" {
					return writeJSON(g.Stdout, res)
				}
				fmt.Fprintf(g.Stdout, "Resolved %d quarantined changes (%s).\n", len(res.Resolved), ro.Action)
				if res.Retry != nil {
					fmt.Fprintf(g.Stdout, "Released %d changes held behind it.\n", res.Retry.Released)
				}
				switch {
				case res.Redrive != nil && len(res.Redrive.Applied) > 0:
					fmt.Fprintln(g.Stdout, "The report was re-driven from legacy.")
				case ro.Action == store.ResolveResync && res.Redrive == nil:
					fmt.Fprintln(g.Stdout, "No dtebridge serve is running: the report is re-driven from legacy when one starts.")
				case res.Redrive != nil:
					for k, why := range res.Redrive.Failed {
						fmt.Fprintf(g.Stdout, "Not re-driven: %s: %s\n", k, why)
					}
					if len(res.Redrive.Pending) > 0 {
						fmt.Fprintln(g.Stdout, "The running bridge is still re-driving the report.")
					}
				}
				return nil
			},
		}, {
			Name:  "retry",
			Usage: "re-translate pending entries with the current --config mapping; the running bridge delivers what now translates",
			Description: "Per report, entries are released in order up to the first that still fails, so a report's\n" +
				"changes are never delivered out of order. Extend legacy.phases/states/statuses first.",
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
				tr, err := translatorFor(cfg)
				if err != nil {
					return err
				}
				res, err := adapter.RetryQuarantine(c.Context, cfg.Store(pool), tr)
				if err != nil {
					return err
				}
				if format == "json" {
					return writeJSON(g.Stdout, res)
				}
				fmt.Fprintf(g.Stdout, "Released %d changes for delivery.\n", res.Released)
				for reason, n := range res.Remaining {
					fmt.Fprintf(g.Stdout, "Still quarantined: %d (%s)\n", n, reason)
				}
				return nil
			},
		}},
	}
}

type tailOptions struct {
	Consumer string
	Keep     bool
}

func captureCommand(g *globals) *cli.Command {
	var o tailOptions
	return &cli.Command{
		Name:  "capture",
		Usage: "watch the change stream",
		Subcommands: []*cli.Command{{
			Name:  "tail",
			Usage: "print translated legacy changes as JSON lines until Ctrl-C; read-only toward the bridge",
			Description: "Runs its own capture reader, starting with a backfill of every row. It changes nothing of the\n" +
				"bridge's: no checkpoint (unless --keep), no quarantine, no leader lock, so a tail that is killed\n" +
				"leaves nothing behind. A change the mapping cannot translate is printed as {\"rejected\": ...} with\n" +
				"its reason and raw row. With --keep it resumes under --consumer; such a checkpoint holds back\n" +
				"pruning until it has not been renewed for capture.consumer_lease.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "consumer", Usage: "with --keep: the checkpoint to resume under", Value: "tail", Destination: &o.Consumer},
				&cli.BoolFlag{Name: "keep", Usage: "keep a checkpoint, to resume where this tail stops", Destination: &o.Keep},
			},
			Before: noArgs,
			Action: func(c *cli.Context) error {
				if o.Consumer == store.MirrorConsumer {
					return usagef("--consumer mirror belongs to dtebridge serve; tail under another name")
				}
				cfg, pool, err := g.open(c.Context)
				if err != nil {
					return err
				}
				defer pool.Close()
				tr, err := translatorFor(cfg)
				if err != nil {
					return err
				}
				rc := cfg.ReaderConfig()
				rc.Consumer, rc.Logger, rc.Ephemeral = o.Consumer, g.Logger, !o.Keep
				enc := json.NewEncoder(g.Stdout)
				err = adapter.NewReader(cfg.Store(pool), tr, rc).Run(c.Context, adapter.ConsumerFunc(func(_ context.Context, b adapter.Batch) error {
					for i := range b.Changes {
						if err := enc.Encode(&b.Changes[i]); err != nil {
							return err
						}
					}
					for i := range b.Rejected {
						if err := enc.Encode(tailRejectedJSON{Rejected: &b.Rejected[i]}); err != nil {
							return err
						}
					}
					return nil
				}))
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			},
		}},
	}
}

func statusCommand(g *globals) *cli.Command {
	var format string
	return &cli.Command{
		Name:   "status",
		Usage:  "print the bridge's state: capture checkpoints, backlog and quarantine",
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
			st, err := captureStatus(c.Context, pool, cfg)
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(g.Stdout, st)
			}
			tw := tabwriter.NewWriter(g.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintf(g.Stdout, "Change table: %d changes; quarantine: %d pending.\n", st.Changes, st.QuarantinePending)
			fmt.Fprintln(g.Stdout, st.Capture.line()+"\n")
			defer func() {
				if st.LastReconcile == nil {
					fmt.Fprintln(g.Stdout, "\nNo reconcile run recorded yet (dtebridge reconcile, or serve --reconcile-every).")
					return
				}
				lr := st.LastReconcile
				fmt.Fprintf(g.Stdout, "\nLast reconcile: run %d (%s) at %s, %d keys, consistency %.2f%%, %d unexpected divergences (%d new, %d resolved).\n",
					lr.RunID, cmp.Or(lr.Kind, "full"), lr.FinishedAt.Format(time.RFC3339), lr.Compared, lr.Consistency*100, lr.Unexpected, lr.New, lr.Resolved)
				fmt.Fprintln(tw, "PHASE\tCOMPARED\tCONSISTENCY\tIN FLIGHT")
				for _, p := range lr.Phases {
					fmt.Fprintf(tw, "%s\t%d\t%.2f%%\t%d\n", p.Phase, p.Compared, p.Consistency*100, p.InFlight)
				}
				tw.Flush()
			}()
			fmt.Fprintln(tw, "CONSUMER\tLEADER\tBACKLOG\tOLDEST\tBACKFILLED\tUPDATED")
			for _, cp := range st.Consumers {
				if cp.Expired {
					cp.Consumer += " (expired: no longer holds back pruning)"
				}
				bf := "never"
				if cp.BackfilledAt != nil {
					bf = cp.BackfilledAt.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", cp.Consumer, cp.Leader, cp.Backlog, time.Duration(cp.BacklogAgeSeconds*float64(time.Second)).Round(time.Millisecond),
					bf, cp.UpdatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
}

// statusReport is the output of dtebridge status.
type statusReport struct {
	Capture           captureModeStatus     `json:"capture"`
	Changes           int64                 `json:"changes"`
	QuarantinePending int                   `json:"quarantine_pending"`
	Consumers         []consumerStatusLine  `json:"consumers"`
	LastReconcile     *reconcile.RunSummary `json:"last_reconcile,omitempty"`
}

// captureModeStatus is how changes are captured, and under log-based
// capture the replication slot's state.
type captureModeStatus struct {
	Mode    string `json:"mode"`
	Trigger string `json:"trigger,omitempty"`
	// Slot is the replication slot (logical mode).
	Slot *adapter.SlotStatus `json:"slot,omitempty"`
	// LoggedLSN is how far the change log holds the slot's transactions.
	LoggedLSN string `json:"logged_lsn,omitempty"`
}

func (c captureModeStatus) line() string {
	if c.Slot == nil {
		return "Capture: trigger (" + c.Trigger + " level)."
	}
	s := c.Slot
	if !s.Exists {
		return fmt.Sprintf("Capture: logical; replication slot %s does not exist yet (serve creates it, with a backfill from its snapshot).", s.Slot)
	}
	active := "no reader: is serve running?"
	if s.Active {
		active = "read by the capture leader"
	}
	line := fmt.Sprintf("Capture: logical; slot %s %s, retains %s of WAL, %s behind; change log at %s.",
		s.Slot, active, bytesText(s.RetainedBytes), bytesText(s.FlushLagBytes), cmp.Or(c.LoggedLSN, "(nothing yet)"))
	if s.WALStatus == "lost" {
		line += "\nThe slot has lost WAL it needed (max_slot_wal_keep_size): drop it and restart serve for a new slot and a backfill (README, for DBAs)."
	}
	return line
}

// bytesText renders a byte count for people.
func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

type consumerStatusLine struct {
	store.CheckpointStatus
	Backlog           int64   `json:"backlog"`
	BacklogAgeSeconds float64 `json:"backlog_age_seconds"`
}

func captureStatus(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) (*statusReport, error) {
	st := cfg.Store(pool)
	cps, err := st.Checkpoints(ctx, time.Duration(cfg.Capture.ConsumerLease))
	if err != nil {
		return nil, err
	}
	out := &statusReport{Consumers: []consumerStatusLine{}, Capture: captureModeStatus{Mode: cfg.Capture.Mode}}
	if lc := cfg.Logical(); lc != nil {
		slot, err := lc.SlotName(ctx, pool, cfg.Capture.Schema)
		if err != nil {
			return nil, err
		}
		ss, err := adapter.Slot(ctx, pool, slot)
		if err != nil {
			return nil, err
		}
		out.Capture.Slot = &ss
		if out.Capture.LoggedLSN, _, err = st.LoggedPosition(ctx, slot); err != nil {
			return nil, err
		}
	} else {
		out.Capture.Trigger = cfg.Capture.Trigger
	}
	for _, cp := range cps {
		b, err := st.BacklogOf(ctx, cp.Consumer)
		if err != nil {
			return nil, err
		}
		out.Consumers = append(out.Consumers, consumerStatusLine{CheckpointStatus: cp, Backlog: b.Changes, BacklogAgeSeconds: b.Age.Seconds()})
	}
	q, err := st.ListQuarantine(ctx, false)
	if err != nil {
		return nil, err
	}
	out.QuarantinePending = len(q)
	if out.Changes, err = st.ChangeCount(ctx); err != nil {
		return nil, err
	}
	runs, err := reconcile.Runs(ctx, st, 1)
	if err != nil {
		return nil, err
	}
	if len(runs) > 0 {
		out.LastReconcile = &runs[0]
	}
	return out, nil
}
