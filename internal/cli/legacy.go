package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
	"golang.org/x/term"

	"github.com/synapsedte/dtebridge/internal/legacysim"
)

func legacyCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:  "legacy",
		Usage: "create and drive a model of the legacy SynapseDTE database (for tests, demos and rehearsals; never a real one)",
		Subcommands: []*cli.Command{
			legacyInitCommand(g),
			legacySimulateCommand(g),
		},
	}
}

func profileFlag(dest *string) *cli.StringFlag {
	return &cli.StringFlag{Name: "profile", Usage: "legacy label profile: seed (as in the analysis) or production", Value: "seed", Destination: dest}
}

type legacyInitOptions struct {
	Profile string
}

func legacyInitCommand(g *globals) *cli.Command {
	var o legacyInitOptions
	return &cli.Command{
		Name:      "init",
		Usage:     "apply the legacy schema of a label profile to --database-url",
		UsageText: "dtebridge --database-url URL legacy init [--profile seed|production]",
		Flags:     []cli.Flag{profileFlag(&o.Profile)},
		Before:    noArgs,
		Action: func(c *cli.Context) error {
			p, err := legacysim.ProfileByName(o.Profile)
			if err != nil {
				return usagef("%v", err)
			}
			pool, err := connect(c.Context, g.DatabaseURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			if err := legacysim.Init(c.Context, pool, p); err != nil {
				return fmt.Errorf("%w (use an empty database)", err)
			}
			fmt.Fprintf(g.Stdout, "Applied the %s legacy schema.\n", p.Name)
			return nil
		},
	}
}

type simulateOptions struct {
	Profile     string
	Reports     int
	Rate        float64
	Duration    time.Duration
	Ops         int64
	Seed        uint64
	Concurrency int
	Format      string
	NoProgress  bool
}

func (o *simulateOptions) flags() []cli.Flag {
	return []cli.Flag{
		profileFlag(&o.Profile),
		&cli.IntFlag{Name: "reports", Usage: "reports to create", Value: 200, Destination: &o.Reports},
		&cli.Float64Flag{Name: "rate", Usage: "legacy operations per second (0: as fast as possible)", Value: 50, Destination: &o.Rate},
		&cli.DurationFlag{Name: "duration", Usage: "how long to run traffic at --rate", Value: 20 * time.Second, Destination: &o.Duration},
		&cli.Int64Flag{Name: "ops", Usage: "traffic operations in all", DefaultText: "rate × duration", Destination: &o.Ops},
		&cli.Uint64Flag{Name: "seed", Usage: "random seed; with --concurrency 1 a seed always gives the same run", Value: 1, Destination: &o.Seed},
		&cli.IntFlag{Name: "concurrency", Usage: "concurrent legacy writers", Value: 4, Destination: &o.Concurrency},
		&cli.StringFlag{Name: "format", Usage: "summary format: text or json", Value: "text", Destination: &o.Format},
		&cli.BoolFlag{Name: "no-progress", Usage: "do not draw a progress bar, even on a terminal", Destination: &o.NoProgress},
	}
}

func (o *simulateOptions) validate() (*legacysim.Profile, error) {
	p, err := legacysim.ProfileByName(o.Profile)
	if err != nil {
		return nil, usagef("%v", err)
	}
	switch {
	case o.Reports < 1:
		return nil, usagef("--reports must be at least 1, got %d", o.Reports)
	case o.Rate < 0:
		return nil, usagef("--rate must not be negative, got %g", o.Rate)
	case o.Duration <= 0 && o.Ops == 0:
		return nil, usagef("--duration must be positive, got %s", o.Duration)
	case o.Rate == 0 && o.Ops == 0:
		return nil, usagef("--rate 0 runs as fast as possible, so it needs --ops to know when to stop")
	case o.Ops < 0:
		return nil, usagef("--ops must not be negative, got %d", o.Ops)
	case o.Concurrency < 1:
		return nil, usagef("--concurrency must be at least 1, got %d", o.Concurrency)
	case o.Format != "text" && o.Format != "json":
		return nil, usagef("invalid --format %q: use text or json", o.Format)
	}
	return p, nil
}

func (o *simulateOptions) config(p *legacysim.Profile, progress func(done, total int64)) *legacysim.SimConfig {
	return &legacysim.SimConfig{Profile: p, Reports: o.Reports, Rate: o.Rate, Duration: o.Duration, Ops: o.Ops,
		Seed: o.Seed, Concurrency: o.Concurrency, Progress: progress}
}

func legacySimulateCommand(g *globals) *cli.Command {
	var o simulateOptions
	return &cli.Command{
		Name:  "simulate",
		Usage: "drive realistic legacy traffic through the model of the legacy application",
		UsageText: "dtebridge --database-url URL legacy simulate [--profile seed|production] [--reports N] [--rate R]\n" +
			"   [--duration D] [--ops N] [--seed S] [--concurrency C] [--format text|json]",
		Description: "Creates --reports reports and runs rate × duration operations on them: mostly forward\n" +
			"progress, and also out-of-order starts, overrides, the four reopen forms, status-only completes,\n" +
			"gate refusals, duplicate rows (production profile) and bulk transactions. The database must hold\n" +
			"the profile's schema (dtebridge legacy init).",
		Flags:  o.flags(),
		Before: noArgs,
		Action: func(c *cli.Context) error {
			p, err := o.validate()
			if err != nil {
				return err
			}
			pool, err := connect(c.Context, g.DatabaseURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			bar := newProgress(g.Stderr, !o.NoProgress, "simulating", "operations")
			s, err := legacysim.Simulate(c.Context, pool, o.config(p, bar.update))
			bar.finish()
			if err != nil {
				return err
			}
			return writeSummary(g.Stdout, o.Format, s, p)
		},
	}
}

func writeSummary(w io.Writer, format string, s *legacysim.Summary, p *legacysim.Profile) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	return s.WriteText(w, p)
}

// progress shows a long run's progress on w: a bar on a terminal, else a
// plain line every few seconds (so a log shows the run is alive).
type progress struct {
	bar *progressbar.ProgressBar
	// plain, when set, is the writer of the plain lines.
	plain      io.Writer
	desc, unit string
	last       time.Time
}

// plainEvery is how often a run not on a terminal says how far it got.
const plainEvery = 5 * time.Second

func newProgress(w io.Writer, enabled bool, desc, unit string) *progress {
	if !enabled {
		return &progress{}
	}
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{plain: w, desc: desc, unit: unit, last: time.Now()}
	}
	return &progress{bar: progressbar.NewOptions64(-1,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)}
}

func (p *progress) update(done, total int64) {
	if p.plain != nil {
		if time.Since(p.last) >= plainEvery {
			p.last = time.Now()
			if total > 0 {
				fmt.Fprintf(p.plain, "%s: %d of %d %s (%.0f%%)\n", p.desc, done, total, p.unit, float64(done)*100/float64(total))
			} else {
				fmt.Fprintf(p.plain, "%s: %d %s\n", p.desc, done, p.unit)
			}
		}
		return
	}
	if p.bar == nil {
		return
	}
	if p.bar.GetMax64() != total {
		p.bar.ChangeMax64(total)
	}
	_ = p.bar.Set64(done)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
