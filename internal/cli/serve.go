package cli

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	sdklog "go.temporal.io/sdk/log"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/shadow"
)

// temporalLogger carries the Temporal SDK's own log lines into ours.
func (g *globals) temporalLogger() sdklog.Logger {
	return sdklog.NewStructuredLogger(g.SDKLogger.With("component", "temporal"))
}

type serveOptions struct {
	Listen          string
	ReconcileEvery  time.Duration
	FullEvery       time.Duration
	CreateNamespace bool
}

func serveCommand(g *globals) *cli.Command {
	var o serveOptions
	return &cli.Command{
		Name:  "serve",
		Usage: "run the bridge: capture reader, mirror into Temporal, shadow worker, and HTTP (health, metrics, API)",
		Description: "Run two or more for availability: one leads capture (by advisory lock), the others wait as hot\n" +
			"standbys, and every one runs shadow workers. HTTP binds to loopback unless --listen or http.listen says otherwise.\n" +
			"SIGHUP (or POST /api/v1/reload with the token) reloads the mapping, the expected rules, reconcile's settings and\n" +
			"the gate from the config file, validated and checked first; on any error the running configuration stays.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "HTTP address (- disables)", DefaultText: "http.listen, else 127.0.0.1:8080", Destination: &o.Listen},
			&cli.DurationFlag{Name: "reconcile-every", Usage: "run a recorded reconcile this often on the capture leader (0: never); incremental but every --full-every", Destination: &o.ReconcileEvery},
			&cli.BoolFlag{Name: "temporal-create-namespace", Usage: "create the Temporal namespace (retention: temporal.retention, else 72h) if it does not exist; for self-hosted clusters", Destination: &o.CreateNamespace},
			&cli.DurationFlag{Name: "full-every", Usage: "how often a scheduled reconcile compares every report, not only those written since the last run (negative: always)", Value: serve.DefaultFullEvery, Destination: &o.FullEvery},
		},
		Before: noArgs,
		Action: func(c *cli.Context) error {
			cfg, pool, err := g.open(c.Context)
			if err != nil {
				return err
			}
			defer pool.Close()
			tc, err := g.dialTemporal(c.Context, cfg, "")
			if err != nil {
				return err
			}
			defer tc.Close()
			if o.CreateNamespace {
				retention := cmp.Or(time.Duration(cfg.Temporal.Retention), config.DefaultNamespaceRetention)
				began := time.Now()
				created, err := shadow.EnsureNamespace(c.Context, tc, g.TemporalNamespace, retention)
				if err != nil {
					return err
				}
				if created {
					g.Logger.Info("created the Temporal namespace", "namespace", g.TemporalNamespace, "retention", retention,
						"usable_after", time.Since(began).Round(time.Millisecond))
				}
			}
			srv, err := serve.Start(c.Context, serve.Options{Config: cfg, Pool: pool, Temporal: tc, Namespace: g.TemporalNamespace,
				TemporalLogger: g.temporalLogger(),
				Listen:         o.Listen, ReconcileEvery: o.ReconcileEvery, FullEvery: o.FullEvery, Logger: g.Logger})
			if err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "dtebridge serving %s; HTTP on %s. Ctrl-C stops; SIGHUP reloads the configuration.\n", srv.Definition().Key(), cmp.Or(srv.Addr(), "(off)"))
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			for {
				select {
				case <-c.Context.Done():
				case <-srv.Done():
				case <-hup:
					// Reload logs and counts its outcome; a refused one
					// keeps the running configuration.
					_ = srv.Reload(c.Context)
					continue
				}
				break
			}
			srv.Stop()
			return srv.Err()
		},
	}
}

func definitionsCommand(g *globals) *cli.Command {
	var format, which string
	load := func(files []string) ([]*dtetype.Definition, *dtetype.Definition, error) {
		if len(files) > 0 {
			defs, err := shadow.LoadDefinitions(files...)
			if err != nil {
				return nil, nil, err
			}
			sel, err := config.Select(defs, which)
			if which == "" && len(defs) > 1 {
				sel, err = nil, nil
			}
			return defs, sel, err
		}
		if g.ConfigPath == "" {
			// No configuration and no files: the shipped definitions.
			defs, err := shadow.LoadDefinitions(shadow.BuiltinDefinitionFiles()...)
			if err != nil {
				return nil, nil, err
			}
			sel, err := config.Select(defs, which)
			if which == "" {
				sel, err = nil, nil
			}
			return defs, sel, err
		}
		cfg, err := g.loadConfig()
		if err != nil {
			return nil, nil, err
		}
		defs, sel, err := cfg.LoadDefinitions()
		if err == nil && which != "" {
			sel, err = config.Select(defs, which)
		}
		return defs, sel, err
	}
	return &cli.Command{
		Name:  "definitions",
		Usage: "validate, draw and compare workflow definitions",
		Subcommands: []*cli.Command{{
			Name:      "validate",
			Usage:     "check definition files; every problem is reported as file:line",
			ArgsUsage: "FILE...",
			Action: func(c *cli.Context) error {
				if c.Args().Len() == 0 {
					return usagef("definitions validate takes one or more FILE")
				}
				bad := 0
				for _, f := range c.Args().Slice() {
					defs, err := shadow.LoadDefinitions(f)
					var de *shadow.DefinitionError
					switch {
					case errors.As(err, &de):
						for _, p := range de.Problems {
							fmt.Fprintln(g.Stderr, p)
						}
						bad += len(de.Problems)
					case err != nil:
						return err
					default:
						if g.ConfigPath != "" {
							// With a configuration, the attributes the when
							// conditions test must be configured.
							cfg, err := g.loadConfig()
							if err != nil {
								return err
							}
							missing := 0
							for _, d := range defs {
								if err := cfg.CheckAttributes(d); err != nil {
									fmt.Fprintf(g.Stderr, "%s: %v\n", f, err)
									missing++
								}
							}
							if bad += missing; missing > 0 {
								continue
							}
						}
						var ids []string
						for _, d := range defs {
							ids = append(ids, d.Key())
						}
						fmt.Fprintf(g.Stdout, "%s: ok (%s)\n", f, strings.Join(ids, ", "))
					}
				}
				if bad > 0 {
					return fmt.Errorf("%d problems found", bad)
				}
				return nil
			},
		}, {
			Name:      "show",
			Usage:     "draw a definition as a table, or as Mermaid, DOT or JSON",
			ArgsUsage: "[FILE...] (default: the config's definitions)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "format", Usage: "text, mermaid, dot or json", Value: "text", Destination: &format},
				&cli.StringFlag{Name: "definition", Usage: "id or id@version to show", DefaultText: "all", Destination: &which},
			},
			Action: func(c *cli.Context) error {
				defs, sel, err := load(c.Args().Slice())
				if err != nil {
					return err
				}
				if which != "" {
					defs = []*dtetype.Definition{sel}
				}
				for i, d := range defs {
					if i > 0 {
						fmt.Fprintln(g.Stdout)
					}
					switch format {
					case "text":
						err = shadow.WriteText(g.Stdout, d)
					case "mermaid":
						err = shadow.WriteMermaid(g.Stdout, d)
					case "dot":
						err = shadow.WriteDOT(g.Stdout, d)
					case "json":
						err = writeJSON(g.Stdout, d)
					default:
						return usagef("invalid --format %q: use text, mermaid, dot or json", format)
					}
					if err != nil {
						return err
					}
				}
				return nil
			},
		}, {
			Name:      "diff",
			Usage:     "list what changed between two definitions",
			ArgsUsage: "A B (files holding one workflow each, or FILE#id)",
			Action: func(c *cli.Context) error {
				if c.Args().Len() != 2 {
					return usagef("definitions diff takes two arguments, A and B")
				}
				var ds [2]*dtetype.Definition
				for i, arg := range c.Args().Slice() {
					file, id, _ := strings.Cut(arg, "#")
					defs, err := shadow.LoadDefinitions(file)
					if err != nil {
						return err
					}
					if ds[i], err = config.Select(defs, id); err != nil {
						return fmt.Errorf("%s: %w (name one with FILE#id)", file, err)
					}
				}
				lines := shadow.Diff(ds[0], ds[1])
				if len(lines) == 0 {
					fmt.Fprintln(g.Stdout, "No differences.")
				}
				for _, l := range lines {
					fmt.Fprintln(g.Stdout, l)
				}
				return nil
			},
		}, definitionsMigrateCommand(g), definitionsMigrationsCommand(g)},
	}
}
