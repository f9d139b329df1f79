package shadow_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/api/temporalproto"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
)

var updateReplay = flag.Bool("update-replay", false, "regenerate the committed workflow histories in testdata/replay from a live dev server")

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestReplay replays committed histories of ShadowWorkflow against the
// current code. A change that is not replay-compatible fails here, in CI,
// rather than in production; such a change must go behind workflow.GetVersion.
func TestReplay(t *testing.T) {
	if *updateReplay {
		recordHistories(t)
	}
	files, err := filepath.Glob("testdata/replay/*.json")
	if err != nil || len(files) < 2 {
		t.Fatalf("want committed histories in testdata/replay, found %v (%v); run go test -run TestReplay -update-replay", files, err)
	}
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(shadow.ShadowWorkflow, workflow.RegisterOptions{Name: shadow.WorkflowName})
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if err := r.ReplayWorkflowHistoryFromJSONFile(nil, f); err != nil {
				t.Fatalf("replaying %s: %v", f, err)
			}
		})
	}
}

// recordHistories runs shadow workflows on the test's dev server and saves
// their histories.
func recordHistories(t *testing.T) {
	ctx := context.Background()
	db := testenv.NewDB(t)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE workflow_phases (phase_id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adapter.Install(ctx, conn, cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	c := testenv.TemporalClient(t)
	w := shadow.NewWorker(c, cfg.Store(db.Pool), shadow.WorkerConfig{TaskQueue: "replay-" + db.Name})
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	defs, err := shadow.LoadBuiltin("definitions/standard_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	n := 0
	ch := func(phase dtetype.Phase, row int, state dtetype.State, role string) dtetype.PhaseChange {
		n++
		c := dtetype.PhaseChange{EventID: "c" + strconv.Itoa(n), Seq: int64(n), Key: dtetype.Key{CycleID: 1, ReportID: 1}, RowID: strconv.Itoa(row),
			Phase: phase, Op: dtetype.OpUpdate, State: state, BaseState: state, Status: dtetype.StatusOnSchedule,
			BaseStatus: dtetype.StatusOnSchedule, TxTime: now, CapturedAt: now, StartedBy: "1", StartedByRole: role, ActualStart: &now}
		return c
	}
	record := func(name string, def dtetype.Definition, maxChanges int64, batches [][]dtetype.PhaseChange) {
		id := "replay-" + name + "-" + db.Name
		opts := client.StartWorkflowOptions{ID: id, TaskQueue: "replay-" + db.Name}
		in := shadow.Input{Key: dtetype.Key{CycleID: 1, ReportID: 1}, Definition: def, MaxChangesPerRun: maxChanges}
		var run client.WorkflowRun
		for _, b := range batches {
			if run, err = c.SignalWithStartWorkflow(ctx, id, shadow.SignalChanges, shadow.Signal{Changes: b}, opts, shadow.WorkflowName, in); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond)
		}
		if _, err := c.QueryWorkflow(ctx, id, "", shadow.QueryState); err != nil {
			t.Fatal(err)
		}
		runID := run.GetRunID()
		if maxChanges == 0 {
			if err := c.TerminateWorkflow(ctx, id, runID, "history recorded"); err != nil {
				t.Fatal(err)
			}
		}
		hist := &historypb.History{}
		it := c.GetWorkflowHistory(ctx, id, runID, false, 0)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				t.Fatal(err)
			}
			hist.Events = append(hist.Events, e)
		}
		b, err := temporalproto.CustomJSONMarshalOptions{Indent: "  "}.Marshal(hist)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("testdata/replay", name+".json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	legacyPolicy := *defs[0]
	record("legacy-policy-violations", legacyPolicy, 0, [][]dtetype.PhaseChange{
		{ch("planning", 1, dtetype.StateInProgress, "Tester"), ch("testing", 6, dtetype.StateInProgress, "Report Owner")},
		{ch("planning", 1, dtetype.StateCompleted, "Tester"), ch("planning", 1, dtetype.StateCompleted, "Tester")},
		{ch("scoping", 2, dtetype.StateCompleted, "Tester"), ch("testing", 6, dtetype.StateNotStarted, "")},
	})
	slaPolicy := *defs[0]
	slaPolicy.StatusPolicy = dtetype.PolicySLA
	record("sla-policy-continue-as-new", slaPolicy, 3, [][]dtetype.PhaseChange{
		{ch("planning", 1, dtetype.StateInProgress, "Tester")},
		{ch("planning", 1, dtetype.StateCompleted, "Tester"), ch("scoping", 2, dtetype.StateInProgress, "Tester")},
	})
}
