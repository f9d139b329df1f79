package legacysim

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
)

// now stands for the operation's timestamp in expected column values.
const now = "<now>"

type opCase struct {
	name string
	// only limits the case to one profile; "" runs it in both.
	only    string
	aliases bool
	// prep runs at time prepared.
	prep func(f *fixture, key dtetype.Key)
	// op runs at time operated.
	op func(f *fixture, key dtetype.Key) ([]Row, error)
	// want lists, by phase label, the columns the operation must change and
	// their new values. Every other column of every row must stay as it was.
	want func(p *Profile) map[string]map[string]any
	// wantErr, if set, is the error the operation must return, and then no
	// column may change.
	wantErr error
}

func ref(key dtetype.Key, phase string) Ref { return Ref{Key: key, Phase: phase} }

func start(phase string, user int64, opts StartOptions) func(*fixture, dtetype.Key) ([]Row, error) {
	return func(f *fixture, key dtetype.Key) ([]Row, error) {
		return f.model.Start(context.Background(), ref(key, phase), user, opts)
	}
}

func complete(phase string, user int64, opts CompleteOptions) func(*fixture, dtetype.Key) ([]Row, error) {
	return func(f *fixture, key dtetype.Key) ([]Row, error) {
		return f.model.Complete(context.Background(), ref(key, phase), user, opts)
	}
}

func reopen(phase string, form ReopenForm) func(*fixture, dtetype.Key) ([]Row, error) {
	return func(f *fixture, key dtetype.Key) ([]Row, error) {
		return f.model.Reopen(context.Background(), ref(key, phase), form)
	}
}

// prepAll runs ops in order and fails the test on any error.
func prepAll(ops ...func(*fixture, dtetype.Key) ([]Row, error)) func(*fixture, dtetype.Key) {
	return func(f *fixture, key dtetype.Key) {
		f.t.Helper()
		for _, op := range ops {
			if _, err := op(f, key); err != nil {
				f.t.Fatalf("prep: %v", err)
			}
		}
	}
}

func st(p *Profile, s dtetype.State) string  { return p.State(s) }
func ss(p *Profile, s dtetype.Status) string { return p.Status(s) }
func ptr[T any](v T) *T                      { return &v }
func with(m map[string]any, p *Profile, kv ...any) map[string]any {
	if p.StatusColumn {
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

// At operated, Planning (due Jan 8) is at risk and Scoping (due Jan 15) is on
// schedule; a completed phase is always on schedule.
func opCases() []opCase {
	return []opCase{
		{
			name: "Start",
			op:   start("Planning", 11, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 11.0,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "StartKeepStatus", only: "production",
			op: start("Planning", 11, StartOptions{KeepStatus: true}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": {
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 11.0,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "StartOnlyIfNull",
			prep: func(f *fixture, key dtetype.Key) {
				f.exec(`UPDATE workflow_phases SET actual_start_date = '2026-01-02T08:00:00Z', started_by = 5
					WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, key.CycleID, key.ReportID)
			},
			op: start("Planning", 11, StartOptions{OnlyIfNull: true}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "StartUnderStatusOverrideStillRecomputes",
			prep: func(f *fixture, key dtetype.Key) {
				prepAll(func(f *fixture, key dtetype.Key) ([]Row, error) {
					return f.model.Override(context.Background(), ref(key, "Planning"), 3,
						OverrideOptions{Status: ptr(dtetype.StatusOnSchedule), Reason: "agreed extension"})
				})(f, key)
			},
			op: start("Planning", 11, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 11.0,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "Complete",
			prep: prepAll(start("Planning", 11, StartOptions{}), start("Sample Selection", 11, StartOptions{})),
			op:   complete("Sample Selection", 12, CompleteOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Sample Selection": with(map[string]any{
					"state": st(p, dtetype.StateCompleted), "actual_end_date": now, "completed_by": 12.0,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}, p, "status", StatusComplete)}
			},
		},
		{
			name: "CompletePlanningStartsScoping",
			prep: prepAll(start("Planning", 11, StartOptions{})),
			op:   complete("Planning", 12, CompleteOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{
					"Planning": with(map[string]any{
						"state": st(p, dtetype.StateCompleted), "actual_end_date": now, "completed_by": 12.0,
						"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
					}, p, "status", StatusComplete),
					"Scoping": with(map[string]any{
						"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 12.0,
						"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
					}, p, "status", StatusInProgress),
				}
			},
		},
		{
			name: "CompletePlanningLeavesStartedScoping",
			prep: func(f *fixture, key dtetype.Key) {
				prepAll(start("Planning", 11, StartOptions{}))(f, key)
				f.exec(`UPDATE workflow_phases SET state = 'In Progress' WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Scoping'`,
					key.CycleID, key.ReportID)
			},
			op: complete("Planning", 12, CompleteOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": with(map[string]any{
					"state": st(p, dtetype.StateCompleted), "actual_end_date": now, "completed_by": 12.0,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}, p, "status", StatusComplete)}
			},
		},
		{
			name: "CompleteStatusOnly", only: "production",
			prep: prepAll(start("Planning", 11, StartOptions{})),
			op:   complete("Planning", 12, CompleteOptions{StatusOnly: true}),
			want: func(p *Profile) map[string]map[string]any {
				// state stays In Progress, so the recompute still says at risk,
				// and Scoping is not started by this path.
				return map[string]map[string]any{"Planning": {
					"status": StatusComplete, "schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "CompleteStatusOnlyUnsupported", only: "seed",
			op:      complete("Planning", 12, CompleteOptions{StatusOnly: true}),
			wantErr: ErrUnsupported,
		},
		{
			name: "OverrideStateAndStatus",
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Override(context.Background(), ref(key, "Testing"), 7, OverrideOptions{
					State: ptr(dtetype.StateCompleted), Status: ptr(dtetype.StatusOnSchedule), Reason: "waived by CDO"})
			},
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Testing": {
					"state_override": st(p, dtetype.StateCompleted), "status_override": ss(p, dtetype.StatusOnSchedule),
					"override_reason": "waived by CDO", "override_by": 7.0, "override_at": now, "updated_at": now,
				}}
			},
		},
		{
			name: "OverrideStateOnly",
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Override(context.Background(), ref(key, "Testing"), 7, OverrideOptions{
					State: ptr(dtetype.StateInProgress), Reason: "started offline"})
			},
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Testing": {
					"state_override":  st(p, dtetype.StateInProgress),
					"override_reason": "started offline", "override_by": 7.0, "override_at": now, "updated_at": now,
				}}
			},
		},
		{
			name: "ClearOverride",
			prep: prepAll(func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Override(context.Background(), ref(key, "Testing"), 7, OverrideOptions{
					State: ptr(dtetype.StateCompleted), Status: ptr(dtetype.StatusAtRisk), Reason: "x"})
			}),
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.ClearOverride(context.Background(), ref(key, "Testing"))
			},
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Testing": {
					"state_override": nil, "status_override": nil, "override_reason": nil,
					"override_by": nil, "override_at": nil, "updated_at": now,
				}}
			},
		},
		{
			name: "ReopenStatus", only: "production",
			prep: prepAll(start("Planning", 11, StartOptions{}), complete("Planning", 12, CompleteOptions{})),
			op:   reopen("Planning", ReopenStatus),
			want: func(p *Profile) map[string]map[string]any {
				// state stays Complete, so the phase is still on schedule.
				return map[string]map[string]any{"Planning": {
					"status": StatusInProgress, "actual_end_date": nil,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}}
			},
		},
		{
			name: "ReopenStatusUnsupported", only: "seed",
			op:      reopen("Planning", ReopenStatus),
			wantErr: ErrUnsupported,
		},
		{
			name: "ReopenState",
			prep: prepAll(start("Planning", 11, StartOptions{}), complete("Planning", 12, CompleteOptions{})),
			op:   reopen("Planning", ReopenState),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": {
					"state": st(p, dtetype.StateInProgress), "actual_end_date": nil, "completed_by": nil,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "ReopenApproval", only: "production",
			prep: prepAll(start("Planning", 11, StartOptions{}), func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.SubmitForApproval(context.Background(), ref(key, "Planning"))
			}, complete("Planning", 12, CompleteOptions{})),
			op: reopen("Planning", ReopenApproval),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": {
					"state": st(p, dtetype.StateInProgress), "status": StatusPendingApproval,
					"actual_end_date": nil, "completed_by": nil,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "ReopenApprovalUnsupported", only: "seed",
			op:      reopen("Planning", ReopenApproval),
			wantErr: ErrUnsupported,
		},
		{
			name: "ReopenReset",
			prep: func(f *fixture, key dtetype.Key) {
				prepAll(start("Planning", 11, StartOptions{}), complete("Planning", 12, CompleteOptions{}))(f, key)
				f.exec(`UPDATE workflow_phases SET phase_data = '{"plan": 1}', notes = 'done'
					WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, key.CycleID, key.ReportID)
			},
			op: reopen("Planning", ReopenReset),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": with(map[string]any{
					"state": st(p, dtetype.StateNotStarted), "actual_start_date": nil, "actual_end_date": nil,
					"started_by": nil, "completed_by": nil, "phase_data": map[string]any{}, "notes": ResetNote,
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}, p, "status", StatusNotStarted)}
			},
		},
		{
			name: "SubmitForApproval", only: "production",
			prep: prepAll(start("Planning", 11, StartOptions{})),
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.SubmitForApproval(context.Background(), ref(key, "Planning"))
			},
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": {
					"status": StatusPendingApproval, "schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "Refresh",
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Refresh(context.Background(), ref(key, "Planning"))
			},
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Planning": {
					"schedule_status": ss(p, dtetype.StatusAtRisk), "updated_at": now,
				}}
			},
		},
		{
			name: "RefreshSkipsStatusOverride",
			prep: prepAll(func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Override(context.Background(), ref(key, "Planning"), 3,
					OverrideOptions{Status: ptr(dtetype.StatusOnSchedule), Reason: "agreed extension"})
			}),
			op: func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Refresh(context.Background(), ref(key, "Planning"))
			},
			want: func(p *Profile) map[string]map[string]any { return nil },
		},
		{
			name: "GateScopingNeedsPlanning",
			prep: prepAll(start("Planning", 11, StartOptions{})),
			op:   start("Scoping", 11, StartOptions{}), wantErr: ErrGate,
		},
		{
			name: "GateScopingSeesPlanningOverride",
			prep: prepAll(func(f *fixture, key dtetype.Key) ([]Row, error) {
				return f.model.Override(context.Background(), ref(key, "Planning"), 3,
					OverrideOptions{State: ptr(dtetype.StateCompleted), Reason: "planned offline"})
			}),
			op: start("Scoping", 11, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Scoping": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 11.0,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "GateScopingRefusedByPlanningOverride",
			prep: prepAll(start("Planning", 11, StartOptions{}), complete("Planning", 12, CompleteOptions{}),
				reopen("Scoping", ReopenReset),
				func(f *fixture, key dtetype.Key) ([]Row, error) {
					return f.model.Override(context.Background(), ref(key, "Planning"), 3,
						OverrideOptions{State: ptr(dtetype.StateInProgress), Reason: "rework"})
				}),
			op: start("Scoping", 11, StartOptions{}), wantErr: ErrGate,
		},
		{
			name: "GateDataProviderNeedsSampleSelection",
			prep: prepAll(start("Sample Selection", 11, StartOptions{})),
			op:   start("Data Provider ID", 11, StartOptions{}), wantErr: ErrGate,
		},
		{
			name: "GateDataProviderAfterSampleSelection",
			prep: prepAll(start("Sample Selection", 11, StartOptions{}), complete("Sample Selection", 11, CompleteOptions{})),
			op:   start("Data Provider ID", 13, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Data Provider ID": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 13.0,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "NoOtherGates",
			// Observations in progress while Testing has not started: real data has this.
			op: start("Observations", 14, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Observations": with(map[string]any{
					"state": st(p, dtetype.StateInProgress), "actual_start_date": now, "started_by": 14.0,
					"schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}, p, "status", StatusInProgress)}
			},
		},
		{
			name: "AliasRows", only: "production", aliases: true,
			prep: prepAll(start("Sample Selection", 11, StartOptions{}), complete("Sampling", 11, CompleteOptions{})),
			op:   start("Data Provider ID", 13, StartOptions{}),
			want: func(p *Profile) map[string]map[string]any {
				return map[string]map[string]any{"Data Owner ID": {
					"state": st(p, dtetype.StateInProgress), "status": StatusInProgress, "actual_start_date": now,
					"started_by": 13.0, "schedule_status": ss(p, dtetype.StatusOnSchedule), "updated_at": now,
				}}
			},
		},
	}
}

func TestOperationsWriteExactlyTheirColumns(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, p)
			for _, tc := range opCases() {
				if tc.only != "" && tc.only != p.Name {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					f.t = t
					key := f.report(AddOptions{Tester: 1, Aliases: tc.aliases})
					f.clock.Set(prepared)
					if tc.prep != nil {
						tc.prep(f, key)
					}
					// Make every schedule status stale, so that a recompute
					// always shows up as a change and its absence as none.
					f.exec(`UPDATE workflow_phases SET schedule_status = $3 WHERE cycle_id = $1 AND report_id = $2`,
						key.CycleID, key.ReportID, p.Status(dtetype.StatusBehindSchedule))
					before := f.rows(key)
					f.clock.Set(operated)
					_, err := tc.op(f, key)
					after := f.rows(key)
					if tc.wantErr != nil {
						if !errors.Is(err, tc.wantErr) {
							t.Fatalf("error = %v, want %v", err, tc.wantErr)
						}
						if d := diffRows(before, after); len(d) != 0 {
							t.Fatalf("a failed operation changed rows: %v", d)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					checkChanges(t, before, after, tc.want(p))
				})
			}
		})
	}
}

// diffRows returns, by phase label, the columns whose values differ.
func diffRows(before, after map[int64]map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, a := range after {
		b, ok := before[id]
		if !ok {
			out[fmt.Sprintf("new row %d", id)] = a
			continue
		}
		for col, v := range a {
			if !reflect.DeepEqual(b[col], v) {
				label := a["phase_name"].(string)
				if out[label] == nil {
					out[label] = map[string]any{}
				}
				out[label][col] = v
			}
		}
	}
	return out
}

func checkChanges(t *testing.T, before, after map[int64]map[string]any, want map[string]map[string]any) {
	t.Helper()
	got := diffRows(before, after)
	for label, cols := range want {
		for col, v := range cols {
			if v == now {
				cols[col] = ts(operated)
			}
		}
		want[label] = cols
	}
	if len(want) == 0 {
		want = map[string]map[string]any{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("changed columns differ\n got: %s\nwant: %s", render(got), render(want))
	}
}

func render(m map[string]map[string]any) string {
	var parts []string
	for label, cols := range m {
		var cs []string
		for col, v := range cols {
			cs = append(cs, fmt.Sprintf("%s=%v", col, v))
		}
		sort.Strings(cs)
		parts = append(parts, label+"{"+strings.Join(cs, " ")+"}")
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

func TestGateErrorNamesThePhases(t *testing.T) {
	t.Parallel()
	f := setup(t, Seed)
	key := f.report(AddOptions{})
	_, err := f.model.Start(context.Background(), ref(key, "Scoping"), 1, StartOptions{})
	var ge *GateError
	if !errors.As(err, &ge) || ge.Phase != "Scoping" || ge.Needs != "Planning" {
		t.Fatalf("error = %v, want a GateError for Scoping needing Planning", err)
	}
	if got := err.Error(); got != "cannot start Scoping: Planning is not complete" {
		t.Errorf("message = %q", got)
	}
}

func TestUnknownPhaseAndMissingRow(t *testing.T) {
	t.Parallel()
	f := setup(t, Seed)
	key := f.report(AddOptions{})
	ctx := context.Background()
	if _, err := f.model.Start(ctx, ref(key, "Data Profiling"), 1, StartOptions{}); !errors.Is(err, ErrUnknownPhase) {
		t.Errorf("seed has no Data Profiling: error = %v, want ErrUnknownPhase", err)
	}
	missing := dtetype.Key{CycleID: key.CycleID, ReportID: key.ReportID + 100}
	if _, err := f.model.Start(ctx, ref(missing, "Planning"), 1, StartOptions{}); !errors.Is(err, ErrNoRow) {
		t.Errorf("error = %v, want ErrNoRow", err)
	}
}

func TestAddReportLaysOutPlannedDates(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, p)
			key := f.report(AddOptions{Tester: 4})
			rows := f.rows(key)
			if len(rows) != len(p.Chain) {
				t.Fatalf("%d rows, want %d", len(rows), len(p.Chain))
			}
			byLabel := map[string]map[string]any{}
			for _, r := range rows {
				byLabel[r["phase_name"].(string)] = r
			}
			start := cycleStart
			for i, ph := range p.Chain {
				r := byLabel[ph.Label]
				end := start.AddDate(0, 0, ph.PlannedDays)
				if r["planned_start_date"] != start.Format(time.DateOnly) || r["planned_end_date"] != end.Format(time.DateOnly) {
					t.Errorf("%s planned %v..%v, want %s..%s", ph.Label, r["planned_start_date"], r["planned_end_date"],
						start.Format(time.DateOnly), end.Format(time.DateOnly))
				}
				if r["phase_order"] != float64(p.PhaseOrderBase+i) {
					t.Errorf("%s phase_order %v, want %d", ph.Label, r["phase_order"], p.PhaseOrderBase+i)
				}
				if r["state"] != p.State(dtetype.StateNotStarted) || r["schedule_status"] != p.Status(dtetype.StatusOnSchedule) {
					t.Errorf("%s is %v/%v", ph.Label, r["state"], r["schedule_status"])
				}
				start = end
			}
		})
	}
}

func TestDuplicateRows(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t.Run("production", func(t *testing.T) {
		t.Parallel()
		f := setup(t, Production)
		key := f.report(AddOptions{})
		if _, err := f.model.Duplicate(ctx, ref(key, "Testing")); err != nil {
			t.Fatal(err)
		}
		f.clock.Set(operated)
		rows, err := f.model.Start(ctx, ref(key, "Testing"), 9, StartOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		var states []string
		r, err := f.pool.Query(ctx, `SELECT phase_id, state::text FROM workflow_phases
			WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing' ORDER BY phase_id`, key.CycleID, key.ReportID)
		if err != nil {
			t.Fatal(err)
		}
		for r.Next() {
			var id int64
			var s string
			if err := r.Scan(&id, &s); err != nil {
				t.Fatal(err)
			}
			ids, states = append(ids, id), append(states, s)
		}
		if len(ids) != 2 || rows[0].PhaseID != ids[0] || states[0] != "In Progress" || states[1] != "Not Started" {
			t.Errorf("rows %v states %v, started row %d: want the oldest of two started", ids, states, rows[0].PhaseID)
		}
	})
	t.Run("seed", func(t *testing.T) {
		t.Parallel()
		f := setup(t, Seed)
		key := f.report(AddOptions{})
		if _, err := f.model.Duplicate(ctx, ref(key, "Testing")); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("error = %v, want ErrUnsupported", err)
		}
		if _, err := f.pool.Exec(ctx, `INSERT INTO workflow_phases (cycle_id, report_id, phase_name) VALUES ($1, $2, 'Testing')`,
			key.CycleID, key.ReportID); err == nil {
			t.Error("seed schema accepted a duplicate phase row; it must have the unique constraint")
		}
	})
}

func TestBulkReschedule(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, p)
			ctx := context.Background()
			k1, k2 := f.report(AddOptions{}), f.report(AddOptions{})
			f.clock.Set(prepared)
			prepAll(start("Planning", 1, StartOptions{}), complete("Planning", 1, CompleteOptions{}))(f, k1)
			before1, before2 := f.rows(k1), f.rows(k2)
			f.clock.Set(operated)
			n, err := f.model.BulkReschedule(ctx, f.cycle, 14)
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(2*len(p.Chain) - 1); n != want {
				t.Errorf("rescheduled %d rows, want %d (all but the completed Planning)", n, want)
			}
			for _, pair := range [][2]map[int64]map[string]any{{before1, f.rows(k1)}, {before2, f.rows(k2)}} {
				for label, cols := range diffRows(pair[0], pair[1]) {
					if label == "Planning" && pair[0][firstID(pair[0], "Planning")]["state"] == p.State(dtetype.StateCompleted) {
						t.Errorf("completed Planning was rescheduled: %v", cols)
						continue
					}
					for col := range cols {
						switch col {
						case "planned_start_date", "planned_end_date", "schedule_status", "updated_at":
						default:
							t.Errorf("%s: bulk reschedule changed %s", label, col)
						}
					}
					if _, ok := cols["planned_end_date"]; !ok {
						t.Errorf("%s: planned_end_date not moved", label)
					}
				}
			}
			// Planning of the second report is now due Jan 22: on schedule again.
			var s string
			if err := f.pool.QueryRow(ctx, `SELECT schedule_status::text FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`,
				k2.CycleID, k2.ReportID).Scan(&s); err != nil {
				t.Fatal(err)
			}
			if s != p.Status(dtetype.StatusOnSchedule) {
				t.Errorf("rescheduled Planning is %q, want on schedule", s)
			}
		})
	}
}

func firstID(rows map[int64]map[string]any, label string) int64 {
	var best int64
	for id, r := range rows {
		if r["phase_name"] == label && (best == 0 || id < best) {
			best = id
		}
	}
	return best
}

// TestScheduleStatusBoundaries drives the recompute through the model at the
// boundaries of the legacy rule, for Planning due on 2026-01-08.
func TestScheduleStatusBoundaries(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 1, 8, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name     string
		at       time.Time
		complete bool
		want     dtetype.Status
	}{
		{"DueDayItself", due.Add(10 * time.Hour), false, dtetype.StatusBehindSchedule},
		{"DueMidnight", due, false, dtetype.StatusBehindSchedule},
		{"Last24Hours", due.Add(-20 * time.Hour), false, dtetype.StatusOnSchedule},
		{"OneDayBefore", due.Add(-24 * time.Hour), false, dtetype.StatusAtRisk},
		{"SevenDaysBefore", due.Add(-7 * 24 * time.Hour), false, dtetype.StatusAtRisk},
		{"EightDaysBefore", due.Add(-8 * 24 * time.Hour), false, dtetype.StatusOnSchedule},
		{"CompleteAndLate", due.Add(5 * 24 * time.Hour), true, dtetype.StatusOnSchedule},
	}
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, p)
			ctx := context.Background()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					key := f.report(AddOptions{})
					f.clock.Set(tc.at)
					var err error
					if tc.complete {
						_, err = f.model.Complete(ctx, ref(key, "Planning"), 1, CompleteOptions{})
					} else {
						_, err = f.model.Start(ctx, ref(key, "Planning"), 1, StartOptions{})
					}
					if err != nil {
						t.Fatal(err)
					}
					var got string
					if err := f.pool.QueryRow(ctx, `SELECT schedule_status::text FROM workflow_phases
						WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Planning'`, key.CycleID, key.ReportID).Scan(&got); err != nil {
						t.Fatal(err)
					}
					if want := p.Status(tc.want); got != want {
						t.Errorf("at %s: schedule_status %q, want %q", tc.at, got, want)
					}
				})
			}
		})
	}
}

// TestEnumsMatchProfiles checks the Go lists against enum_range on a real
// database: the canonical lists map one to one onto the state and schedule
// enums, and every chain label and alias is in the phase enum.
func TestEnumsMatchProfiles(t *testing.T) {
	t.Parallel()
	for _, p := range Profiles() {
		t.Run(p.Name, func(t *testing.T) {
			t.Parallel()
			f := setup(t, p)
			labels := func(enum string) []string {
				var out []string
				if err := f.pool.QueryRow(context.Background(),
					fmt.Sprintf(`SELECT enum_range(NULL::%s)::text[]`, enum)).Scan(&out); err != nil {
					t.Fatal(err)
				}
				return out
			}
			var states, statuses []string
			for _, s := range dtetype.States() {
				states = append(states, p.State(s))
			}
			for _, s := range dtetype.Statuses() {
				statuses = append(statuses, p.Status(s))
			}
			if got := labels(p.StateEnum); !reflect.DeepEqual(got, states) {
				t.Errorf("%s = %v, Go profile has %v", p.StateEnum, got, states)
			}
			if got := labels(p.ScheduleEnum); !reflect.DeepEqual(got, statuses) {
				t.Errorf("%s = %v, Go profile has %v", p.ScheduleEnum, got, statuses)
			}
			phases := labels(p.PhaseEnum)
			for _, ph := range p.Chain {
				for _, l := range ph.Labels() {
					if !contains(phases, l) {
						t.Errorf("%s lacks %q", p.PhaseEnum, l)
					}
				}
			}
			if p.StatusColumn {
				st := labels(p.StatusEnum)
				for _, l := range []string{StatusNotStarted, StatusInProgress, StatusComplete, StatusPendingApproval} {
					if !contains(st, l) {
						t.Errorf("%s lacks %q", p.StatusEnum, l)
					}
				}
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestInitRefusesExistingSchema(t *testing.T) {
	t.Parallel()
	f := setup(t, Seed)
	if err := Init(context.Background(), f.pool, Production); !errors.Is(err, ErrSchemaExists) {
		t.Fatalf("error = %v, want ErrSchemaExists", err)
	}
}
