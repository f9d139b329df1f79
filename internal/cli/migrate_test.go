package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/defmigrate"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestDefinitionsMigrate moves running reports from v1 to a v2 that lets
// report owners plan: a dry run previews and changes nothing, the move
// re-judges each report under v2 (its planning role findings go), the
// workflows continue on v2, a second run resumes with nothing left to do,
// --phase-safe leaves a report mid-phase alone, and the audit lists it.
func TestDefinitionsMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, err := os.ReadFile("../../shadow/definitions/standard_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.Replace(string(src), `version: "1.0"`, `version: "2.0"`, 1)
	v2 = strings.Replace(v2, "roles: [Tester, Test Manager]\n", "roles: [Tester, Test Manager, Report Owner]\n", 1)
	v2Path := filepath.Join(t.TempDir(), "standard_v2.yaml")
	if err := os.WriteFile(v2Path, []byte(v2), 0o644); err != nil {
		t.Fatal(err)
	}
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{
		History: func(db *testenv.DB) {
			if _, err := legacysim.Simulate(ctx, db.Pool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: 20, Ops: 300, Concurrency: 1, Seed: 17}); err != nil {
				t.Fatal(err)
			}
		},
		Configure: func(c *config.Config) {
			c.Definitions = []string{"definitions/standard_dt_testing.yaml", v2Path}
			c.Shadow.Definition = "standard_dt_testing@1.0"
		}})
	b.Quiescent(60 * time.Second)
	base := bridgeFlags(t, b)
	cli := func(args ...string) result { return runCLI(t, append(append([]string{}, base...), args...)...) }

	// Reports with a planning role finding for a report owner, and one with
	// a phase in progress.
	var owners []dtetype.Key
	rows, _ := b.DB.Pool.Query(ctx, `SELECT DISTINCT k.cycle_id, k.report_id FROM dtebridge.shadow_keys k,
		jsonb_array_elements(k.historical || k.recent_violations) v
		WHERE v->>'phase' = 'planning' AND v->>'rule' = 'role_not_allowed' AND v->>'detail' LIKE '%role "Report Owner"%' ORDER BY 1, 2 LIMIT 2`)
	for rows.Next() {
		var k dtetype.Key
		rows.Scan(&k.CycleID, &k.ReportID)
		owners = append(owners, k)
	}
	rows.Close()
	if len(owners) == 0 {
		t.Fatal("the history has no report whose planning a report owner started or completed")
	}
	var busy dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_phases WHERE state = 'in_progress'
		AND (cycle_id, report_id) NOT IN (SELECT * FROM unnest($1::bigint[], $2::bigint[])) ORDER BY 1, 2 LIMIT 1`,
		[]int64{owners[0].CycleID}, []int64{owners[0].ReportID}).Scan(&busy.CycleID, &busy.ReportID); err != nil {
		t.Fatal(err)
	}
	version := func(k dtetype.Key) string {
		var v string
		b.DB.Pool.QueryRow(ctx, `SELECT definition_version FROM dtebridge.shadow_keys WHERE cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID).Scan(&v)
		return v
	}
	run := func(args ...string) *defmigrate.Result {
		t.Helper()
		r := cli(append([]string{"definitions", "migrate", "--to", "standard_dt_testing@2.0", "--format", "json"}, args...)...)
		validateOutput(t, "definitions-migrate", r.stdout)
		var res defmigrate.Result
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil {
			t.Fatalf("definitions migrate %v: exit %d, %q %q", args, r.code, r.stdout, r.stderr)
		}
		return &res
	}
	keyArg := func(ks ...dtetype.Key) string {
		var s []string
		for _, k := range ks {
			s = append(s, k.String())
		}
		return strings.Join(s, ",")
	}

	// 1. A dry run previews every report and changes nothing.
	dry := run("--all", "--dry-run")
	if !dry.DryRun || dry.Migrated < len(owners) || dry.MigrationID != 0 || version(owners[0]) != "1.0" {
		t.Fatalf("dry run: %+v, %s on %s", dry, owners[0], version(owners[0]))
	}
	var preview *defmigrate.Report
	for i := range dry.Reports {
		if dry.Reports[i].Key == owners[0] {
			preview = &dry.Reports[i]
		}
	}
	if preview == nil || !contains(preview.Removed, "planning role_not_allowed") {
		t.Errorf("dry run of %s: %+v", owners[0], preview)
	}

	// 2. The move.
	res := run("--reports", keyArg(owners...), "--actor", "alice", "--reason", "v2 lets report owners plan")
	if res.Migrated != len(owners) || res.Failed != 0 || res.MigrationID == 0 {
		t.Fatalf("migrate: %+v", res)
	}
	for _, r := range res.Reports {
		if r.From != "standard_dt_testing@1.0" || !contains(r.Removed, "planning role_not_allowed") {
			t.Errorf("%s: %+v", r.Key, r)
		}
		for _, f := range r.After {
			if f.Phase == "planning" && f.Rule == shadow.RuleRoleNotAllowed && strings.Contains(f.Detail, `role "Report Owner"`) {
				t.Errorf("%s still has a report owner's planning finding under v2: %+v", r.Key, f)
			}
		}
	}
	for _, k := range owners {
		if v := version(k); v != "2.0" {
			t.Errorf("%s projects version %s after the move", k, v)
		}
		// The workflow projects the new version as it takes the move, and
		// continues as new on it right after: a query may still reach the
		// run that took it.
		var st shadow.State
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for {
			var resp converter.EncodedValue
			st = shadow.State{}
			resp, err = b.TC.QueryWorkflow(ctx, shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k), "", shadow.QueryState)
			if err == nil {
				err = resp.Get(&st)
			}
			if (err == nil && st.Runs >= 2) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || st.DefinitionVersion != "2.0" || st.Runs < 2 {
			t.Errorf("%s's workflow: %v, version %s, %d runs", k, err, st.DefinitionVersion, st.Runs)
		}
	}
	// Other reports stay on v1, and the two sides still agree.
	if version(busy) != "1.0" {
		t.Errorf("%s moved without being asked", busy)
	}
	b.Quiescent(30 * time.Second)
	if r := cli("reconcile", "--fail-on-divergence"); r.code != 0 {
		t.Errorf("reconcile after the move: exit %d, %s", r.code, r.stdout)
	}

	// 3. Running it again resumes: nothing is left to move.
	if again := run("--reports", keyArg(owners...), "--actor", "alice", "--reason", "again"); again.Migrated != 0 || again.AlreadyOnTarget != len(owners) {
		t.Errorf("second run: %+v", again)
	}
	// 4. --phase-safe leaves a report mid-phase alone.
	if safe := run("--reports", keyArg(busy), "--phase-safe", "--actor", "alice", "--reason", "safe"); safe.Migrated != 0 ||
		!strings.Contains(safe.Skipped[busy.String()], "in progress") || version(busy) != "1.0" {
		t.Errorf("phase-safe: %+v", safe)
	}
	// 5. The audit, and refusals.
	validateOutput(t, "definitions-migrations", cli("definitions", "migrations", "--format", "json").stdout)
	if r := cli("definitions", "migrations"); r.code != 0 || !strings.Contains(r.stdout, "alice") || !strings.Contains(r.stdout, "standard_dt_testing@2.0") {
		t.Errorf("definitions migrations: exit %d, %q", r.code, r.stdout)
	}
	if r := cli("definitions", "migrate", "--to", "standard_dt_testing@2.0", "--all"); r.code != 2 || !strings.Contains(r.stderr, "--actor") {
		t.Errorf("without an actor: exit %d, %q", r.code, r.stderr)
	}
	if r := cli("definitions", "migrate", "--to", "standard_dt_testing@9.9", "--all", "--dry-run"); r.code != 2 {
		t.Errorf("unknown target: exit %d, %q", r.code, r.stderr)
	}
	if r := cli("definitions", "migrate", "--to", "standard_dt_testing@2.0", "--reports", "9/999", "--dry-run"); r.code == 0 || !strings.Contains(r.stderr, "9/999") {
		t.Errorf("unknown report: exit %d, %q", r.code, r.stderr)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
