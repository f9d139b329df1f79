package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/preflight"
)

// exitCheckFailed is check's exit code when it finds a problem.
const exitCheckFailed = 1

func checkCommand(g *globals) *cli.Command {
	var format string
	var noTemporal bool
	return &cli.Command{
		Name:  "check",
		Usage: "compare the configuration with the live database and Temporal; print every problem with its fix (exit 1 on any error)",
		Description: `Checks the mapping against the labels the database holds (enum labels and the
values rows hold), the configured columns and their types, the key, the
users and attribute tables, the grants what this configuration does needs
(read, attach capture, write back), the token file, and Temporal (reachable,
the namespace, the search attributes). install runs the database checks
first and serve runs them at start: an error refuses to go on.`,
		Flags: []cli.Flag{formatFlag(&format),
			&cli.BoolFlag{Name: "no-temporal", Usage: "skip the Temporal checks", Destination: &noTemporal}},
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
			o := preflight.Options{Config: cfg, Pool: pool}
			var dialErr error
			if !noTemporal {
				tc, err := g.dialTemporal(c.Context, cfg, "")
				if err != nil {
					dialErr = err
				} else {
					defer tc.Close()
					o.Temporal, o.Namespace = tc, g.TemporalNamespace
				}
			}
			rep, err := preflight.Run(c.Context, o)
			if err != nil {
				return err
			}
			if dialErr != nil {
				var ue *usageError
				fix := "start Temporal, or pass --temporal-address (or --no-temporal to check the database only)"
				if errors.As(dialErr, &ue) {
					fix = ue.Error()
				}
				rep.Problems = append(rep.Problems, preflight.Problem{Severity: preflight.Error, Check: "temporal", Setting: "temporal.address",
					Message: dialErr.Error(), Fix: fix})
				rep.Errors++
			}
			if format == "json" {
				if err := writeJSON(g.Stdout, rep); err != nil {
					return err
				}
			} else {
				writeCheck(g.Stdout, rep)
			}
			if !rep.OK() {
				return cli.Exit("", exitCheckFailed)
			}
			return nil
		},
	}
}

func writeCheck(w io.Writer, rep *preflight.Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range rep.Problems {
		setting := p.Setting
		if setting == "" {
			setting = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(p.Severity), p.Check, setting, p.Message)
		fmt.Fprintf(tw, "\t\t\tfix: %s\n", p.Fix)
	}
	tw.Flush()
	if rep.OK() && rep.Warnings == 0 {
		fmt.Fprintf(w, "%s: every check passed.\n", rep.Config)
		return
	}
	fmt.Fprintf(w, "%s: %d errors, %d warnings.\n", rep.Config, rep.Errors, rep.Warnings)
}

// preflightInstall runs the database checks before install changes
// anything, and refuses on an error.
func preflightInstall(ctx context.Context, g *globals, cfg *config.Config, pool *pgxpool.Pool) error {
	rep, err := preflight.Run(ctx, preflight.Options{Config: cfg, Pool: pool, Installing: true})
	if err != nil {
		return err
	}
	if !rep.OK() {
		writeCheck(g.Stderr, rep)
		return fmt.Errorf("install refused: the configuration does not fit this database (%d errors above); nothing was changed", rep.Errors)
	}
	return nil
}
