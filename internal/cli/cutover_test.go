package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/store"
)

// TestCutoverCommands drives cutover from the command line: the gate
// refuses with figures, --force records an override, phase commands are
// written back or refused by rule, history shows it all, and rollback
// resyncs and leaves reconcile clean.
func TestCutoverCommands(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(15, 150, 93)
	b.Quiescent(60 * time.Second)
	base := bridgeFlags(t, b)
	cli := func(args ...string) result { return runCLI(t, append(append([]string{}, base...), args...)...) }

	// No reconcile runs yet: the gate refuses and says why.
	r := cli("cutover", "set", "--phase", "testing", "--mode", "new", "--percent", "50", "--actor", "alice", "--reason", "ramp")
	if r.code != exitGateRefused || !strings.Contains(r.stderr, "refused: 0 reconcile runs of testing recorded, 3 needed") || !strings.Contains(r.stderr, "--force") {
		t.Fatalf("ungated promotion: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = cli("cutover", "set", "--phase", "testing", "--mode", "new", "--actor", "alice", "--reason", "ramp", "--format", "json")
	validateOutput(t, "refusal", r.stdout)
	var refusal struct {
		Refused bool
		Gate    *cutover.GateResult
	}
	if r.code != exitGateRefused || r.stderr != "" || json.Unmarshal([]byte(r.stdout), &refusal) != nil || !refusal.Refused || refusal.Gate == nil ||
		refusal.Gate.Pass || len(refusal.Gate.Why) == 0 {
		t.Errorf("refusal as JSON: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// Unknown phases are refused everywhere, with the valid list.
	for _, args := range [][]string{{"reconcile", "--phase", "planing"}, {"cutover", "history", "--phase", "planing"}, {"cutover", "reports", "--phase", "planing"},
		{"findings", "--phase", "planing"}, {"phase", "start", "--cycle", "1", "--report", "1", "--phase", "planing", "--actor", "12", "--reason", "x"}} {
		if r := cli(args...); r.code != exitUsage || !strings.Contains(r.stderr, `phase "planing" is not in`) || !strings.Contains(r.stderr, "planning") {
			t.Errorf("%v: exit %d, %q", args, r.code, r.stderr)
		}
	}
	r = cli("cutover", "set", "--phase", "nope", "--mode", "new", "--actor", "alice", "--reason", "x")
	if r.code != 2 || !strings.Contains(r.stderr, "testing") {
		t.Errorf("unknown phase: exit %d, %q", r.code, r.stderr)
	}
	r = cli("cutover", "set", "--phase", "testing", "--mode", "sideways", "--actor", "alice", "--reason", "x")
	if r.code != 2 {
		t.Errorf("unknown mode: exit %d, %q", r.code, r.stderr)
	}
	// Three clean runs, and the gate passes.
	for range 3 {
		if r = cli("reconcile", "--fail-on-divergence"); r.code != 0 {
			t.Fatalf("reconcile: %d %q", r.code, r.stderr)
		}
	}
	r = cli("cutover", "set", "--phase", "planning", "--mode", "new", "--percent", "100", "--actor", "alice", "--reason", "all of planning")
	if r.code != 0 || !strings.Contains(r.stdout, "planning: shadow 0% -> new 100%") {
		t.Fatalf("gated promotion: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = cli("cutover", "status", "--format", "json")
	validateOutput(t, "cutover-status", r.stdout)
	var status []struct {
		Phase   dtetype.Phase       `json:"phase"`
		Mode    string              `json:"mode"`
		Percent int                 `json:"percent"`
		Gate    *cutover.GateResult `json:"gate"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &status) != nil || len(status) != 7 || status[0].Mode != "new" || status[0].Percent != 100 || !status[0].Gate.Pass {
		t.Fatalf("status: exit %d, %q", r.code, r.stdout)
	}
	if r = cli("cutover", "status"); r.code != 0 || !strings.Contains(r.stdout, "planning") || !strings.Contains(r.stdout, "by alice") {
		t.Errorf("status text: %q", r.stdout)
	}
	// Which reports are on new, from the CLI and the API.
	r = cli("cutover", "reports", "--phase", "planning", "--format", "json")
	validateOutput(t, "cutover-reports", r.stdout)
	var on cutover.OnNew
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &on) != nil || on.Mode.Mode != dtetype.ModeNew || len(on.Reports) != on.Followed || on.Followed != 15 {
		t.Errorf("cutover reports: exit %d, %q", r.code, r.stdout)
	}
	resp, err := http.Get("http://" + b.Srv.Addr() + "/api/v1/cutover/planning/reports")
	if err == nil {
		var api cutover.OnNew
		err = json.NewDecoder(resp.Body).Decode(&api)
		resp.Body.Close()
		if err == nil && len(api.Reports) != len(on.Reports) {
			err = fmt.Errorf("%d reports, the CLI says %d", len(api.Reports), len(on.Reports))
		}
	}
	if err != nil {
		t.Errorf("GET /api/v1/cutover/planning/reports: %v", err)
	}
	if r = cli("cutover", "reports", "--phase", "testing"); r.code != 0 || !strings.Contains(r.stdout, "testing is shadow 0%: the new engine owns it for 0 of the 15 reports") {
		t.Errorf("cutover reports for a shadow phase: %q", r.stdout)
	}

	// A fresh report; commands through the CLI.
	ctx := context.Background()
	m := legacysim.NewModel(b.DB.Pool, legacysim.Seed, nil)
	var cycle int64
	b.DB.Pool.QueryRow(ctx, `SELECT min(cycle_id) FROM test_cycles`).Scan(&cycle)
	id, err := m.CreateReport(ctx, "cli", "FRB")
	if err != nil {
		t.Fatal(err)
	}
	k := dtetype.Key{CycleID: cycle, ReportID: id}
	if _, err := m.AddReport(ctx, k, legacysim.AddOptions{Tester: 11}); err != nil {
		t.Fatal(err)
	}
	b.Quiescent(30 * time.Second)
	who := []string{"--cycle", fmt.Sprint(k.CycleID), "--report", fmt.Sprint(k.ReportID), "--phase", "planning"}
	r = cli(append(append([]string{"phase", "start"}, who...), "--actor", "14", "--role", "Report Owner", "--reason", "x")...)
	if r.code != exitDivergent || !strings.Contains(r.stderr, "role_not_allowed") || !strings.Contains(r.stderr, "nothing was written") {
		t.Errorf("refused command: exit %d, %q", r.code, r.stderr)
	}
	r = cli(append(append([]string{"phase", "start"}, who...), "--actor", "14", "--role", "Report Owner", "--reason", "x", "--format", "json")...)
	validateOutput(t, "refusal", r.stdout)
	var cmdRefusal struct {
		Refused bool
		Rule    string
	}
	if r.code != exitDivergent || json.Unmarshal([]byte(r.stdout), &cmdRefusal) != nil || !cmdRefusal.Refused || cmdRefusal.Rule != "role_not_allowed" {
		t.Errorf("refused command as JSON: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// Who acts is the users table's to say: a user who does not hold the
	// stated role, and one who does not exist, are refused.
	r = cli(append(append([]string{"phase", "start"}, who...), "--actor", "19", "--role", "Tester", "--reason", "x")...)
	if r.code != exitDivergent || !strings.Contains(r.stderr, "role_mismatch") || !strings.Contains(r.stderr, `user 19 holds role "Report Owner Executive"`) {
		t.Errorf("wrong stated role: exit %d, %q", r.code, r.stderr)
	}
	r = cli(append(append([]string{"phase", "start"}, who...), "--actor", "99999", "--role", "Tester", "--reason", "x")...)
	if r.code != exitDivergent || !strings.Contains(r.stderr, "unknown_actor") {
		t.Errorf("unknown actor: exit %d, %q", r.code, r.stderr)
	}
	if cmds, err := b.Store().Commands(ctx, &k, 10); err != nil || len(cmds) != 0 {
		t.Errorf("refused commands were recorded: %v %+v", err, cmds)
	}
	r = cli(append(append([]string{"phase", "start"}, who...), "--actor", "12", "--reason", "kick-off", "--format", "json")...)
	validateOutput(t, "phase-command", r.stdout)
	var res struct {
		State dtetype.State `json:"state"`
		Rows  int           `json:"rows"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || res.State != dtetype.StateInProgress || res.Rows != 1 {
		t.Fatalf("start: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	var state string
	b.DB.Pool.QueryRow(ctx, `SELECT state::text FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k.CycleID, k.ReportID).Scan(&state)
	if state != "In Progress" {
		t.Errorf("legacy Planning after start: %q", state)
	}
	r = cli(append(append([]string{"phase", "override"}, who...), "--actor", "13", "--role", "Test Executive", "--reason", "escalated", "--status", "at_risk")...)
	if r.code != 0 || !strings.Contains(r.stdout, "now in_progress, at_risk") {
		t.Errorf("override: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// The shadow is told of commands to phases it does not own.
	r = cli(append([]string{"phase", "start", "--cycle", fmt.Sprint(k.CycleID), "--report", fmt.Sprint(k.ReportID), "--phase", "testing"},
		"--actor", "12", "--role", "Tester", "--reason", "x")...)
	if r.code == 0 || !strings.Contains(r.stderr, "legacy is authoritative") {
		t.Errorf("command to a shadow phase: exit %d, %q", r.code, r.stderr)
	}

	// With a divergence in testing the gate refuses; --force is recorded.
	// The commands' write-backs are applied first: a report with changes
	// in flight is not judged (its divergence would wait for the next run).
	b.Quiescent(30 * time.Second)
	b.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k.CycleID, k.ReportID)
	if r = cli("reconcile"); r.code != 0 || !strings.Contains(r.stdout, "actor_mismatch") {
		t.Fatalf("reconcile with a divergence: %d %q", r.code, r.stdout)
	}
	r = cli("cutover", "set", "--phase", "testing", "--mode", "new", "--percent", "10", "--actor", "bob", "--reason", "try", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "Forced past the gate") {
		t.Errorf("forced: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = cli("cutover", "set", "--phase", "planning", "--mode", "shadow", "--actor", "alice", "--reason", "roll back")
	if r.code != 0 || !strings.Contains(r.stdout, "Rolled back: 16 reports released, 16 resynced from legacy.") {
		t.Fatalf("rollback: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	b.Quiescent(30 * time.Second)
	// The resync re-drove every released report from legacy, which also
	// repaired the divergence in testing.
	if r = cli("reconcile", "--fail-on-divergence"); r.code != 0 || !strings.Contains(r.stdout, "1 resolved") {
		t.Errorf("reconcile after rollback: %d %q", r.code, r.stdout)
	}
	r = cli("cutover", "history", "--format", "json")
	validateOutput(t, "cutover-history", r.stdout)
	var hist []store.LogEntry
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &hist) != nil || len(hist) != 3 || !hist[1].Forced || hist[1].Actor != "bob" || hist[0].ToMode != "shadow" {
		t.Errorf("history: exit %d, %q", r.code, r.stdout)
	}
	if r = cli("cutover", "history", "--phase", "testing"); r.code != 0 || strings.Count(r.stdout, "\n") != 2 {
		t.Errorf("history of one phase: %q", r.stdout)
	}
}
