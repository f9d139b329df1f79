package serve

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

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// bridge is a legacy database with the bridge installed and served.
type bridge struct {
	t       *testing.T
	db      *testenv.DB
	cfg     *config.Config
	profile *legacy.Profile
	srv     *Server
	tc      client.Client
}

func setup(t *testing.T, p *legacy.Profile) *bridge {
	t.Helper()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := legacy.Init(ctx, db.Pool, p); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Example(p.Name)
	if err != nil {
		t.Fatal(err)
	}
	// Tests share one Temporal server: keep their workflows apart.
	cfg.Shadow.TaskQueue = "tq-" + db.Name
	cfg.Shadow.WorkflowIDPrefix = db.Name + "-"
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := adapter.Install(ctx, conn, cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	b := &bridge{t: t, db: db, cfg: cfg, profile: p, tc: testenv.TemporalClient(t)}
	b.start()
	return b
}

func (b *bridge) start() {
	b.t.Helper()
	srv, err := Start(context.Background(), Options{Config: b.cfg, Pool: b.db.Pool, Temporal: b.tc, Namespace: "default",
		Listen: "127.0.0.1:0", Reader: func(rc *adapter.ReaderConfig) {
			rc.PollInterval, rc.MaintenanceInterval, rc.StandbyInterval = 200*time.Millisecond, 500*time.Millisecond, 200*time.Millisecond
			rc.RetryBackoff = time.Second
		}, Mirror: func(mc *adapter.MirrorConfig) { mc.SignalTimeout = time.Second }})
	if err != nil {
		b.t.Fatal(err)
	}
	b.srv = srv
	b.t.Cleanup(srv.Stop)
}

// quiescent waits until every captured change has been applied by the
// shadow and projected.
func (b *bridge) quiescent(timeout time.Duration) {
	b.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	for {
		backlog, err := adapter.BacklogOf(ctx, b.db.Pool, b.cfg.CaptureConfig(), "mirror")
		if err != nil {
			b.t.Fatal(err)
		}
		var behind int
		err = b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.mirror_keys m
			LEFT JOIN dtebridge.shadow_keys s USING (cycle_id, report_id)
			WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq`).Scan(&behind)
		if err != nil {
			b.t.Fatal(err)
		}
		cps, _ := adapter.Checkpoints(ctx, b.db.Pool, b.cfg.CaptureConfig())
		if backlog.Changes == 0 && behind == 0 && len(cps) > 0 && cps[0].BackfilledAt != nil {
			return
		}
		if err := b.srv.Err(); err != nil {
			b.t.Fatalf("bridge failed: %v", err)
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("not quiescent after %s: backlog %d, %d reports behind", timeout, backlog.Changes, behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type phaseView struct {
	State  dtetype.State
	Status dtetype.Status
	Rows   int
}

// legacyView reads legacy's effective state per (cycle, report, phase),
// following the oldest row where there are duplicates, as legacy does.
func (b *bridge) legacyView() map[string]phaseView {
	b.t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT cycle_id, report_id, phase_name::text,
		(array_agg(coalesce(state_override, state)::text ORDER BY phase_id))[1],
		(array_agg(coalesce(status_override, schedule_status)::text ORDER BY phase_id))[1], count(*)
		FROM workflow_phases GROUP BY 1, 2, 3`)
	if err != nil {
		b.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]phaseView{}
	for rows.Next() {
		var c, r int64
		var phase, state, status string
		var n int
		if err := rows.Scan(&c, &r, &phase, &state, &status, &n); err != nil {
			b.t.Fatal(err)
		}
		k := fmt.Sprintf("%d/%d/%s", c, r, b.cfg.Legacy.Phases[phase])
		v := out[k]
		v.Rows += n
		if v.State == "" {
			v.State, v.Status = b.cfg.Legacy.States[state], b.cfg.Legacy.Statuses[status]
		}
		out[k] = v
	}
	return out
}

func (b *bridge) shadowView() map[string]phaseView {
	b.t.Helper()
	rows, err := b.db.Pool.Query(context.Background(), `SELECT cycle_id, report_id, phase, state, legacy_status, rows FROM dtebridge.shadow_phases`)
	if err != nil {
		b.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]phaseView{}
	for rows.Next() {
		var c, r int64
		var phase, state, status string
		var n int
		if err := rows.Scan(&c, &r, &phase, &state, &status, &n); err != nil {
			b.t.Fatal(err)
		}
		out[fmt.Sprintf("%d/%d/%s", c, r, phase)] = phaseView{dtetype.State(state), dtetype.Status(status), n}
	}
	return out
}

func compareViews(t *testing.T, want, got map[string]phaseView) {
	t.Helper()
	bad := 0
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			bad++
			if bad <= 5 {
				t.Errorf("%s: legacy %+v, shadow %+v (present %v)", k, w, g, ok)
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			bad++
			t.Errorf("%s in the shadow only", k)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d phases differ", bad, len(want))
	}
}

// TestSimulatorEndToEnd runs simulator traffic through capture, the mirror
// and real shadow workflows, in both profiles: once quiet, the shadow's
// projection equals legacy's effective state for every report and phase,
// and the workflows themselves agree with their projection.
func TestSimulatorEndToEnd(t *testing.T) {
	t.Parallel()
	for _, p := range legacy.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, p)
			ctx := context.Background()
			if _, err := legacy.Simulate(ctx, b.db.Pool, &legacy.SimConfig{Profile: p, Reports: 15, Ops: 800, Rate: 0, Concurrency: 3, Seed: 11}); err != nil {
				t.Fatal(err)
			}
			b.quiescent(90 * time.Second)
			want := b.legacyView()
			compareViews(t, want, b.shadowView())

			// The workflows agree with the projection.
			var keys []dtetype.Key
			rows, _ := b.db.Pool.Query(ctx, `SELECT cycle_id, report_id FROM dtebridge.shadow_keys ORDER BY 1, 2 LIMIT 5`)
			for rows.Next() {
				var k dtetype.Key
				rows.Scan(&k.CycleID, &k.ReportID)
				keys = append(keys, k)
			}
			rows.Close()
			for _, k := range keys {
				v, err := b.tc.QueryWorkflow(ctx, shadow.WorkflowID(b.cfg.Shadow.WorkflowIDPrefix, k), "", shadow.QueryState)
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
				if st.DefinitionID != b.srv.Definition().ID {
					t.Errorf("workflow %s runs %s", k, st.DefinitionID)
				}
				desc, err := b.tc.DescribeWorkflowExecution(ctx, shadow.WorkflowID(b.cfg.Shadow.WorkflowIDPrefix, k), "")
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
			b.db.Pool.QueryRow(ctx, `SELECT coalesce(sum(violations), 0) FROM dtebridge.shadow_keys`).Scan(&violations)
			if violations == 0 {
				t.Error("simulator traffic breaks the new rules (out-of-order starts, wrong roles), but no violations were recorded")
			}
		})
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t, legacy.Seed)
	base := "http://" + b.srv.Addr()
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
