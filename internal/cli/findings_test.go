package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// TestFindingsJudgeTheHistory: legacy history that predates the bridge is
// judged once from what the backfill delivers and reported apart from live
// violations, in every format and in metrics; a second backfill does not
// judge it again.
func TestFindingsJudgeTheHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var early dtetype.Key // Observations started before Testing was done
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{History: func(db *testenv.DB) {
		if _, err := legacysim.Simulate(ctx, db.Pool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: 12, Ops: 150, Concurrency: 1, Seed: 5}); err != nil {
			t.Fatal(err)
		}
		if err := db.Pool.QueryRow(ctx, `UPDATE workflow_phases SET state = 'In Progress', actual_start_date = now() - interval '3 days', started_by = 12
			WHERE phase_id = (SELECT o.phase_id FROM workflow_phases o JOIN workflow_phases t USING (cycle_id, report_id)
				WHERE o.phase_name = 'Observations' AND o.state = 'Not Started' AND t.phase_name = 'Testing' AND t.state = 'Not Started'
				ORDER BY o.phase_id LIMIT 1)
			RETURNING cycle_id, report_id`).Scan(&early.CycleID, &early.ReportID); err != nil {
			t.Fatal(err)
		}
	}})
	b.Quiescent(60 * time.Second)
	// The backfill's last report learns that its history is complete in a
	// signal of its own, after its rows (and so after Quiescent): wait
	// until every shadow has judged its history.
	bridgetest.WaitFor(t, 30*time.Second, "every shadow to judge its history", func() bool {
		rows, err := b.DB.Pool.Query(ctx, `SELECT DISTINCT cycle_id, report_id FROM workflow_phases`)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := pgx.CollectRows(rows, pgx.RowToStructByPos[dtetype.Key])
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			v, err := b.TC.QueryWorkflow(ctx, shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k), "", shadow.QueryState)
			var st shadow.State
			if err != nil || v.Get(&st) != nil || st.History != shadow.HistoryJudged {
				return false
			}
		}
		return true
	})
	base := bridgeFlags(t, b)
	cli := func(args ...string) result { return runCLI(t, append(append([]string{}, base...), args...)...) }
	read := func() *shadow.FindingsReport {
		t.Helper()
		r := cli("findings", "--format", "json", "--limit", "0")
		validateOutput(t, "findings", r.stdout)
		var rep shadow.FindingsReport
		if r.code != 0 || json.Unmarshal([]byte(r.stdout), &rep) != nil {
			t.Fatalf("findings --format json: exit %d, %q %q", r.code, r.stdout, r.stderr)
		}
		return &rep
	}
	rep := read()
	var dep *shadow.Finding
	for i, f := range rep.Findings {
		if f.Origin == shadow.OriginHistorical && f.Phase == "observations" && f.Rule == shadow.RuleDependencyUnmet {
			dep = &rep.Findings[i]
		}
	}
	if dep == nil || !slices.Contains(dep.Keys, early) || dep.Reports != int64(len(dep.Keys)) {
		t.Fatalf("no historical dependency_unmet finding for %s in observations: %+v", early, rep.Findings)
	}
	if rep.Historical == 0 || rep.HistoricalReports == 0 || rep.Live != 0 {
		t.Errorf("before any live change: %d historical in %d reports, %d live", rep.Historical, rep.HistoricalReports, rep.Live)
	}

	// A live change that breaks a rule counts as live, apart.
	model := legacysim.NewModel(b.DB.Pool, legacysim.Seed, nil)
	var k dtetype.Key
	b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Planning' AND state = 'Not Started' ORDER BY 1, 2 LIMIT 1`).Scan(&k.CycleID, &k.ReportID)
	if k.ReportID == 0 {
		var cycle int64
		b.DB.Pool.QueryRow(ctx, `SELECT min(cycle_id) FROM test_cycles`).Scan(&cycle)
		id, err := model.CreateReport(ctx, "late", "FRB")
		if err != nil {
			t.Fatal(err)
		}
		k = dtetype.Key{CycleID: cycle, ReportID: id}
		if _, err := model.AddReport(ctx, k, legacysim.AddOptions{Tester: 11}); err != nil {
			t.Fatal(err)
		}
	}
	// User 14 is a Report Owner, who may not start planning.
	if _, err := model.Start(ctx, legacysim.Ref{Key: k, Phase: "Planning"}, 14, legacysim.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	b.Quiescent(30 * time.Second)
	after := read()
	if after.Live == 0 || after.Historical != rep.Historical {
		t.Errorf("after a live violation: %d live, %d historical (was %d)", after.Live, after.Historical, rep.Historical)
	}

	// A second backfill delivers the history again: it is not judged twice.
	if err := b.Store().RequestBackfill(ctx, store.MirrorConsumer); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 60*time.Second, "the second backfill", func() bool {
		cps, _ := b.Store().Checkpoints(ctx, time.Hour)
		for _, cp := range cps {
			if cp.Consumer == store.MirrorConsumer && cp.BackfilledAt != nil && cp.BackfilledAt.After(rep.GeneratedAt) {
				return true
			}
		}
		return false
	})
	b.Quiescent(30 * time.Second)
	if again := read(); again.Historical != rep.Historical || again.HistoricalReports != rep.HistoricalReports {
		t.Errorf("after a second backfill: %d historical in %d reports, was %d in %d", again.Historical, again.HistoricalReports, rep.Historical, rep.HistoricalReports)
	}

	// Table, markdown, a phase filter, an unknown phase, and metrics.
	if r := cli("findings", "--phase", "observations"); r.code != 0 || !strings.Contains(r.stdout, "historical") ||
		!strings.Contains(r.stdout, "dependency_unmet") || strings.Contains(r.stdout, "planning") {
		t.Errorf("findings --phase observations: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := cli("findings", "--format", "markdown"); r.code != 0 || !strings.Contains(r.stdout, "| historical | observations | dependency_unmet |") {
		t.Errorf("findings --format markdown: exit %d, %q", r.code, r.stdout)
	}
	if r := cli("findings", "--phase", "nope"); r.code != 2 || !strings.Contains(r.stderr, "observations") {
		t.Errorf("unknown phase: exit %d, %q", r.code, r.stderr)
	}
	metrics := scrape(t, b)
	if !strings.Contains(metrics, `dtebridge_shadow_findings{origin="historical",phase="observations",rule="dependency_unmet"}`) ||
		!strings.Contains(metrics, `dtebridge_shadow_findings{origin="live",phase="planning",rule="role_not_allowed"}`) {
		t.Errorf("findings metrics missing")
	}
}

// scrape returns the served bridge's /metrics.
func scrape(t *testing.T, b *bridgetest.Bridge) string {
	t.Helper()
	resp, err := http.Get("http://" + b.Srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}
