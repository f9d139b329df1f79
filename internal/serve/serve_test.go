package serve_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestSimulatorEndToEnd runs simulator traffic through capture, the mirror
// and real shadow workflows, in both profiles: once quiet, the shadow's
// projection equals legacy's effective state for every report and phase,
// and the workflows themselves agree with their projection.
func TestSimulatorEndToEnd(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			b := bridgetest.New(t, p, nil)
			ctx := context.Background()
			b.Simulate(15, 800, 11)
			b.Quiescent(90 * time.Second)
			want := b.LegacyView()
			bridgetest.CompareViews(t, want, b.ShadowView())

			// The workflows agree with the projection.
			var keys []dtetype.Key
			rows, _ := b.DB.Pool.Query(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_keys ORDER BY 1, 2 LIMIT 5`)
			for rows.Next() {
				var k dtetype.Key
				rows.Scan(&k.CycleID, &k.ReportID)
				keys = append(keys, k)
			}
			rows.Close()
			for _, k := range keys {
				v, err := b.TC.QueryWorkflow(ctx, shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k), "", shadow.QueryState)
				if err != nil {
					t.Fatal(err)
				}
				var st shadow.State
				if err := v.Get(&st); err != nil {
					t.Fatal(err)
				}
				for _, ps := range st.Phases {
					w := want[fmt.Sprintf("%d/%d/%s", k.CycleID, k.ReportID, ps.Phase)]
					if ps.State != w.State || ps.LegacyStatus != w.Status {
						t.Errorf("workflow %s phase %s: %s/%s, legacy %+v", k, ps.Phase, ps.State, ps.LegacyStatus, w)
					}
				}
				if st.DefinitionID != b.Srv.Definition().ID {
					t.Errorf("workflow %s runs %s", k, st.DefinitionID)
				}
				desc, err := b.TC.DescribeWorkflowExecution(ctx, shadow.WorkflowID(b.Cfg.Shadow.WorkflowIDPrefix, k), "")
				if err != nil {
					t.Fatal(err)
				}
				fields := desc.GetWorkflowExecutionInfo().GetSearchAttributes().GetIndexedFields()
				for _, name := range []string{"DtebridgeCycle", "DtebridgeReport", "DtebridgeDefinition", "DtebridgeHasViolations"} {
					if _, ok := fields[name]; !ok {
						t.Errorf("workflow %s lacks search attribute %s", k, name)
					}
				}
			}
			var violations int
			b.DB.Pool.QueryRow(ctx, `SELECT coalesce(sum(violations), 0) FROM dtebridge.shadow_keys`).Scan(&violations)
			if violations == 0 {
				t.Error("simulator traffic breaks the new rules (out-of-order starts, wrong roles), but no violations were recorded")
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	base := "http://" + b.Srv.Addr()
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, `"ready": true`) {
		t.Errorf("/readyz: %d %q", code, body)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "dtebridge_capture_leader") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, missing bridge or Go metrics", code)
	}
	code, body = get("/api/v1/definitions")
	var list []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0]["id"] != "standard_dt_testing" {
		t.Errorf("/api/v1/definitions: %d %s", code, body)
	}
	code, body = get("/api/v1/definitions/standard_dt_testing")
	var d dtetype.Definition
	if code != 200 || json.Unmarshal([]byte(body), &d) != nil || len(d.Phases) != 7 || d.Phase("sample_selection").Route != "/sample-selection" {
		t.Errorf("/api/v1/definitions/standard_dt_testing: %d %s", code, body)
	}
	if code, _ := get("/api/v1/definitions/nope"); code != 404 {
		t.Errorf("unknown definition: %d, want 404", code)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Errorf("unknown path: %d, want 404", code)
	}
}

// TestScheduledReconcile: serve --reconcile-every records runs by itself,
// incremental ones between full sweeps every --full-every.
func TestScheduledReconcile(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{ReconcileEvery: 300 * time.Millisecond, FullEvery: 2 * time.Second})
	b.Simulate(3, 40, 5)
	b.Quiescent(60 * time.Second)
	deadline := time.Now().Add(30 * time.Second)
	for b.Srv.LastReconcile() == nil || b.Srv.LastReconcile().Compared == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no scheduled reconcile ran")
		}
		time.Sleep(100 * time.Millisecond)
	}
	bridgetest.WaitFor(t, 30*time.Second, "two full sweeps with incremental runs between", func() bool {
		var full, incremental, between int
		b.DB.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE kind = 'full'), count(*) FILTER (WHERE kind = 'incremental'),
			count(*) FILTER (WHERE kind = 'incremental' AND run_id > (SELECT min(run_id) FROM dtebridge.reconcile_runs WHERE kind = 'full')
				AND run_id < (SELECT max(run_id) FROM dtebridge.reconcile_runs WHERE kind = 'full'))
			FROM dtebridge.reconcile_runs`).Scan(&full, &incremental, &between)
		return full >= 2 && between >= 1
	})
}

// TestServeRefusesAMismatchedConfig: serve runs the preflight check at
// start and refuses a configuration that does not fit the database.
func TestServeRefusesAMismatchedConfig(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true})
	b.Cfg.Legacy.Columns.PlannedEnd = "due_date"
	_, err := serve.Start(context.Background(), serve.Options{Config: b.Cfg, Pool: b.DB.Pool, Temporal: b.TC, Namespace: "default", Listen: "127.0.0.1:0"})
	if err == nil || !strings.Contains(err.Error(), "preflight check found") || !strings.Contains(err.Error(), "legacy.columns.planned_end") {
		t.Fatalf("serve with a column the table lacks: %v", err)
	}
}
