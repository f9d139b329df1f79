package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.temporal.io/api/enums/v1"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

func run(t *testing.T, b *bridgetest.Bridge, mod func(*reconcile.Options)) *reconcile.Report {
	t.Helper()
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	if mod != nil {
		mod(&o)
	}
	r, err := reconcile.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func kinds(r *reconcile.Report, expected bool) map[string]int {
	out := map[string]int{}
	for _, d := range r.Divergences {
		if d.Expected == expected {
			out[d.Kind]++
		}
	}
	return out
}

// TestNoFalsePositives: clean simulator traffic, once quiet, gives no
// unexpected divergence in either profile.
func TestNoFalsePositives(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			b := bridgetest.New(t, p, nil)
			b.Simulate(20, 1200, 31)
			b.Quiescent(90 * time.Second)
			r := run(t, b, nil)
			if r.Unexpected != 0 {
				for _, d := range r.Divergences {
					if !d.Expected {
						t.Errorf("unexpected: %+v", d)
						break
					}
				}
				t.Fatalf("%d unexpected divergences on clean traffic: %v", r.Unexpected, kinds(r, false))
			}
			if r.Compared == 0 || r.Consistency != 1 {
				t.Errorf("compared %d, consistency %v", r.Compared, r.Consistency)
			}
			// Legacy's row hashes, computed from its columns, equal the
			// projection's stored ones: only the reports whose rows differ
			// (the duplicates legacy's traffic adds) go key by key.
			differ := map[dtetype.Key]bool{}
			for _, d := range r.Divergences {
				if d.Kind != dtetype.KindRuleViolation {
					differ[d.Key] = true
				}
			}
			if r.ChecksumsDiffer != int64(len(differ)) {
				t.Errorf("%d reports' checksums differ on clean traffic, %d reports' rows do (%v)", r.ChecksumsDiffer, len(differ), kinds(r, true))
			}
			if r.Expected == 0 {
				t.Error("simulator traffic breaks the new rules, yet nothing was reported as expected")
			}
			if got := len(r.Phases); got != len(p.Chain) {
				t.Errorf("%d phases reported, want %d", got, len(p.Chain))
			}
		})
	}
}

// TestEveryKindDetected causes each divergence kind for real and checks it
// is found and classified.
func TestEveryKindDetected(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Production, nil)
	b.Simulate(12, 300, 41)
	b.Quiescent(90 * time.Second)
	ctx := context.Background()
	if r := run(t, b, nil); r.Unexpected != 0 {
		t.Fatalf("not clean before the faults: %v", kinds(r, false))
	}
	var keys []dtetype.Key
	rows, _ := b.DB.Pool.Query(ctx, `SELECT DISTINCT cycle_id, report_id FROM workflow_phases ORDER BY 1, 2 LIMIT 10`)
	for rows.Next() {
		var k dtetype.Key
		rows.Scan(&k.CycleID, &k.ReportID)
		keys = append(keys, k)
	}
	rows.Close()
	// where selects a phase's row whatever label (or alias) it carries.
	where := func(k dtetype.Key, label string) string {
		var labels []string
		for l, p := range b.Cfg.Legacy.Phases.All() {
			if p == b.Cfg.Legacy.Phases.Value(label) {
				labels = append(labels, "'"+l+"'")
			}
		}
		return " WHERE cycle_id = " + itoa(k.CycleID) + " AND report_id = " + itoa(k.ReportID) + " AND phase_name::text IN (" + strings.Join(labels, ", ") + ")"
	}
	// Legacy changes made with the capture trigger bypassed.
	// Each fault flips the effective value, so it differs whatever it was.
	b.Bypass(`UPDATE workflow_phases SET state = CASE WHEN coalesce(state_override, state) = 'Complete' THEN 'Not Started' ELSE 'Complete' END::phase_state_enum,
		state_override = NULL` + where(keys[0], "Request Info"))
	b.Bypass(`UPDATE workflow_phases SET schedule_status = CASE WHEN coalesce(status_override, schedule_status) = 'Past Due' THEN 'On Track' ELSE 'Past Due' END::schedule_status_enum,
		status_override = NULL` + where(keys[1], "Observations"))
	b.Bypass(`UPDATE workflow_phases SET planned_end_date = planned_end_date + 3` + where(keys[2], "Request Info"))
	b.Bypass(`UPDATE workflow_phases SET started_by = 4242, completed_by = 4343` + where(keys[3], "Request Info"))
	b.Bypass(`DELETE FROM workflow_phases` + where(keys[4], "Finalize Test Report"))
	b.Bypass(`INSERT INTO workflow_phases (cycle_id, report_id, phase_name, state, schedule_status, status, planned_end_date)
		SELECT cycle_id, report_id, phase_name, 'Not Started', 'On Track', 'Not Started', planned_end_date FROM workflow_phases` +
		where(keys[5], "Testing") + " LIMIT 1")
	// The shadow loses a projection row.
	b.Exec(`DELETE FROM dtebridge.shadow_phases WHERE cycle_id = $1 AND report_id = $2 AND phase = 'testing'`, keys[6].CycleID, keys[6].ReportID)
	// A label no mapping knows.
	b.Exec(`ALTER TYPE phase_state_enum ADD VALUE 'Escalated'`)
	// (with no override masking it, whatever the simulation left there).
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated', state_override = NULL` + where(keys[7], "Planning"))
	// The projection lies about a status legacy computed by its own rule.
	b.Exec(`UPDATE dtebridge.shadow_phases SET status = CASE WHEN status = 'behind_schedule' THEN 'on_schedule' ELSE 'behind_schedule' END
		WHERE cycle_id = $1 AND report_id = $2 AND phase = 'planning'`, keys[9].CycleID, keys[9].ReportID)
	// A rule the shadow records: Observations started with Testing not done.
	b.Exec(`UPDATE workflow_phases SET state = 'In Progress', state_override = NULL` + where(keys[8], "Finalize Test Report"))
	time.Sleep(2 * time.Second)
	b.Quiescent(30 * time.Second)

	r := run(t, b, func(o *reconcile.Options) { o.Expected = nil })
	got := kinds(r, false)
	for _, k := range []string{dtetype.KindStateMismatch, dtetype.KindStatusMismatch, dtetype.KindDatesMismatch, dtetype.KindActorMismatch,
		dtetype.KindOrphanInShadow, dtetype.KindDuplicateRowsAdded, dtetype.KindMissingInShadow, dtetype.KindQuarantined, dtetype.KindRuleViolation,
		dtetype.KindLegacyStatusInconsistent} {
		if got[k] == 0 {
			t.Errorf("no %s found; found %v", k, got)
		}
	}
	find := func(k dtetype.Key, phase dtetype.Phase, kind string) *dtetype.Divergence {
		for i, d := range r.Divergences {
			if d.Key == k && d.Phase == phase && d.Kind == kind {
				return &r.Divergences[i]
			}
		}
		t.Errorf("no %s for %s %s", kind, k, phase)
		return &dtetype.Divergence{}
	}
	if d := find(keys[0], "request_info", dtetype.KindStateMismatch); d.Legacy == d.Shadow || !strings.Contains(d.Detail, "State") {
		t.Errorf("state mismatch: %+v", d)
	}
	// Legacy's stored status, bypassing its own rule, is told apart from a
	// status the shadow got wrong.
	if d := find(keys[1], "observations", dtetype.KindLegacyStatusInconsistent); !strings.Contains(d.Detail, "planned end") {
		t.Errorf("legacy status inconsistent: %+v", d)
	}
	find(keys[9], "planning", dtetype.KindStatusMismatch)
	find(keys[2], "request_info", dtetype.KindDatesMismatch)
	if d := find(keys[3], "request_info", dtetype.KindActorMismatch); !strings.Contains(d.Legacy, "4242") {
		t.Errorf("actor mismatch: %+v", d)
	}
	find(keys[4], "finalize_test_report", dtetype.KindOrphanInShadow)
	find(keys[5], "testing", dtetype.KindDuplicateRowsAdded)
	find(keys[6], "testing", dtetype.KindMissingInShadow)
	find(keys[7], "planning", dtetype.KindQuarantined)

	// The same run with the shipped rules: duplicates and rule violations
	// are accepted, the rest is not.
	r2 := run(t, b, nil)
	if exp := kinds(r2, true); exp[dtetype.KindDuplicateRowsAdded] == 0 || exp[dtetype.KindRuleViolation] == 0 {
		t.Errorf("shipped rules did not accept duplicates and rule violations: %v", exp)
	}
	if r2.Consistency >= 1 {
		t.Errorf("consistency %v with real faults", r2.Consistency)
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestLagGrace: a report whose change the shadow has not applied is in
// flight, not divergent, until the grace period passes; then it is stale.
func TestLagGrace(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(5, 100, 51)
	b.Quiescent(60 * time.Second)
	b.Srv.Stop() // the shadow stops following
	var k dtetype.Key
	if err := b.DB.Pool.QueryRow(context.Background(), `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Testing' AND state_override IS NULL LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	// A real change whatever the simulator left (a no-op update is captured
	// too, but diverges from nothing).
	b.Exec(`UPDATE workflow_phases SET state = CASE WHEN state = 'Completed' THEN 'In Progress'::workflow_state_enum ELSE 'Completed'::workflow_state_enum END
		WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k.CycleID, k.ReportID)

	r := run(t, b, func(o *reconcile.Options) { o.LagGrace = time.Hour })
	if r.Unexpected != 0 || r.InFlight == 0 {
		t.Errorf("within the grace: %d unexpected (%v), %d in flight; want 0 and some", r.Unexpected, kinds(r, false), r.InFlight)
	}
	time.Sleep(1500 * time.Millisecond)
	r = run(t, b, func(o *reconcile.Options) { o.LagGrace = time.Second })
	if got := kinds(r, false); got[dtetype.KindStale] == 0 || r.InFlight != 0 {
		t.Errorf("after the grace: %v, %d in flight; want stale and none in flight", got, r.InFlight)
	}
}

// TestPersistenceAndRepair: a trigger-bypass divergence is found by two
// recorded runs with the same first_seen, repaired, and the third run shows
// it resolved.
func TestPersistenceAndRepair(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(20, 150, 61)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	// Push the cycle's unfinished phases far out (as the legacy bulk script
	// does, statuses recomputed): completing one then changes nothing but
	// its state.
	var cycle int64
	b.DB.Pool.QueryRow(ctx, `SELECT min(cycle_id) FROM workflow_phases`).Scan(&cycle)
	if _, err := legacysim.NewModel(b.DB.Pool, legacysim.Seed, nil).BulkReschedule(ctx, cycle, 120); err != nil {
		t.Fatal(err)
	}
	b.Quiescent(30 * time.Second)
	var k dtetype.Key
	var label string
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id, phase_name::text FROM workflow_phases
		WHERE cycle_id = $1 AND planned_end_date > current_date + 10 AND state <> 'Completed' AND status_override IS NULL
		ORDER BY phase_id LIMIT 1`, cycle).Scan(&k.CycleID, &k.ReportID, &label); err != nil {
		t.Fatal(err)
	}
	b.Bypass(`UPDATE workflow_phases SET state = 'Completed', state_override = NULL
		WHERE cycle_id = $1 AND report_id = $2 AND phase_name::text = $3`, k.CycleID, k.ReportID, label)
	phase := b.Cfg.Legacy.Phases.Value(label)
	persist := func(o *reconcile.Options) { o.Persist = true }

	r1 := run(t, b, persist)
	if r1.Unexpected != 1 || r1.New < 1 || r1.RunID == 0 {
		t.Fatalf("run 1: %d unexpected, %d new, run %d", r1.Unexpected, r1.New, r1.RunID)
	}
	first := *r1.Divergences[indexUnexpected(r1)].FirstSeen
	time.Sleep(20 * time.Millisecond)
	r2 := run(t, b, persist)
	d2 := r2.Divergences[indexUnexpected(r2)]
	if r2.New != 0 || r2.Resolved != 0 || !d2.FirstSeen.Equal(first) {
		t.Fatalf("run 2: %d new, %d resolved, first_seen %v (was %v)", r2.New, r2.Resolved, d2.FirstSeen, first)
	}

	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	to := reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}
	if err := reconcile.Repair(ctx, o, to, r2); err != nil {
		t.Fatal(err)
	}
	if r2.Repair.Repaired != 1 || len(r2.Repair.Remaining) != 0 {
		t.Fatalf("repair: %+v", r2.Repair)
	}
	r3 := run(t, b, persist)
	if r3.Unexpected != 0 || r3.Resolved != 1 {
		t.Fatalf("run 3: %d unexpected, %d resolved; want 0 and 1", r3.Unexpected, r3.Resolved)
	}
	var resolved *time.Time
	var firstSeen time.Time
	if err := b.DB.Pool.QueryRow(ctx, `SELECT first_seen, resolved_at FROM dtebridge.divergences WHERE cycle_id = $1 AND report_id = $2 AND phase = $3
		AND kind = 'state_mismatch'`, k.CycleID, k.ReportID, phase).Scan(&firstSeen, &resolved); err != nil {
		t.Fatal(err)
	}
	if resolved == nil || !firstSeen.Equal(first) {
		t.Errorf("stored divergence first_seen %v resolved_at %v", firstSeen, resolved)
	}
}

func indexUnexpected(r *reconcile.Report) int {
	for i, d := range r.Divergences {
		if !d.Expected {
			return i
		}
	}
	return -1
}

// TestDeepCheckFindsTerminatedWorkflow: a terminated shadow workflow leaves
// a projection that no longer follows legacy; the deep check says so.
func TestDeepCheckFindsTerminatedWorkflow(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 60, 71)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	var k dtetype.Key
	b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_keys ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID)
	if err := b.TC.TerminateWorkflow(ctx, b.Cfg.Shadow.WorkflowIDPrefix+itoa(k.CycleID)+"-"+itoa(k.ReportID), "", "test"); err != nil {
		t.Fatal(err)
	}
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	to := reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}
	r := run(t, b, nil)
	if err := reconcile.Deep(ctx, o, to, 0, r); err != nil {
		t.Fatal(err)
	}
	if r.Deep.Queried != 4 || r.Deep.Disagreed != 1 || kinds(r, false)[dtetype.KindProjectionMismatch] != 1 {
		t.Fatalf("deep: %+v, kinds %v", r.Deep, kinds(r, false))
	}
	// A legacy change now starts a new workflow with only that change: the
	// other phases go missing, and repair brings them back.
	b.Exec(`UPDATE workflow_phases SET notes = 'touched' WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k.CycleID, k.ReportID)
	b.Quiescent(30 * time.Second)
	r = run(t, b, nil)
	if kinds(r, false)[dtetype.KindMissingInShadow] == 0 {
		t.Fatalf("after the restart: %v", kinds(r, false))
	}
	if err := reconcile.Repair(ctx, o, to, r); err != nil {
		t.Fatal(err)
	}
	if len(r.Repair.Remaining) != 0 {
		t.Fatalf("repair left %+v", r.Repair.Remaining)
	}
}

// TestJSONMatchesSchema validates a report with divergences, a repair and a
// deep check against the documented schema.
func TestJSONMatchesSchema(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 80, 81)
	b.Quiescent(60 * time.Second)
	b.Bypass(`UPDATE workflow_phases SET started_by = 999 WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases)`)
	r := run(t, b, func(o *reconcile.Options) { o.Persist = true })
	r.Deep = &reconcile.DeepReport{Queried: 1}
	r.Repair = &reconcile.RepairReport{Remaining: []dtetype.Divergence{}}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	var schemaDoc any
	if err := json.Unmarshal(reconcile.ReportSchema(), &schemaDoc); err != nil {
		t.Fatal(err)
	}
	if err := c.AddResource("report.schema.json", schemaDoc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("report.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(doc); err != nil {
		t.Fatalf("report does not match its schema: %v\n%s", err, buf.String())
	}
	if r.Unexpected == 0 {
		t.Error("the report should carry the actor divergence")
	}
	for _, f := range []func(*bytes.Buffer) error{
		func(w *bytes.Buffer) error { return r.WriteText(w, 10) },
		func(w *bytes.Buffer) error { return r.WriteMarkdown(w, 10) },
	} {
		var out bytes.Buffer
		if err := f(&out); err != nil || !strings.Contains(out.String(), "actor_mismatch") {
			t.Errorf("rendering lacks the divergence: %v\n%s", err, out.String())
		}
	}
}

// TestRepairRestartsTerminatedWorkflow: repairing a report whose shadow
// workflow was terminated starts a new run the way the mirror does, with
// its search attributes, and under the stream's own sequence numbers, so
// the report is not left looking behind (once it would stay behind for
// ever and turn stale after the grace).
func TestRepairRestartsTerminatedWorkflow(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 60, 73)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	keys, err := b.Store().ProjectedKeys(ctx, nil, 1)
	if err != nil || len(keys) != 1 {
		t.Fatal(err, keys)
	}
	k := keys[0]
	id := shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k)
	if err := b.TC.TerminateWorkflow(ctx, id, "", "test"); err != nil {
		t.Fatal(err)
	}
	// A legacy fix-up the trigger does not see.
	b.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k.CycleID, k.ReportID)
	r := run(t, b, nil)
	if kinds(r, false)[dtetype.KindActorMismatch] != 1 {
		t.Fatalf("before repair: %v", kinds(r, false))
	}
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	if err := reconcile.Repair(ctx, o, reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, r); err != nil {
		t.Fatal(err)
	}
	if r.Repair.Repaired != 1 || len(r.Repair.Remaining) != 0 || r.Repair.Reports != 1 {
		t.Fatalf("repair: %+v", r.Repair)
	}
	desc, err := b.TC.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enums.WORKFLOW_EXECUTION_STATUS_RUNNING {
		t.Fatalf("the repaired workflow is %s", st)
	}
	sa := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
	for _, name := range []string{"DtebridgeCycle", "DtebridgeReport", "DtebridgeDefinition"} {
		if sa[name] == nil {
			t.Errorf("the repaired workflow lacks search attribute %s (has %v)", name, sa)
		}
	}
	// Nothing is left behind: not now, and not after the grace either.
	if n, err := b.Store().ReportsBehind(ctx); err != nil || n != 0 {
		t.Fatalf("%d reports behind after the repair (err %v)", n, err)
	}
	time.Sleep(50 * time.Millisecond)
	if r := run(t, b, func(o *reconcile.Options) { o.LagGrace = time.Millisecond }); r.Unexpected != 0 || r.InFlight != 0 {
		t.Fatalf("after the repair: %v, %d in flight", kinds(r, false), r.InFlight)
	}
}

// TestQuarantineKeepsFindingsKinds: a report with a change in quarantine
// is reported as quarantined once, while the rule violations the shadow
// recorded for it keep their kind, and so stay expected under the rule
// that accepts them.
func TestQuarantineKeepsFindingsKinds(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(10, 400, 37)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	var k dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_keys WHERE violations > 1 ORDER BY violations DESC LIMIT 1`).
		Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatalf("no report with rule violations: %v", err)
	}
	before := run(t, b, nil)
	violations := 0
	for _, d := range before.Divergences {
		if d.Key == k && d.Kind == dtetype.KindRuleViolation && d.Expected {
			violations++
		}
	}
	if violations < 2 || before.Unexpected != 0 {
		t.Fatalf("before: %d expected violations of %s, %d unexpected", violations, k, before.Unexpected)
	}
	b.Exec(`ALTER TYPE workflow_state_enum ADD VALUE 'Escalated'`)
	// Two phases of the report change: one to a label the mapping does not
	// know, one held behind it.
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated' WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`, k.CycleID, k.ReportID)
	b.Exec(`UPDATE workflow_phases SET started_by = 4242 WHERE phase_id = (SELECT max(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`, k.CycleID, k.ReportID)
	bridgetest.WaitFor(t, 30*time.Second, "the quarantine", func() bool {
		q, _ := b.Store().ListQuarantine(ctx, false)
		return len(q) == 2
	})
	after := run(t, b, nil)
	got := 0
	for _, d := range after.Divergences {
		switch {
		case d.Key != k:
		case d.Kind == dtetype.KindRuleViolation:
			if !d.Expected {
				t.Errorf("a rule violation turned unexpected: %+v", d)
			}
			got++
		case d.Kind != dtetype.KindQuarantined:
			t.Errorf("a divergence of the quarantined report: %+v", d)
		}
	}
	if got != violations {
		t.Errorf("%d rule violations of %s after, %d before", got, k, violations)
	}
	if after.Unexpected != 1 || after.Counts[dtetype.KindQuarantined] != 1 {
		t.Errorf("after: %d unexpected, %v; want the quarantine once", after.Unexpected, after.Counts)
	}
}

// TestWholeTimeRangeReconciles: dates and times anywhere in PostgreSQL's
// range, infinity and BC included, are captured, compared and repaired:
// nothing fails and nothing freezes.
func TestWholeTimeRangeReconciles(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 40, 43)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	keys, err := b.Store().ProjectedKeys(ctx, nil, 2)
	if err != nil || len(keys) != 2 {
		t.Fatal(err, keys)
	}
	set := `SET state = 'Completed', state_override = NULL, status_override = NULL, schedule_status = 'On Schedule',
		planned_start_date = '10000-01-01', planned_end_date = '4713-01-01 BC', actual_start_date = '-infinity', actual_end_date = 'infinity',
		updated_at = now() WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`
	b.Exec(`UPDATE workflow_phases `+set, keys[0].CycleID, keys[0].ReportID)
	b.Quiescent(30 * time.Second)
	if q, _ := b.Store().ListQuarantine(ctx, false); len(q) != 0 {
		t.Fatalf("quarantined: %+v", q)
	}
	phases, err := b.Store().ProjectedPhases(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range phases {
		if p.ActualEnd != nil && p.ActualEnd.Equal(dtetype.MaxTime) {
			found = p.ActualStart.Equal(dtetype.MinTime) && p.PlannedStart.Equal(dtetype.MaxTime) && p.PlannedEnd.Equal(dtetype.MinTime)
		}
	}
	if !found {
		t.Errorf("projection of the out-of-range row: %+v", phases)
	}
	if r := run(t, b, nil); r.Unexpected != 0 {
		t.Fatalf("reconcile: %v %+v", r.Counts, r.Divergences)
	}
	// A fix-up the trigger does not see is found, named, and repaired.
	b.Bypass(`UPDATE workflow_phases SET actual_end_date = 'infinity'
		WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`, keys[1].CycleID, keys[1].ReportID)
	r := run(t, b, nil)
	if r.Counts[dtetype.KindDatesMismatch] != 1 {
		t.Fatalf("the bypassed infinity: %v %+v", r.Counts, r.Divergences)
	}
	for _, d := range r.Divergences {
		if d.Kind == dtetype.KindDatesMismatch && !strings.Contains(d.Legacy, "infinity") {
			t.Errorf("the divergence does not say infinity: %+v", d)
		}
	}
	if err := reconcile.Repair(ctx, b.Cfg.ReconcileOptions(b.DB.Pool), reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, r); err != nil ||
		r.Repair.Repaired != 1 {
		t.Fatalf("repair: %v %+v", err, r.Repair)
	}
}

// TestLegacyBaselineAndStatus: duplicate rows legacy held before install
// are old duplicates, one inserted afterwards is reported apart, and a
// second install keeps the baseline. A schedule status legacy stored
// against its own rule is its own kind, which repair leaves alone.
func TestLegacyBaselineAndStatus(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := bridgetest.New(t, legacysim.Production, &bridgetest.Options{History: func(db *testenv.DB) {
		if _, err := legacysim.Simulate(ctx, db.Pool, &legacysim.SimConfig{Profile: legacysim.Production, Reports: 12, Ops: 600,
			Concurrency: 1, Seed: 71}); err != nil {
			t.Fatal(err)
		}
	}})
	b.Quiescent(90 * time.Second)
	var before int
	b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM workflow_phases GROUP BY cycle_id, report_id, phase_name HAVING count(*) > 1) d`).Scan(&before)
	if before == 0 {
		t.Fatal("the history has no duplicate rows")
	}
	noRules := func(o *reconcile.Options) { o.Expected = nil }
	r := run(t, b, noRules)
	if got := kinds(r, false); got[dtetype.KindDuplicateRows] != before || got[dtetype.KindDuplicateRowsAdded] != 0 {
		t.Fatalf("%d phases with duplicates at install; found %v", before, got)
	}

	// A duplicate inserted now, by the application, and a second install.
	var k dtetype.Key
	b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Planning'
		AND (cycle_id, report_id) NOT IN (SELECT cycle_id, report_id FROM workflow_phases GROUP BY 1, 2, phase_name HAVING count(*) > 1)
		ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID)
	if _, err := legacysim.NewModel(b.DB.Pool, legacysim.Production, nil).Duplicate(ctx, legacysim.Ref{Key: k, Phase: "Planning"}); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, b.DB.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := adapter.Install(ctx, conn, b.Cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	b.Quiescent(30 * time.Second)
	r = run(t, b, noRules)
	var added []dtetype.Divergence
	for _, d := range r.Divergences {
		if d.Kind == dtetype.KindDuplicateRowsAdded {
			added = append(added, d)
		}
	}
	if len(added) != 1 || added[0].Key != k || added[0].Phase != "planning" || !strings.Contains(added[0].Detail, "1 when the bridge was installed") {
		t.Fatalf("added duplicates: %+v", added)
	}
	if got := kinds(r, false); got[dtetype.KindDuplicateRows] != before {
		t.Errorf("old duplicates after the second install: %v", got)
	}
	// The shipped rules accept the two apart.
	r = run(t, b, nil)
	rules := map[string]bool{}
	for _, d := range r.Divergences {
		if d.Kind == dtetype.KindDuplicateRows || d.Kind == dtetype.KindDuplicateRowsAdded {
			rules[d.Kind+" "+d.Rule] = true
		}
	}
	if !rules["duplicate_legacy_rows production-has-duplicate-rows"] || !rules["duplicate_rows_added production-still-adds-duplicate-rows"] || len(rules) != 2 {
		t.Errorf("rules for duplicates: %v", rules)
	}

	// Legacy stores Past Due on a phase its own rule calls on schedule.
	var s dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Testing' AND status_override IS NULL
		AND schedule_status <> 'Past Due' AND (planned_end_date IS NULL OR planned_end_date > current_date)
		AND (cycle_id, report_id) NOT IN (SELECT cycle_id, report_id FROM workflow_phases GROUP BY 1, 2, phase_name HAVING count(*) > 1)
		ORDER BY 1, 2 LIMIT 1`).Scan(&s.CycleID, &s.ReportID); err != nil {
		t.Fatal(err)
	}
	b.Bypass(`UPDATE workflow_phases SET schedule_status = 'Past Due' WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, s.CycleID, s.ReportID)
	r = run(t, b, noRules)
	find := func(r *reconcile.Report) *dtetype.Divergence {
		for i, d := range r.Divergences {
			if d.Key == s && d.Phase == "testing" && (d.Kind == dtetype.KindLegacyStatusInconsistent || d.Kind == dtetype.KindStatusMismatch) {
				return &r.Divergences[i]
			}
		}
		return nil
	}
	d := find(r)
	if d == nil || d.Kind != dtetype.KindLegacyStatusInconsistent || d.Legacy != string(dtetype.StatusBehindSchedule) ||
		!strings.Contains(d.Detail, "planned end") || !strings.Contains(d.Detail, "row last written") {
		t.Fatalf("the stored status: %+v", d)
	}
	if err := reconcile.Repair(ctx, b.Cfg.ReconcileOptions(b.DB.Pool), reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, r); err != nil {
		t.Fatal(err)
	}
	if r.Repair.Repaired != 0 || r.Repair.Attempted != 0 || r.Repair.NotRepairable[dtetype.KindLegacyStatusInconsistent] != 1 {
		t.Errorf("repair: %+v; it cannot change what legacy stored, and must say so", r.Repair)
	}
	b.Quiescent(30 * time.Second)
	if d := find(run(t, b, noRules)); d == nil || d.Kind != dtetype.KindLegacyStatusInconsistent {
		t.Errorf("after repair: %+v", d)
	}
}

// TestDeepComparesEveryField: a projection that lies about dates, actors or
// fields reconcile does not compare with legacy (the base state, the row
// count) is caught by the deep check, field by field.
func TestDeepComparesEveryField(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 80, 73)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	var k dtetype.Key
	b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_phases WHERE phase = 'planning' AND actual_start IS NOT NULL
		ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID)
	b.Exec(`UPDATE dtebridge.shadow_phases SET actual_start = actual_start - interval '3 days', started_by = '999', rows = rows + 1
		WHERE cycle_id = $1 AND report_id = $2 AND phase = 'planning'`, k.CycleID, k.ReportID)
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	o.Expected = nil
	r := run(t, b, func(o *reconcile.Options) { o.Expected = nil })
	if err := reconcile.Deep(ctx, o, reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, 0, r); err != nil {
		t.Fatal(err)
	}
	var d *dtetype.Divergence
	for i := range r.Divergences {
		if r.Divergences[i].Kind == dtetype.KindProjectionMismatch {
			if d != nil {
				t.Fatalf("more than one projection mismatch: %+v", r.Divergences)
			}
			d = &r.Divergences[i]
		}
	}
	if d == nil || d.Key != k || r.Deep.Disagreed != 1 {
		t.Fatalf("deep: %+v, %+v", r.Deep, d)
	}
	for _, want := range []string{"planning: ", "ActualStart: workflow ", "StartedBy: workflow ", `projection "999"`, "Rows: workflow 1, projection 2"} {
		if !strings.Contains(d.Detail, want) {
			t.Errorf("detail %q lacks %q", d.Detail, want)
		}
	}
}

// TestOneRowOneDivergence: a row changed in its state, dates and actors is
// one divergence naming every field, not three with the same detail; the
// report lists phases in the definition's order; a rule for one kind does
// not accept a row that also shows others.
func TestOneRowOneDivergence(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(6, 120, 83)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	var k dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Testing' AND state_override IS NULL
		ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	b.Bypass(`UPDATE workflow_phases SET state = CASE WHEN state = 'Completed' THEN 'Not Started' ELSE 'Completed' END::workflow_state_enum,
		actual_end_date = coalesce(actual_end_date, now()) - interval '5 days', completed_by = 4343
		WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k.CycleID, k.ReportID)
	_, def, _ := b.Cfg.LoadDefinitions()
	r := run(t, b, func(o *reconcile.Options) { o.Expected, o.Order = nil, def.PhaseIDs() })
	var got []dtetype.Divergence
	for _, d := range r.Divergences {
		if d.Key == k && d.Phase == "testing" && d.Kind != dtetype.KindRuleViolation {
			got = append(got, d)
		}
	}
	if len(got) != 1 {
		t.Fatalf("divergences for the one changed row: %+v", got)
	}
	d := got[0]
	if d.Kind != dtetype.KindStateMismatch || !slices.Contains(d.Also, dtetype.KindDatesMismatch) || !slices.Contains(d.Also, dtetype.KindActorMismatch) ||
		!slices.Contains(d.Fields, "State") || !slices.Contains(d.Fields, "ActualEnd") || !slices.Contains(d.Fields, "CompletedBy") {
		t.Errorf("the row's divergence: %+v", d)
	}
	rule := reconcile.Rule{Name: "dates", Kind: dtetype.KindStateMismatch, Reason: "x"}
	if rule.Matches(&d) {
		t.Error("a rule for state mismatches accepted a row whose dates and actors differ too")
	}
	var order []dtetype.Phase
	for _, p := range r.Phases {
		order = append(order, p.Phase)
	}
	if want := def.PhaseIDs(); !slices.Equal(order, want) {
		t.Errorf("phases listed %v, want the definition's order %v", order, want)
	}
}
