package legacy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/legacy"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestWriterWritesAsTheModel checks the production writer, driven only by
// the configuration, against the simulator's model of the legacy
// application, an independent implementation driven by the Go profiles:
// the same operation on two identical reports, at the same instant, must
// change exactly the same columns to exactly the same values, in both
// profiles, and a gate must refuse the same starts.
func TestWriterWritesAsTheModel(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			db := testenv.NewDB(t)
			ctx := context.Background()
			if err := legacysim.Init(ctx, db.Pool, p); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Example(p.Name)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Date(2026, 1, 4, 12, 30, 0, 0, time.UTC)
			clock := func() time.Time { return now }
			model := legacysim.NewModel(db.Pool, p, &legacysim.ModelConfig{Now: clock})
			writer, err := legacy.NewWriter(db.Pool, &cfg.Legacy, clock)
			if err != nil {
				t.Fatal(err)
			}
			cycle, err := model.CreateCycle(ctx, "Q1", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			report := func() dtetype.Key {
				id, err := model.CreateReport(ctx, "r", "FRB")
				if err != nil {
					t.Fatal(err)
				}
				k := dtetype.Key{CycleID: cycle, ReportID: id}
				if _, err := model.AddReport(ctx, k, legacysim.AddOptions{Tester: 11}); err != nil {
					t.Fatal(err)
				}
				return k
			}
			// rows returns a report's rows by phase label, without the columns
			// that name the row itself.
			rows := func(k dtetype.Key) map[string]map[string]any {
				t.Helper()
				r, err := db.Pool.Query(ctx, `SELECT phase_name::text, to_jsonb(w) - 'phase_id' - 'report_id' FROM workflow_phases w
					WHERE cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				out := map[string]map[string]any{}
				for r.Next() {
					var label string
					var raw []byte
					if err := r.Scan(&label, &raw); err != nil {
						t.Fatal(err)
					}
					var m map[string]any
					json.Unmarshal(raw, &m)
					out[label] = m
				}
				return out
			}
			started := now.Add(-48 * time.Hour)
			steps := []struct {
				name   string
				phase  dtetype.Phase
				label  string
				model  func(k dtetype.Key) error
				writer legacy.Op
				// gate: both must refuse.
				gate bool
			}{
				{name: "StartRefusedByGate", phase: "scoping", label: "Scoping", gate: true,
					model: func(k dtetype.Key) error {
						_, err := model.Start(ctx, ref(k, "Scoping"), 12, legacysim.StartOptions{})
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionStart, Actor: "12"}},
				{name: "Start", phase: "planning", label: "Planning",
					model: func(k dtetype.Key) error {
						_, err := model.Start(ctx, ref(k, "Planning"), 12, legacysim.StartOptions{})
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionStart, Actor: "12"}},
				{name: "Override", phase: "planning", label: "Planning",
					model: func(k dtetype.Key) error {
						st, su := dtetype.StateCompleted, dtetype.StatusAtRisk
						_, err := model.Override(ctx, ref(k, "Planning"), 13, legacysim.OverrideOptions{State: &st, Status: &su, Reason: "escalated"})
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionOverride, Actor: "13", State: dtetype.StateCompleted, Status: dtetype.StatusAtRisk, Reason: "escalated"}},
				{name: "ClearOverride", phase: "planning", label: "Planning",
					model:  func(k dtetype.Key) error { _, err := model.ClearOverride(ctx, ref(k, "Planning")); return err },
					writer: legacy.Op{Action: dtetype.ActionClearOverride, Actor: "13"}},
				{name: "CompleteStartsScoping", phase: "planning", label: "Planning",
					model: func(k dtetype.Key) error {
						_, err := model.Complete(ctx, ref(k, "Planning"), 13, legacysim.CompleteOptions{})
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionComplete, Actor: "13"}},
				{name: "Reopen", phase: "planning", label: "Planning",
					model: func(k dtetype.Key) error {
						_, err := model.Reopen(ctx, ref(k, "Planning"), legacysim.ReopenState)
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionReopen, Actor: "13"}},
				{name: "Restore", phase: "planning", label: "Planning",
					model: func(k dtetype.Key) error {
						_, err := model.Restore(ctx, ref(k, "Planning"), legacysim.RestoreValues{State: dtetype.StateInProgress, ActualStart: &started, StartedBy: "14"})
						return err
					},
					writer: legacy.Op{Action: dtetype.ActionRestore, Actor: "dtebridge", Restore: &legacy.Restore{State: dtetype.StateInProgress, ActualStart: &started, StartedBy: "14"}}},
			}
			a, b := report(), report()
			for _, s := range steps {
				beforeA, beforeB := rows(a), rows(b)
				errModel := s.model(a)
				op := s.writer
				op.Key, op.Phase = b, s.phase
				_, errWriter := writer.Apply(ctx, op, legacy.Hooks{})
				if s.gate {
					var ge *legacy.GateError
					if !errors.Is(errModel, legacysim.ErrGate) || !errors.As(errWriter, &ge) {
						t.Fatalf("%s: model %v, writer %v; both should refuse", s.name, errModel, errWriter)
					}
					continue
				}
				if errModel != nil || errWriter != nil {
					t.Fatalf("%s: model %v, writer %v", s.name, errModel, errWriter)
				}
				wantA, gotB := changes(beforeA, rows(a)), changes(beforeB, rows(b))
				if fmt.Sprint(wantA) != fmt.Sprint(gotB) {
					t.Errorf("%s:\nmodel wrote  %v\nwriter wrote %v", s.name, wantA, gotB)
				}
				if len(wantA) == 0 {
					t.Errorf("%s: the model wrote nothing; the step tests nothing", s.name)
				}
			}
		})
	}
}

func ref(k dtetype.Key, label string) legacysim.Ref { return legacysim.Ref{Key: k, Phase: label} }

// changes returns, per phase label, the columns whose values changed.
func changes(before, after map[string]map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for label, a := range after {
		for c, v := range a {
			if fmt.Sprint(before[label][c]) != fmt.Sprint(v) {
				if out[label] == nil {
					out[label] = map[string]any{}
				}
				out[label][c] = v
			}
		}
	}
	return out
}
