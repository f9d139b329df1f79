package serve_test

import (
	"context"
	"strings"
	"testing"
	"time"

	sdkpb "go.temporal.io/api/sdk/v1"
	"go.temporal.io/sdk/converter"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestTemporalUIShowsDivergence: each shadow workflow carries a static
// summary and current details, and after a reconcile its
// DtebridgeDivergent search attribute and details say whether its report
// diverges, read through the Temporal API as the Temporal UI reads them.
func TestTemporalUIShowsDivergence(t *testing.T) {
	t.Parallel()
	// Every scheduled run full: the fault below bypasses trigger capture,
	// which only a full sweep finds.
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{ReconcileEvery: 500 * time.Millisecond, FullEvery: -1})
	b.Simulate(5, 80, 23)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	var k dtetype.Key
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id FROM workflow_phases WHERE phase_name = 'Planning' ORDER BY phase_id LIMIT 1`).
		Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	id := shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k)
	dc := converter.GetDefaultDataConverter()
	divergent := func() (bool, string, string) {
		desc, err := b.TC.DescribeWorkflowExecution(ctx, id, "")
		if err != nil {
			t.Fatal(err)
		}
		var flag bool
		if p := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()["DtebridgeDivergent"]; p != nil {
			_ = dc.FromPayload(p, &flag)
		}
		var summary string
		if p := desc.GetExecutionConfig().GetUserMetadata().GetSummary(); p != nil {
			_ = dc.FromPayload(p, &summary)
		}
		v, err := b.TC.QueryWorkflow(ctx, id, "", "__temporal_workflow_metadata")
		var md sdkpb.WorkflowMetadata
		if err == nil {
			err = v.Get(&md)
		}
		if err != nil {
			t.Fatalf("workflow metadata: %v", err)
		}
		return flag, summary, md.GetCurrentDetails()
	}
	_, summary, details := divergent()
	if !strings.Contains(summary, "Shadow of legacy report") || !strings.Contains(details, "**Report") || !strings.Contains(details, "planning:") {
		t.Errorf("summary %q, details %q", summary, details)
	}

	b.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, k.CycleID, k.ReportID)
	bridgetest.WaitFor(t, 30*time.Second, "the workflow marked divergent", func() bool {
		flag, _, details := divergent()
		return flag && strings.Contains(details, "**Divergent**") && strings.Contains(details, dtetype.KindActorMismatch)
	})
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	o.Scope = reconcile.Scope{Keys: []dtetype.Key{k}}
	r, err := reconcile.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := reconcile.Repair(ctx, o, reconcile.TemporalOptions{Client: b.TC, WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, r); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 30*time.Second, "the workflow marked agreeing again", func() bool {
		flag, _, details := divergent()
		return !flag && strings.Contains(details, "Agrees with legacy")
	})
}
