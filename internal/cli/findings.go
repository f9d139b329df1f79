package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

// checkPhase checks that phase (when set) is one of def's phases.
func checkPhase(def *dtetype.Definition, phase string) error {
	if phase != "" && def.Phase(dtetype.Phase(phase)) == nil {
		return usagef("phase %q is not in %s (phases: %v)", phase, def.Key(), def.PhaseIDs())
	}
	return nil
}

func findingsCommand(g *globals) *cli.Command {
	var phase, format string
	var limit int
	return &cli.Command{
		Name:  "findings",
		Usage: "report how legacy measures against the new rules: findings judged from the legacy history at backfill, and live violations, per phase and rule",
		Description: `Historical findings are judged once per report from the rows the backfill
delivered (dependencies, the recorded actors' roles, phases completed with
no start): the legacy history before the bridge was installed. Live
findings are the changes since that broke a rule (each report's recent
window). Both come from the running shadows' projection.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "phase", Usage: "only this phase (canonical id)", Destination: &phase},
			&cli.StringFlag{Name: "format", Usage: "table, json or markdown", Value: "table", Destination: &format},
			&cli.IntFlag{Name: "limit", Usage: "reports named per rule (0: all)", Value: 10, Destination: &limit},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			if format != "table" && format != "json" && format != "markdown" {
				return usagef("invalid --format %q: use table, json or markdown", format)
			}
			if limit < 0 {
				return usagef("invalid --limit %d: use 0 (all) or more", limit)
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
			r, err := shadow.Findings(c.Context, cfg.Store(pool), def, dtetype.Phase(phase), limit)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				return writeJSON(g.Stdout, r)
			case "markdown":
				return r.WriteMarkdown(g.Stdout)
			}
			return r.WriteTable(g.Stdout)
		},
	}
}
