package cutover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

const token = "test-token-0123456789abcdef"

type env struct {
	*bridgetest.Bridge
	t     *testing.T
	store *cutover.Store
	model *legacysim.Model
	x     *cutover.Executor
	to    reconcile.TemporalOptions
}

func setup(t *testing.T, configure ...func(*config.Config)) *env {
	t.Helper()
	o := &bridgetest.Options{Token: token}
	if len(configure) > 0 {
		o.Configure = configure[0]
	}
	b := bridgetest.New(t, legacysim.Seed, o)
	b.Simulate(20, 200, 101)
	b.Quiescent(60 * time.Second)
	_, def, err := b.Cfg.LoadDefinitions()
	if err != nil {
		t.Fatal(err)
	}
	store := cutover.NewStore(b.Store())
	x := &cutover.Executor{Client: b.TC, Store: store, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix, Definition: def}
	if b.Cfg.Legacy.Users != nil {
		x.Users = legacy.NewUsers(b.DB.Pool, *b.Cfg.Legacy.Users)
	}
	return &env{Bridge: b, t: t, store: store, model: legacysim.NewModel(b.DB.Pool, legacysim.Seed, nil), x: x,
		to: reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}}
}

// reconcileRuns records n full reconcile runs and returns the last.
func (e *env) reconcileRuns(n int) *reconcile.Report {
	e.t.Helper()
	var r *reconcile.Report
	for range n {
		o := e.Cfg.ReconcileOptions(e.DB.Pool)
		o.Persist = true
		var err error
		if r, err = reconcile.Run(context.Background(), o); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// coveredReport creates reports until one falls in the first percent of
// buckets, and waits for the shadow to know it.
func (e *env) coveredReport(percent int) dtetype.Key {
	e.t.Helper()
	ctx := context.Background()
	var cycle int64
	e.DB.Pool.QueryRow(ctx, `SELECT min(cycle_id) FROM test_cycles`).Scan(&cycle)
	for i := 0; i < 500; i++ {
		id, err := e.model.CreateReport(ctx, "covered", "FRB")
		if err != nil {
			e.t.Fatal(err)
		}
		k := dtetype.Key{CycleID: cycle, ReportID: id}
		if dtetype.Bucket(k) < percent*100 {
			if _, err := e.model.AddReport(ctx, k, legacysim.AddOptions{Tester: 11}); err != nil {
				e.t.Fatal(err)
			}
			e.Quiescent(30 * time.Second)
			return k
		}
	}
	e.t.Fatal("no covered report found")
	return dtetype.Key{}
}

// post sends an API request with a bearer token and returns the status
// and body.
func (e *env) post(path, tok, body string) (int, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+e.Srv.Addr()+path, bytes.NewBufferString(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

func (e *env) row(k dtetype.Key, label string) map[string]any {
	e.t.Helper()
	var raw []byte
	if err := e.DB.Pool.QueryRow(context.Background(), `SELECT to_jsonb(w) FROM workflow_phases w WHERE cycle_id = $1 AND report_id = $2 AND phase_name::text = $3`,
		k.CycleID, k.ReportID, label).Scan(&raw); err != nil {
		e.t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(raw, &m)
	return m
}

// TestLifecycle takes one phase through cutover end to end: shadow, a gate
// refusal while a divergence exists, repair, the gate passing, new at 10%,
// commands written back, an authority conflict, and rollback.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	const phase = dtetype.Phase("planning")

	// 1-2. In shadow, with a divergence: the gate refuses, with figures.
	var k0 dtetype.Key
	e.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Planning' ORDER BY phase_id LIMIT 1`).Scan(&k0.CycleID, &k0.ReportID)
	e.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k0.CycleID, k0.ReportID)
	r := e.reconcileRuns(3)
	if r.Unexpected == 0 {
		t.Fatal("the bypass divergence was not found")
	}
	_, err := e.store.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeNew, Percent: 10, Actor: "alice", Reason: "first tenth"}, e.Cfg.GateConfig())
	var ge *cutover.GateError
	if !errors.As(err, &ge) || !strings.Contains(err.Error(), "unexpected divergences") || len(ge.Gate.Runs) != 3 {
		t.Fatalf("promotion with a divergence: %v", err)
	}

	// 3. Repair clears it, and after three clean runs the gate passes.
	if err := reconcile.Repair(ctx, e.Cfg.ReconcileOptions(e.DB.Pool), e.to, r); err != nil || r.Repair.Repaired == 0 {
		t.Fatalf("repair: %v %+v", err, r.Repair)
	}
	if r := e.reconcileRuns(3); r.Unexpected != 0 {
		t.Fatalf("not clean after repair: %+v", r.Counts)
	}

	// 4. New at 10%.
	res, err := e.store.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeNew, Percent: 10, Actor: "alice", Reason: "first tenth"}, e.Cfg.GateConfig())
	if err != nil || !res.Gate.Pass || res.Forced {
		t.Fatalf("promotion: %v %+v", err, res)
	}

	// 5. Commands to a covered report are applied and written back.
	k := e.coveredReport(10)
	before := e.row(k, "Planning")
	// Start goes through the served API, as an operator's tool would.
	code, body := e.post(fmt.Sprintf("/api/v1/cycles/%d/reports/%d/phases/planning/start", k.CycleID, k.ReportID), token,
		`{"actor": "12", "role": "Tester", "reason": "kick-off"}`)
	var got *shadow.CommandResult
	if err := json.Unmarshal(body, &got); code != http.StatusOK || err != nil || got.State != dtetype.StateInProgress || got.Rows != 1 {
		t.Fatalf("start over HTTP: %d %s", code, body)
	}
	after := e.row(k, "Planning")
	if after["state"] != "In Progress" || after["started_by"] != 12.0 || after["actual_start_date"] == nil || before["actual_start_date"] != nil {
		t.Errorf("legacy row after start: %v", after)
	}
	got, err = e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionComplete, Phase: phase, Actor: "13", Role: "Test Executive", Reason: "plan approved"})
	if err != nil || got.State != dtetype.StateCompleted || got.Rows != 2 {
		t.Fatalf("complete: %v %+v", err, got)
	}
	if sc := e.row(k, "Scoping"); sc["state"] != "In Progress" || sc["started_by"] != 13.0 {
		t.Errorf("completing Planning must start Scoping in legacy, as the application does: %v", sc)
	}
	var origin string
	e.DB.Pool.QueryRow(ctx, `SELECT origin FROM dtebridge.changes WHERE (new_row->>'report_id')::bigint = $1 ORDER BY id DESC LIMIT 1`, k.ReportID).Scan(&origin)
	if origin != dtetype.OriginBridge {
		t.Errorf("write-back captured with origin %q, want dtebridge", origin)
	}
	e.Quiescent(30 * time.Second)

	// 6. A legacy write to the promoted report is an authority conflict.
	conflicts := func() int {
		var n int
		e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.divergences WHERE kind = 'authority_conflict' AND resolved_at IS NULL
			AND cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID).Scan(&n)
		return n
	}
	if _, err := e.model.Reopen(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, legacysim.ReopenState); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 15*time.Second, "the conflict", func() bool { return conflicts() == 1 })
	resp, err := http.Get("http://" + e.Srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var metrics bytes.Buffer
	metrics.ReadFrom(resp.Body)
	resp.Body.Close()
	if !strings.Contains(metrics.String(), `dtebridge_cutover_authority_conflicts_total{phase="planning"} 1`) ||
		!strings.Contains(metrics.String(), `dtebridge_cutover_commands_total{outcome="accepted",phase="planning"} 1`+"\n") {
		t.Errorf("conflict and command metrics missing from /metrics")
	}

	// 7. Rollback: the shadow resyncs from legacy and reconcile is clean.
	res, err = e.store.Set(ctx, cutover.Change{Phase: phase, Mode: dtetype.ModeShadow, Actor: "alice", Reason: "roll back"}, e.Cfg.GateConfig())
	if err != nil || len(res.Released) == 0 {
		t.Fatalf("rollback: %v %+v", err, res)
	}
	rr, err := adapter.AwaitRedrives(ctx, e.Store(), res.Redrives, 30*time.Second)
	if err != nil || len(rr.Applied) != len(res.Released) {
		t.Fatalf("rollback re-drives: %v %+v", err, rr)
	}
	e.Quiescent(30 * time.Second)
	if r := e.reconcileRuns(1); r.Unexpected != 0 {
		t.Fatalf("after rollback: %+v", r.Counts)
	}
	if conflicts() != 0 {
		t.Error("the authority conflict stayed open after rollback")
	}
	hist, err := e.store.History(ctx, phase, 10)
	if err != nil || len(hist) != 2 {
		t.Fatalf("history: %v %+v", err, hist)
	}
	var gate cutover.GateResult
	if err := json.Unmarshal(hist[1].Gate, &gate); err != nil || !gate.Pass || len(gate.Runs) != 3 || hist[1].ToPercent != 10 ||
		hist[1].Actor != "alice" || hist[0].ToMode != dtetype.ModeShadow || hist[0].Reason != "roll back" {
		t.Errorf("history: %v %+v, gate %s", err, hist, hist[1].Gate)
	}
}

// TestRejections: commands the definition refuses write nothing.
func TestRejections(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	for _, p := range []dtetype.Phase{"planning", "scoping"} {
		if _, err := e.store.Set(ctx, cutover.Change{Phase: p, Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
			t.Fatal(err)
		}
	}
	k := e.coveredReport(100)
	dump := func() string {
		var s string
		e.DB.Pool.QueryRow(ctx, `SELECT string_agg(to_jsonb(w)::text, '' ORDER BY phase_id) FROM workflow_phases w WHERE report_id = $1`, k.ReportID).Scan(&s)
		var n int
		e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.commands`).Scan(&n)
		return s + fmt.Sprintf(" %d commands", n)
	}
	before := dump()
	for _, tc := range []struct {
		name string
		cmd  shadow.Command
		rule string
	}{
		{"WrongRole", shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: "14", Role: "Report Owner", Reason: "x"}, shadow.RuleRoleNotAllowed},
		{"UnmetDependency", shadow.Command{Action: dtetype.ActionStart, Phase: "scoping", Actor: "12", Role: "Tester", Reason: "x"}, shadow.RuleDependencyUnmet},
		{"InvalidTransition", shadow.Command{Action: dtetype.ActionComplete, Phase: "planning", Actor: "12", Role: "Tester", Reason: "x"}, shadow.RuleInvalidTransition},
		{"NoReason", shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: "12", Role: "Tester"}, "missing_actor_or_reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.x.Execute(ctx, k, tc.cmd)
			var rej *cutover.RejectedError
			if !errors.As(err, &rej) || rej.Rule != tc.rule {
				t.Fatalf("error = %v, want a rejection by %s", err, tc.rule)
			}
		})
	}
	if dump() != before {
		t.Error("a rejected command wrote something")
	}
	// A phase not on new takes no commands.
	_, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: "testing", Actor: "12", Role: "Tester", Reason: "x"})
	if !errors.Is(err, cutover.ErrNotOnNew) {
		t.Errorf("command to a shadow phase: %v", err)
	}
}

// TestStickiness: the split is stable, and a promoted report stays promoted
// when the percentage goes down, until rollback.
func TestStickiness(t *testing.T) {
	t.Parallel()
	in := 0
	for r := int64(1); r <= 10000; r++ {
		k := dtetype.Key{CycleID: 7, ReportID: r}
		if dtetype.Bucket(k) != dtetype.Bucket(k) {
			t.Fatal("bucket is not stable")
		}
		if dtetype.Bucket(k) < 1000 {
			in++
		}
	}
	if in < 850 || in > 1150 {
		t.Errorf("10%% covers %d of 10,000 reports", in)
	}
	e := setup(t)
	ctx := context.Background()
	set := func(mode string, percent int) {
		t.Helper()
		if _, err := e.store.Set(ctx, cutover.Change{Phase: "testing", Mode: mode, Percent: percent, Actor: "bob", Reason: "ramp", Force: true}, e.Cfg.GateConfig()); err != nil {
			t.Fatal(err)
		}
	}
	// A report covered at 50% but not at 10%.
	var mid dtetype.Key
	for mid.ReportID == 0 {
		k := e.coveredReport(50)
		if dtetype.Bucket(k) >= 1000 {
			mid = k
		}
	}
	set(dtetype.ModeNew, 50)
	a := cutover.NewAuthority(e.store)
	check := func(want bool, when string) {
		t.Helper()
		if err := a.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if got := a.OnNew(mid, "testing"); got != want {
			t.Errorf("%s: report on new = %v, want %v", when, got, want)
		}
	}
	check(true, "at 50%")
	set(dtetype.ModeNew, 10)
	check(true, "lowered to 10%")
	set(dtetype.ModeShadow, 0)
	check(false, "after rollback")
	set(dtetype.ModeNew, 10)
	check(false, "at 10% again after rollback")
}

// TestTokenAndReplicas: mutations need the bearer token, and two serve
// instances agree on a mode change within seconds.
func TestTokenAndReplicas(t *testing.T) {
	t.Parallel()
	e := setup(t)
	second := e.Start()
	post := func(tok string) int {
		code, _ := e.post("/api/v1/cycles/1/reports/1/phases/planning/start", tok, `{"actor": "12", "role": "Tester", "reason": "x"}`)
		return code
	}
	if c := post(""); c != http.StatusUnauthorized {
		t.Errorf("no token: %d", c)
	}
	if c := post("wrong-token-0123456789"); c != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", c)
	}
	if c := post(token); c != http.StatusConflict {
		t.Errorf("valid token, phase in shadow: %d, want 409 (not on new)", c)
	}
	ctx := context.Background()
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "testing", Mode: dtetype.ModeNew, Percent: 30, Actor: "carol", Reason: "ramp", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	changed := time.Now()
	bridgetest.WaitFor(t, 10*time.Second, "both replicas to see the change", func() bool {
		return e.Srv.Authority().Mode("testing").Mode == dtetype.ModeNew && second.Authority().Mode("testing").Percent == 30
	})
	t.Logf("both replicas agreed %s after the change", time.Since(changed).Round(10*time.Millisecond))
}

// TestRevertPolicy: under conflict_policy revert, a legacy write to a phase
// the engine owns is recorded and then undone: the engine writes its state
// back over the row, and the shadow and legacy agree again.
func TestRevertPolicy(t *testing.T) {
	t.Parallel()
	e := setup(t, func(c *config.Config) { c.Cutover.ConflictPolicy = cutover.PolicyRevert })
	ctx := context.Background()
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	k := e.coveredReport(100)
	if _, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: "12", Role: "Tester", Reason: "go"}); err != nil {
		t.Fatal(err)
	}
	e.Quiescent(30 * time.Second)
	engine := e.row(k, "Planning")
	// Legacy resets the phase behind the engine's back.
	if _, err := e.model.Reopen(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, legacysim.ReopenReset); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the revert", func() bool {
		r := e.row(k, "Planning")
		return r["state"] == "In Progress" && r["started_by"] == engine["started_by"]
	})
	var n int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.divergences WHERE kind = 'authority_conflict' AND report_id = $1`, k.ReportID).Scan(&n)
	if n != 1 {
		t.Errorf("%d authority conflicts recorded, want 1", n)
	}
	e.Quiescent(30 * time.Second)
	o := e.Cfg.ReconcileOptions(e.DB.Pool)
	o.Scope = reconcile.Scope{Keys: []dtetype.Key{k}}
	r, err := reconcile.Run(ctx, o)
	if err != nil || r.Unexpected != 0 {
		t.Errorf("after the revert: %v %+v", err, r.Divergences)
	}
}

// TestConcurrentCommands: two commands racing on one report are judged one
// after the other, so exactly one start is written; a command id reused for
// another report is refused and writes nothing.
func TestConcurrentCommands(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	k := e.coveredReport(100)
	type result struct {
		actor string
		err   error
	}
	results := make(chan result, 2)
	for _, actor := range []string{"100", "102"} {
		go func() {
			_, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: actor, Role: "Tester", Reason: "race"})
			results <- result{actor, err}
		}()
	}
	var winner string
	refused := 0
	for range 2 {
		r := <-results
		var rej *cutover.RejectedError
		switch {
		case r.err == nil:
			winner = r.actor
		case errors.As(r.err, &rej) && rej.Rule == shadow.RuleInvalidTransition:
			refused++
		default:
			t.Errorf("actor %s: %v", r.actor, r.err)
		}
	}
	if winner == "" || refused != 1 {
		t.Fatalf("winner %q, refused %d: want one of each", winner, refused)
	}
	if row := e.row(k, "Planning"); fmt.Sprint(row["started_by"]) != winner {
		t.Errorf("legacy started_by %v, want the winner %s", row["started_by"], winner)
	}

	// The same command id for another report: refused, nothing written.
	other := e.coveredReport(100)
	id := "cmd-reused-0001"
	if _, err := e.x.Execute(ctx, k, shadow.Command{ID: id, Action: dtetype.ActionComplete, Phase: "planning", Actor: "13", Role: "Test Executive", Reason: "done"}); err != nil {
		t.Fatal(err)
	}
	before := e.row(other, "Planning")
	_, err := e.x.Execute(ctx, other, shadow.Command{ID: id, Action: dtetype.ActionStart, Phase: "planning", Actor: "100", Role: "Tester", Reason: "go"})
	var rej *cutover.RejectedError
	if !errors.As(err, &rej) || rej.Rule != "bad_command" {
		t.Errorf("reused id: %v", err)
	}
	if after := e.row(other, "Planning"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused reused id wrote the row: %v", after)
	}
}

// TestWriteBackChecksOwnership: the write-back checks, in its own
// transaction, that the engine still owns the phase, so a command retried
// after a rollback writes nothing.
func TestWriteBackChecksOwnership(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	k := e.coveredReport(100)
	writer, err := legacy.NewWriter(e.DB.Pool, &e.Cfg.Legacy, nil)
	if err != nil {
		t.Fatal(err)
	}
	wb := &cutover.WriteBack{Writer: writer, Store: e.Store()}
	before := e.row(k, "Planning")
	_, err = wb.WriteBack(ctx, shadow.WriteBackRequest{Key: k, Command: shadow.Command{ID: "cmd-after-rollback", Action: dtetype.ActionStart,
		Phase: "planning", Actor: "100", Role: "Tester", Reason: "late retry"}, At: time.Now()})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != "not_on_new" || !appErr.NonRetryable() {
		t.Fatalf("write-back for a phase in shadow: %v", err)
	}
	if after := e.row(k, "Planning"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the write-back wrote a phase it does not own: %v", after)
	}
	var n int
	e.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.commands`).Scan(&n)
	if n != 0 {
		t.Errorf("%d commands claimed", n)
	}
}
