package cutover_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
)

// conditionalDefinition writes the standard definition with Data Provider
// ID applying only to FRB reports.
func conditionalDefinition(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile("../shadow/definitions/standard_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def := strings.Replace(string(src), "            name: Data Provider ID\n", "            name: Data Provider ID\n            when: \"regulation in [FRB]\"\n", 1)
	if def == string(src) {
		t.Fatal("the standard definition has no Data Provider ID branch to make conditional")
	}
	path := filepath.Join(t.TempDir(), "conditional.yaml")
	if err := os.WriteFile(path, []byte(def), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConditionalPhases: report attributes come from the configured table,
// reach the shadow at start and when legacy changes them, decide whether a
// conditional branch applies in the shadow's judging and in commands alike,
// and reconcile compares them.
func TestConditionalPhases(t *testing.T) {
	t.Parallel()
	defPath := conditionalDefinition(t)
	e := setup(t, func(c *config.Config) {
		c.Definitions = []string{defPath}
		c.Legacy.Attributes = map[string]legacy.Attribute{"regulation": {Table: "public.reports", Key: "report_id", Column: "regulation"}}
	})
	ctx := context.Background()
	var cycle int64
	e.DB.Pool.QueryRow(ctx, `SELECT min(cycle_id) FROM test_cycles`).Scan(&cycle)
	report := func(regulation string) dtetype.Key {
		t.Helper()
		id, err := e.model.CreateReport(ctx, "conditional "+regulation, regulation)
		if err != nil {
			t.Fatal(err)
		}
		k := dtetype.Key{CycleID: cycle, ReportID: id}
		if _, err := e.model.AddReport(ctx, k, legacysim.AddOptions{Tester: 12}); err != nil {
			t.Fatal(err)
		}
		// Legacy takes it to Sample Selection completed; Data Provider ID
		// never starts.
		ref := func(p string) legacysim.Ref { return legacysim.Ref{Key: k, Phase: p} }
		steps := []func() error{
			func() error { _, err := e.model.Start(ctx, ref("Planning"), 12, legacysim.StartOptions{}); return err },
			func() error {
				_, err := e.model.Complete(ctx, ref("Planning"), 12, legacysim.CompleteOptions{})
				return err
			},
			func() error {
				_, err := e.model.Complete(ctx, ref("Scoping"), 12, legacysim.CompleteOptions{})
				return err
			},
			func() error {
				_, err := e.model.Start(ctx, ref("Sample Selection"), 12, legacysim.StartOptions{})
				return err
			},
			func() error {
				_, err := e.model.Complete(ctx, ref("Sample Selection"), 12, legacysim.CompleteOptions{})
				return err
			},
		}
		for _, step := range steps {
			if err := step(); err != nil {
				t.Fatal(err)
			}
		}
		return k
	}
	violations := func(k dtetype.Key, phase dtetype.Phase) []string {
		var out []string
		rows, _ := e.DB.Pool.Query(ctx, `SELECT v->>'rule' || ': ' || (v->>'detail') FROM dtebridge.shadow_keys k, jsonb_array_elements(k.recent_violations) v
			WHERE k.cycle_id = $1 AND k.report_id = $2 AND v->>'phase' = $3`, k.CycleID, k.ReportID, string(phase))
		defer rows.Close()
		for rows.Next() {
			var s string
			rows.Scan(&s)
			out = append(out, s)
		}
		return out
	}
	attributes := func(k dtetype.Key) string {
		var a string
		e.DB.Pool.QueryRow(ctx, `SELECT attributes::text FROM dtebridge.shadow_keys WHERE cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID).Scan(&a)
		return a
	}

	// 1. Shadow judging: legacy starts Request Info without Data Provider ID.
	frb, occ := report("FRB"), report("OCC")
	for _, k := range []dtetype.Key{frb, occ} {
		if _, err := e.model.Start(ctx, legacysim.Ref{Key: k, Phase: "Request Info"}, 12, legacysim.StartOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	e.Quiescent(30 * time.Second)
	if v := violations(frb, "request_info"); len(v) != 1 || !strings.Contains(v[0], "data_provider_id is not_started") {
		t.Errorf("FRB report, where Data Provider ID applies: violations %v", v)
	}
	if v := violations(occ, "request_info"); len(v) != 0 {
		t.Errorf("OCC report, where it does not apply: violations %v", v)
	}
	if a := attributes(occ); a != `{"regulation": "OCC"}` {
		t.Errorf("OCC report's projected attributes: %s", a)
	}

	// 2. Commands: Request Info on the new engine; the validator judges by
	// the same attributes.
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "request_info", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	frb2, occ2 := report("FRB"), report("OCC")
	e.Quiescent(30 * time.Second)
	start := shadow.Command{Action: dtetype.ActionStart, Phase: "request_info", Actor: "12", Role: "Tester", Reason: "evidence"}
	if _, err := e.x.Execute(ctx, frb2, start); err == nil || !strings.Contains(err.Error(), shadow.RuleDependencyUnmet) {
		t.Errorf("start on the FRB report: %v, want refused by %s", err, shadow.RuleDependencyUnmet)
	}
	if res, err := e.x.Execute(ctx, occ2, start); err != nil || res.State != dtetype.StateInProgress {
		t.Errorf("start on the OCC report: %v %+v", err, res)
	}

	// 3. Legacy changes an attribute, and nothing else: the running shadow
	// gets it, with no phase change.
	e.Exec(`UPDATE reports SET regulation = 'FRB' WHERE report_id = $1`, occ.ReportID)
	bridgetest.WaitFor(t, 30*time.Second, "the attribute change", func() bool { return attributes(occ) == `{"regulation": "FRB"}` })
	e.Quiescent(30 * time.Second)
	if r := e.reconcileRuns(1); r.Unexpected != 0 {
		t.Errorf("after the attribute change: %+v", unexpected(r))
	}

	// 4. One changed behind capture's back: reconcile finds it, repair
	// fixes it.
	e.Bypass(`UPDATE reports SET regulation = 'ECB' WHERE report_id = $1`, frb.ReportID)
	o := e.Cfg.ReconcileOptions(e.DB.Pool)
	r, err := reconcile.Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if u := unexpected(r); len(u) != 1 || u[0].Kind != dtetype.KindAttributesMismatch || u[0].Key != frb ||
		u[0].Legacy != "regulation=ECB" || u[0].Shadow != "regulation=FRB" {
		t.Fatalf("bypassed attribute change: %+v", u)
	}
	if err := reconcile.Repair(ctx, o, e.to, r); err != nil || r.Repair.Repaired != 1 {
		t.Fatalf("repair: %v %+v", err, r.Repair)
	}
	if a := attributes(frb); a != `{"regulation": "ECB"}` {
		t.Errorf("after repair: %s", a)
	}
}

// TestWhenAttributesMustBeConfigured: a definition whose when tests an
// attribute the configuration does not name is refused.
func TestWhenAttributesMustBeConfigured(t *testing.T) {
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Definitions = []string{conditionalDefinition(t)}
	if _, _, err := cfg.LoadDefinitions(); err == nil || !strings.Contains(err.Error(), `report attribute "regulation"`) ||
		!strings.Contains(err.Error(), "legacy.attributes.regulation") {
		t.Errorf("error = %v", err)
	}
}
