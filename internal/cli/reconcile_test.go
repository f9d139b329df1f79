package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/reconcile"
)

func TestReconcileCommand(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(15, 200, 91)
	b.Quiescent(60 * time.Second)
	base := bridgeFlags(t, b)

	r := runCLI(t, append(base, "reconcile", "--format", "json", "--fail-on-divergence")...)
	var rep reconcile.Report
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil || rep.Compared == 0 || rep.RunID == 0 {
		t.Fatalf("clean reconcile: exit %d, %q %q", r.code, r.stdout[:min(200, len(r.stdout))], r.stderr)
	}

	var k struct{ c, r int64 }
	b.DB.Pool.QueryRow(context.Background(), `SELECT cycle_id, report_id FROM workflow_phases ORDER BY phase_id LIMIT 1`).Scan(&k.c, &k.r)
	b.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k.c, k.r)
	r = runCLI(t, append(base, "reconcile", "--fail-on-divergence")...)
	if r.code != exitDivergent || !strings.Contains(r.stdout, "actor_mismatch") {
		t.Fatalf("reconcile with a divergence: exit %d, stdout %q", r.code, r.stdout)
	}
	r.oneLine(t, "1 unexpected divergences remain")
	r = runCLI(t, append(base, "reconcile", "--format", "markdown", "--no-record")...)
	if r.code != 0 || !strings.Contains(r.stdout, "| Phase | Compared |") || !strings.Contains(r.stdout, "**1 unexpected divergences.**") {
		t.Errorf("markdown: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, append(base, "reconcile", "--repair", "--deep", "3", "--fail-on-divergence")...)
	if r.code != 0 || !strings.Contains(r.stdout, "1 of 1 divergences repaired") || !strings.Contains(r.stdout, "Deep check: 3 workflows queried, 0 disagree") {
		t.Fatalf("repair: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(base, "reconcile", "--fail-on-divergence")...)
	if r.code != 0 || !strings.Contains(r.stdout, "1 resolved") {
		t.Errorf("after repair: exit %d, %q", r.code, r.stdout)
	}
	r = runCLI(t, append(base, "status")...)
	if r.code != 0 || !strings.Contains(r.stdout, "Last reconcile: run ") || !strings.Contains(r.stdout, "planning") {
		t.Errorf("status: exit %d, %q", r.code, r.stdout)
	}
	for _, bad := range [][]string{{"--since", "yesterday"}, {"--deep", "some"}, {"--format", "xml"}} {
		r = runCLI(t, append(append(base, "reconcile"), bad...)...)
		if r.code != 2 {
			t.Errorf("reconcile %v: exit %d, want 2", bad, r.code)
		}
	}
}

// bridgeFlags writes the bridge's config to a file and returns the global
// flags that point the CLI at the bridge's database, config and Temporal.
func bridgeFlags(t *testing.T, b *bridgetest.Bridge) []string {
	t.Helper()
	cfgPath := filepath.Join(t.TempDir(), "dtebridge.yaml")
	out, err := yaml.Marshal(b.Cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"--database-url", b.DB.URL, "--config", cfgPath, "--temporal-address", testenv.Temporal(t).Address()}
}

// TestRepairChecksFirst: --repair without a running bridge, or with
// Temporal unreachable, records no run and repairs nothing.
func TestRepairChecksFirst(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true})
	runs := func() int {
		var n int
		b.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FROM dtebridge.reconcile_runs`).Scan(&n)
		return n
	}
	base := bridgeFlags(t, b)
	r := runCLI(t, append(base, "reconcile", "--repair")...)
	if r.code != exitError || !strings.Contains(r.stderr, "no capture leader") || !strings.Contains(r.stderr, "nothing was recorded") || runs() != 0 {
		t.Errorf("--repair without serve: exit %d, %q, %d runs recorded", r.code, r.stderr, runs())
	}
	r = runCLI(t, append(base, "--temporal-address", "127.0.0.1:1", "reconcile", "--repair")...)
	if r.code == 0 || runs() != 0 {
		t.Errorf("--repair without Temporal: exit %d, %q, %d runs recorded", r.code, r.stderr, runs())
	}
	if r = runCLI(t, append(base, "reconcile")...); r.code != 0 || runs() != 1 {
		t.Errorf("a plain run: exit %d, %q, %d runs recorded", r.code, r.stderr, runs())
	}
}
