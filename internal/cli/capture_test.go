package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/synapsedte/dtebridge/internal/testenv"
)

func TestConfigExampleValidates(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"seed", "production"} {
		r := runCLI(t, "config", "example", "--profile", p)
		if r.code != 0 || !strings.Contains(r.stdout, "legacy:") {
			t.Fatalf("config example: exit %d, %q", r.code, r.stderr)
		}
		path := filepath.Join(t.TempDir(), p+".yaml")
		if err := os.WriteFile(path, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		if r := runCLI(t, "config", "validate", path); r.code != 0 {
			t.Errorf("validate %s: exit %d: %s", p, r.code, r.stderr)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("legacy:\n  phases: {A: a}\n  states: {B: done}\n  statuses: {C: late}\n"), 0o644)
	r := runCLI(t, "config", "validate", bad)
	if r.code != 1 {
		t.Errorf("validate bad config: exit %d", r.code)
	}
	r.oneLine(t, "bad.yaml", `"B" maps to "done"`)
	r = runCLI(t, "--config", filepath.Join(t.TempDir(), "missing.yaml"), "quarantine", "retry")
	r.oneLine(t, "error reading config", "missing.yaml")
}

func TestInstallStatusUninstall(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if r := runCLI(t, "--database-url", db.URL, "legacy", "init"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	// Without a configuration the bridge cannot know the legacy table or its
	// own schema: every command that touches the database refuses.
	for _, args := range [][]string{{"install"}, {"uninstall", "--yes"}, {"backfill"}, {"status"}, {"quarantine", "retry"}, {"reconcile"},
		{"cutover", "set", "--phase", "planning", "--mode", "shadow", "--actor", "a", "--reason", "r"}} {
		r := runCLI(t, append([]string{"--database-url", db.URL}, args...)...)
		if r.code != 2 {
			t.Errorf("%v without --config: exit %d, want 2", args, r.code)
		}
		r.oneLine(t, "no configuration: pass --config FILE")
	}
	u := []string{"--database-url", db.URL, "--config", exampleConfig(t, "seed")}
	r := runCLI(t, append(u, "install", "--dry-run")...)
	if r.code != 0 || !strings.Contains(r.stdout, "CREATE TABLE \"dtebridge\".changes") || !strings.Contains(r.stdout, "CREATE TRIGGER") {
		t.Fatalf("install --dry-run: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'dtebridge'`).Scan(&n)
	if n != 0 {
		t.Fatal("install --dry-run created the schema")
	}
	versions := regexp.MustCompile(`Installed: schema dtebridge at version (\d+) \(was (\d+)\)`)
	r = runCLI(t, append(u, "install")...)
	m := versions.FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil || m[2] != "0" || m[1] == "0" {
		t.Fatalf("install: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(u, "install")...)
	if m2 := versions.FindStringSubmatch(r.stdout); r.code != 0 || m2 == nil || m2[1] != m[1] || m2[2] != m[1] {
		t.Fatalf("second install: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(u, "status", "--format", "json")...)
	validateOutput(t, "status", r.stdout)
	var st statusReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("status: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(u, "quarantine", "list", "--format", "json")...)
	validateOutput(t, "quarantine-list", r.stdout)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("quarantine list: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, append(u, "backfill")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Backfill requested for mirror") {
		t.Errorf("backfill: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(u, "uninstall")...)
	if r.code != 2 {
		t.Errorf("uninstall without --yes: exit %d, want 2", r.code)
	}
	r.oneLine(t, "pass --yes")
	r = runCLI(t, append(u, "uninstall", "--yes")...)
	if r.code != 0 {
		t.Fatalf("uninstall: exit %d: %s", r.code, r.stderr)
	}
	r = runCLI(t, append(u, "status")...)
	if r.code != 1 {
		t.Errorf("status after uninstall: exit %d", r.code)
	}
	r.oneLine(t, "run dtebridge install")
}

func TestDefinitionsCommands(t *testing.T) {
	t.Parallel()
	std := "../../shadow/definitions/standard_dt_testing.yaml"
	prod := "../../shadow/definitions/production_dt_testing.yaml"
	r := runCLI(t, "definitions", "validate", std, prod)
	if r.code != 0 || !strings.Contains(r.stdout, "standard_dt_testing@1.0") || !strings.Contains(r.stdout, "production_dt_testing@1.0") {
		t.Errorf("validate: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("roles: {Tester: []}\nworkflows:\n  w:\n    version: \"1\"\n    phases:\n      - {id: a, roles: [Auditor]}\n      - {id: b, depends_on: [zz]}\n"), 0o644)
	r = runCLI(t, "definitions", "validate", bad)
	if r.code != 1 || !strings.Contains(r.stderr, bad+`:6: unknown role "Auditor"`) || !strings.Contains(r.stderr, bad+`:7: unknown dependency "zz"`) {
		t.Errorf("validate bad: exit %d, stderr %q", r.code, r.stderr)
	}
	for format, want := range map[string]string{"text": "parallel in parallel_phases", "mermaid": "flowchart TD", "dot": "digraph", "json": `"status_policy": "legacy"`} {
		r = runCLI(t, "definitions", "show", "--format", format)
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("show --format %s: exit %d, lacks %q: %s", format, r.code, want, r.stderr)
		}
	}
	validateOutput(t, "definition", runCLI(t, "definitions", "show", "--format", "json", "--definition", "production_dt_testing").stdout)
	r = runCLI(t, "definitions", "diff", std, prod)
	if r.code != 0 || !strings.Contains(r.stdout, "+ phase finalize_test_report added") {
		t.Errorf("diff: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, "definitions", "diff", std, std)
	if r.code != 0 || !strings.Contains(r.stdout, "No differences") {
		t.Errorf("diff with itself: %q", r.stdout)
	}
}

func TestServeNeedsTemporal(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	r := runCLI(t, "config", "example")
	os.WriteFile(cfg, []byte(r.stdout), 0o644)
	r = runCLI(t, "--database-url", db.URL, "--config", cfg, "serve")
	if r.code != 2 {
		t.Errorf("serve without Temporal: exit %d", r.code)
	}
	r.oneLine(t, "--temporal-address")
}

// TestCheckAndInstallRefuse: dtebridge check names what does not fit and
// exits 1; install refuses the same and changes nothing; the matching
// configuration passes both.
func TestCheckAndInstallRefuse(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if r := runCLI(t, "--database-url", db.URL, "legacy", "init"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	if r := runCLI(t, "--database-url", db.URL, "legacy", "simulate", "--reports", "3", "--rate", "0", "--ops", "30"); r.code != 0 {
		t.Fatal(r.stderr)
	}
	wrong := []string{"--database-url", db.URL, "--config", exampleConfig(t, "production")}
	r := runCLI(t, append(wrong, "check", "--no-temporal")...)
	if r.code != 1 || !strings.Contains(r.stdout, `ERROR`) || !strings.Contains(r.stdout, `legacy.statuses`) || !strings.Contains(r.stdout, "fix: add") {
		t.Errorf("check with the production config on a seed database: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(wrong, "check", "--no-temporal", "--format", "json")...)
	validateOutput(t, "check", r.stdout)
	var rep struct {
		Errors   int
		Problems []struct{ Severity, Check, Setting, Message, Fix string }
	}
	if r.code != 1 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Errors == 0 || len(rep.Problems) < rep.Errors {
		t.Errorf("check --format json: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, append(wrong, "install")...)
	var n int
	db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'dtebridge'`).Scan(&n)
	if r.code != 1 || !strings.Contains(r.stderr, "install refused") || n != 0 {
		t.Errorf("install with the wrong config: exit %d, schema created %d, %q", r.code, n, r.stderr)
	}
	right := []string{"--database-url", db.URL, "--config", exampleConfig(t, "seed")}
	if r = runCLI(t, append(right, "check", "--no-temporal")...); r.code != 0 || strings.Contains(r.stdout, "ERROR") {
		t.Errorf("check with the seed config: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r = runCLI(t, append(right, "--temporal-address", "127.0.0.1:1", "check")...); r.code != 1 || !strings.Contains(r.stdout, "temporal") {
		t.Errorf("check with Temporal unreachable: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r = runCLI(t, append(right, "install")...); r.code != 0 {
		t.Errorf("install with the seed config: exit %d, %q", r.code, r.stderr)
	}
}
