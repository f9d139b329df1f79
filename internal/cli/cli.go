// Package cli is the dtebridge command line. Each command parses its flags
// into an options struct, validates it, and calls a library package; output
// goes to the writers the App was built with, so tests can read it.
package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"
	"go.temporal.io/sdk/client"
)

// version is set at build time with -ldflags "-X ...cli.version=...".
var version = ""

// Version returns the dtebridge version: the build-time version, else the
// module version, else "dev".
func Version() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// Exit codes: documented in the README (Command line).
const (
	exitError = 1
	exitUsage = 2
	// exitGateRefused: cutover set refused by the promotion gate.
	exitGateRefused = 4
)

// usageError marks a command-line mistake; it exits with code 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

// Main runs the command line with args (os.Args) and returns the exit code.
// Errors are printed as one line on stderr, with secrets redacted; nothing
// prints a stack trace.
func Main(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args, stdout, stderr)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "dtebridge: internal error: %s\n", Redact(fmt.Sprint(r)))
			code = exitError
		}
	}()
	err := App(stdout, stderr).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	// An exit with no message has said everything on stdout already.
	if msg := strings.Join(strings.Fields(Redact(err.Error())), " "); msg != "" {
		fmt.Fprintf(stderr, "dtebridge: %s\n", msg)
	}
	var ue *usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue), strings.HasPrefix(err.Error(), "Required flag"):
		return exitUsage
	case errors.As(err, &ec) && ec.ExitCode() != 0:
		return ec.ExitCode()
	}
	return exitError
}

// globals are the options every command shares.
type globals struct {
	DatabaseURL string
	// Temporal are the Temporal connection flags; TemporalNamespace is the
	// namespace once resolved (dialTemporal sets it).
	Temporal          temporalFlags
	TemporalNamespace string
	ConfigPath        string
	Logger            *slog.Logger
	// SDKLogger is for the Temporal SDK, which is chatty at info: it logs
	// at warn and above unless --log-level is debug.
	SDKLogger      *slog.Logger
	Stdout, Stderr io.Writer
}

// App returns the dtebridge application.
func App(stdout, stderr io.Writer) *cli.App {
	g := &globals{Stdout: stdout, Stderr: stderr}
	app := &cli.App{
		Name:  "dtebridge",
		Usage: "run the legacy SynapseDTE workflow and its Temporal successor side by side, and migrate phase by phase",
		Description: "dtebridge captures every legacy workflow_phases change, mirrors it into shadow workflows on\n" +
			"Temporal, reconciles the two, and moves authority phase by phase. `dtebridge demo` runs it all locally.",
		Version:              Version(),
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main prints errors
		OnUsageError:         onUsageError,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "database-url", Usage: "PostgreSQL URL of the legacy database (the demo starts a local one when unset)", EnvVars: []string{"DTEBRIDGE_DATABASE_URL"}, Destination: &g.DatabaseURL},
			&cli.StringFlag{Name: "config", Usage: "dtebridge configuration file (YAML)", EnvVars: []string{"DTEBRIDGE_CONFIG"}, Destination: &g.ConfigPath},
			&cli.StringFlag{Name: "log-format", Usage: "log format: text or json", Value: "text", EnvVars: []string{"DTEBRIDGE_LOG_FORMAT"}},
			&cli.StringFlag{Name: "log-level", Usage: "log level: debug, info, warn or error", Value: "info", EnvVars: []string{"DTEBRIDGE_LOG_LEVEL"}},
		}, g.Temporal.flags()...),
		Before: func(c *cli.Context) error {
			g.TemporalNamespace = cmp.Or(g.Temporal.Namespace, client.DefaultNamespace)
			logger, err := newLogger(stderr, c.String("log-format"), c.String("log-level"))
			if err != nil {
				return err
			}
			g.Logger, g.SDKLogger = logger, logger
			if c.String("log-level") != "debug" {
				g.SDKLogger, _ = newLogger(stderr, c.String("log-format"), "warn")
			}
			return nil
		},
		Commands: []*cli.Command{
			versionCommand(g),
			legacyCommand(g),
			configCommand(g),
			installCommand(g),
			uninstallCommand(g),
			backfillCommand(g),
			captureCommand(g),
			quarantineCommand(g),
			statusCommand(g),
			serveCommand(g),
			reconcileCommand(g),
			findingsCommand(g),
			checkCommand(g),
			cutoverCommand(g),
			phaseCommand(g),
			definitionsCommand(g),
			demoCommand(g),
		},
	}
	setUsageErrors(app.Commands)
	return app
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usagef("%v (see '%s --help')", err, c.Command.HelpName)
}

func setUsageErrors(cmds []*cli.Command) {
	for _, c := range cmds {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError
		}
		setUsageErrors(c.Subcommands)
	}
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("invalid --log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("invalid --log-format %q: use text or json", format)
}

// noArgs rejects stray positional arguments.
func noArgs(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q (see '%s --help')", c.Args().First(), c.Command.HelpName)
	}
	return nil
}

var (
	// A URL's password runs to the last @ of the word: a raw / or @ in it
	// (which URLs should escape, and people do not) stays hidden.
	urlPassword     = regexp.MustCompile(`(://[^:/@\s]*:)\S*@`)
	keywordPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)
)

// Redact hides passwords in database URLs and keyword/value connection
// strings found anywhere in s.
func Redact(s string) string {
	s = urlPassword.ReplaceAllString(s, "${1}xxxxx@")
	return keywordPassword.ReplaceAllString(s, "${1}xxxxx")
}

// connect opens a pool on url and checks that the database answers.
func connect(ctx context.Context, url string) (*pgxpool.Pool, error) {
	if url == "" {
		return nil, usagef("no database given: pass --database-url or set DTEBRIDGE_DATABASE_URL")
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, usagef("invalid --database-url %s: %v", Redact(url), err)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	// A reconcile run holds three connections at once while serve's other
	// parts keep working: pgxpool's default of four (on two cores) is too
	// few. A pool_max_conns in the URL is kept as given.
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = max(cfg.MaxConns, 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("error connecting to %s: %w", Redact(url), err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("error connecting to %s: %w (check --database-url and that the server is running)", Redact(url), err)
	}
	return pool, nil
}

func versionCommand(g *globals) *cli.Command {
	return &cli.Command{
		Name:   "version",
		Usage:  "print the dtebridge version",
		Before: noArgs,
		Action: func(c *cli.Context) error {
			fmt.Fprintf(g.Stdout, "dtebridge %s (%s, %s/%s)\n", Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
