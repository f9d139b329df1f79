package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

var binary string // the dtebridge binary, built once for subprocess tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dtebridge-cli-test-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "dtebridge")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/dtebridge").CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := testenv.Main(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runCLI runs the command line in-process.
func runCLI(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"dtebridge"}, args...), &stdout, &stderr)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// exampleConfig writes the shipped example config of profile to a file and
// returns its path, for commands that need --config.
func exampleConfig(t *testing.T, profile string) string {
	t.Helper()
	b, err := config.ExampleYAML(profile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), profile+".yaml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// oneLine checks that stderr is exactly one line containing all of want.
func (r result) oneLine(t *testing.T, want ...string) {
	t.Helper()
	if strings.Count(r.stderr, "\n") != 1 || !strings.HasSuffix(r.stderr, "\n") {
		t.Errorf("stderr is not one line: %q", r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("stderr %q lacks %q", r.stderr, w)
		}
	}
	if strings.Contains(r.stderr, "goroutine") || strings.Contains(r.stderr, ".go:") {
		t.Errorf("stderr looks like a stack trace: %q", r.stderr)
	}
}

// commandPaths lists every command path of the app, e.g. ["legacy", "init"].
func commandPaths(cmds []*cli.Command, prefix []string) [][]string {
	var out [][]string
	for _, c := range cmds {
		p := append(append([]string{}, prefix...), c.Name)
		out = append(out, p)
		out = append(out, commandPaths(c.Subcommands, p)...)
	}
	return out
}

func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	paths := append([][]string{{}}, commandPaths(App(nil, nil).Commands, nil)...)
	for _, p := range paths {
		t.Run(strings.Join(append([]string{"dtebridge"}, p...), "_"), func(t *testing.T) {
			r := runCLI(t, append(p, "--help")...)
			if r.code != 0 || !strings.Contains(r.stdout, "USAGE:") || r.stderr != "" {
				t.Errorf("--help: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r := runCLI(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "dtebridge ") {
		t.Errorf("version: exit %d, %q", r.code, r.stdout)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"UnknownFlag", []string{"legacy", "simulate", "--bogus"}, []string{"flag provided but not defined: -bogus", "dtebridge legacy simulate --help"}},
		{"UnknownGlobalFlag", []string{"--bogus", "version"}, []string{"flag provided but not defined: -bogus"}},
		{"BadDuration", []string{"legacy", "simulate", "--duration", "soon"}, []string{"invalid value \"soon\" for flag -duration"}},
		{"UnknownCommand", []string{"frobnicate"}, []string{"frobnicate"}},
		{"UnknownProfile", []string{"--database-url", "postgres://x@127.0.0.1:1/x", "legacy", "init", "--profile", "staging"}, []string{`unknown legacy profile "staging"`, "seed, production"}},
		{"NoDatabase", []string{"legacy", "init"}, []string{"no database given", "--database-url", "DTEBRIDGE_DATABASE_URL"}},
		{"StrayArgument", []string{"legacy", "init", "extra"}, []string{`unexpected argument "extra"`}},
		{"RateZeroNeedsOps", []string{"legacy", "simulate", "--rate", "0"}, []string{"needs --ops"}},
		{"BadLogFormat", []string{"--log-format", "xml", "version"}, []string{`invalid --log-format "xml"`}},
		{"BadFormat", []string{"legacy", "simulate", "--format", "yaml"}, []string{`invalid --format "yaml"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, tc.args...)
			if r.code == 0 {
				t.Fatalf("exit 0 for %v", tc.args)
			}
			r.oneLine(t, tc.want...)
		})
	}
}

func TestUnreachableDatabase(t *testing.T) {
	t.Parallel()
	for _, url := range []string{
		"postgres://bridge:s3cret-pw@127.0.0.1:1/legacy?sslmode=disable",
		"host=127.0.0.1 port=1 user=bridge password=s3cret-pw dbname=legacy sslmode=disable",
	} {
		r := runCLI(t, "--database-url", url, "legacy", "init")
		if r.code != 1 {
			t.Errorf("exit %d, want 1", r.code)
		}
		r.oneLine(t, "error connecting to", "check --database-url")
		if strings.Contains(r.stderr, "s3cret-pw") {
			t.Errorf("password printed: %q", r.stderr)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"postgres://u:pw@h:5432/db":                                           "postgres://u:xxxxx@h:5432/db",
		"error connecting to postgres://u:p@ss@h/db":                          "error connecting to postgres://u:xxxxx@h/db",
		"postgres://u@h/db":                                                   "postgres://u@h/db",
		"host=h password=secret user=u":                                       "host=h password=xxxxx user=u",
		"host=h password='a b' user=u":                                        "host=h password=xxxxx user=u",
		"invalid --database-url postgres://dtebridge:Pw/SlAsH@db:5432/x: bad": "invalid --database-url postgres://dtebridge:xxxxx@db:5432/x: bad",
		"postgresql://dtebridge:a@b/c@db/x":                                   "postgresql://dtebridge:xxxxx@db/x",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLegacyInitAndSimulate(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDB(t)
			if r := runCLI(t, "--database-url", db.URL, "legacy", "init", "--profile", p.Name); r.code != 0 {
				t.Fatalf("init: exit %d: %s", r.code, r.stderr)
			}
			r := runCLI(t, "--database-url", db.URL, "legacy", "init", "--profile", p.Name)
			if r.code != 1 {
				t.Errorf("second init: exit %d, want 1", r.code)
			}
			r.oneLine(t, "already present")

			r = runCLI(t, "--database-url", db.URL, "legacy", "simulate", "--profile", p.Name,
				"--reports", "20", "--rate", "0", "--ops", "300", "--format", "json")
			if r.code != 0 {
				t.Fatalf("simulate: exit %d: %s", r.code, r.stderr)
			}
			validateOutput(t, "legacy-simulate", r.stdout)
			var s legacysim.Summary
			if err := json.Unmarshal([]byte(r.stdout), &s); err != nil {
				t.Fatalf("simulate --format json printed %q: %v", r.stdout, err)
			}
			var rows int64
			if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM workflow_phases`).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			var summed int64
			for _, byState := range s.Rows {
				for _, n := range byState {
					summed += n
				}
			}
			if s.Reports != 20 || summed != rows {
				t.Errorf("summary: %d reports, %d rows; database has %d rows", s.Reports, summed, rows)
			}

			r = runCLI(t, "--database-url", db.URL, "legacy", "simulate", "--profile", p.Name, "--reports", "5", "--rate", "0", "--ops", "50")
			if r.code != 0 || !strings.Contains(r.stdout, "operation") || !strings.Contains(r.stdout, "Planning") {
				t.Errorf("text summary: exit %d, %q", r.code, r.stdout)
			}
		})
	}
}

// TestReadmeCLIReference keeps the README's command table true: every
// command it names exists, every flag it shows is one of that command's
// flags (or a global one), and every command of the app is in the table.
func TestReadmeCLIReference(t *testing.T) {
	raw, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	app := App(io.Discard, io.Discard)
	global := map[string]bool{}
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			global[n] = true
		}
	}
	find := func(path []string) *cli.Command {
		cmds := app.Commands
		var c *cli.Command
		for _, name := range path {
			c = nil
			for _, cand := range cmds {
				if cand.Name == name {
					c = cand
				}
			}
			if c == nil {
				return nil
			}
			cmds = c.Subcommands
		}
		return c
	}
	section := string(raw)
	start := strings.Index(section, "## Command line")
	if start < 0 {
		t.Fatal("README has no Command line section")
	}
	section = section[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	documented := map[string]bool{}
	flagRe := regexp.MustCompile(`--([a-z][a-z0-9-]*)`)
	rows := 0
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `dtebridge ") {
			continue
		}
		rows++
		usage := line[3 : strings.Index(line[3:], "`")+3]
		words := strings.Fields(strings.ReplaceAll(usage, `\|`, "|"))[1:]
		// The command path: words up to the first flag, option or placeholder.
		paths := [][]string{{}}
		for _, w := range words {
			if strings.HasPrefix(w, "-") || strings.HasPrefix(w, "[") || strings.ToUpper(w) == w {
				break
			}
			var next [][]string
			for _, alt := range strings.Split(w, "|") {
				for _, p := range paths {
					next = append(next, append(append([]string{}, p...), alt))
				}
			}
			paths = next
		}
		for _, p := range paths {
			c := find(p)
			if c == nil {
				// Alternatives may be values, as in legacy init --profile seed|production.
				if c = find(p[:len(p)-1]); c == nil || len(p) == 1 || len(c.Subcommands) > 0 {
					t.Errorf("README names %q, which is not a command", strings.Join(p, " "))
					continue
				}
				p = p[:len(p)-1]
			}
			documented[strings.Join(p, " ")] = true
			own := map[string]bool{"help": true}
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					own[n] = true
				}
			}
			help := runCLI(t, append(append([]string{}, p...), "--help")...)
			for _, m := range flagRe.FindAllStringSubmatch(line, -1) {
				if !own[m[1]] && !global[m[1]] {
					t.Errorf("README shows --%s for %q, which has no such flag", m[1], strings.Join(p, " "))
				}
				if own[m[1]] && !strings.Contains(help.stdout, "--"+m[1]) {
					t.Errorf("README shows --%s for %q, but its --help does not", m[1], strings.Join(p, " "))
				}
			}
		}
	}
	if rows == 0 {
		t.Fatal("no command rows found in the README")
	}
	for _, p := range commandPaths(app.Commands, nil) {
		c := find(p)
		if len(c.Subcommands) > 0 || c.Name == "help" {
			continue
		}
		if !documented[strings.Join(p, " ")] {
			t.Errorf("dtebridge %s is missing from the README's command table", strings.Join(p, " "))
		}
	}
	for _, f := range []string{"database-url", "temporal-address", "temporal-namespace", "config", "log-format", "log-level"} {
		if !global[f] || !strings.Contains(section, "`--"+f) {
			t.Errorf("global flag --%s: in the app %v, in the README %v", f, global[f], strings.Contains(section, "`--"+f))
		}
	}
}

// TestHelpIsComplete: every flag of every command says what it is for, and
// no help line states a default twice.
func TestHelpIsComplete(t *testing.T) {
	app := App(io.Discard, io.Discard)
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := strings.TrimSpace(path + " " + c.Name)
			for _, f := range c.Flags {
				if u, ok := f.(interface{ GetUsage() string }); ok && strings.TrimSpace(u.GetUsage()) == "" {
					t.Errorf("dtebridge %s: flag %v has no description", name, f.Names())
				}
			}
			if len(c.Subcommands) > 0 {
				walk(name, c.Subcommands)
				continue
			}
			r := runCLI(t, append(strings.Fields(name), "--help")...)
			for _, line := range strings.Split(r.stdout, "\n") {
				if strings.Count(line, "(default") > 1 {
					t.Errorf("dtebridge %s --help states a default twice: %q", name, line)
				}
			}
		}
	}
	for _, f := range app.Flags {
		if u, ok := f.(interface{ GetUsage() string }); ok && strings.TrimSpace(u.GetUsage()) == "" {
			t.Errorf("global flag %v has no description", f.Names())
		}
	}
	walk("", app.Commands)
}
