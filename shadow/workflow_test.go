package shadow

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/synapsedte/dtebridge/dtetype"
)

var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC) // a Monday

func standard(t *testing.T) dtetype.Definition {
	t.Helper()
	defs, err := LoadBuiltin("definitions/standard_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return *defs[0]
}

// change builds a legacy change for phase p on row rowID.
type change struct {
	phase      dtetype.Phase
	row        int
	state      dtetype.State
	role       string
	op         dtetype.Op
	status     dtetype.Status
	plannedEnd *time.Time
	at         time.Time
}

var seq int64

func (c change) pc() dtetype.PhaseChange {
	seq++
	op := c.op
	if op == "" {
		op = dtetype.OpUpdate
	}
	st := c.status
	if st == "" {
		st = dtetype.StatusOnSchedule
	}
	at := c.at
	if at.IsZero() {
		at = t0
	}
	pc := dtetype.PhaseChange{EventID: "c" + strconv.FormatInt(seq, 10), Seq: seq, Key: dtetype.Key{CycleID: 1, ReportID: 2},
		RowID: strconv.Itoa(c.row), Phase: c.phase, Op: op, State: c.state, BaseState: c.state, Status: st, BaseStatus: st,
		PlannedEnd: c.plannedEnd, TxTime: at, CapturedAt: at, Origin: dtetype.OriginLegacy}
	if c.state == dtetype.StateInProgress {
		pc.StartedBy, pc.StartedByRole = "11", c.role
		pc.ActualStart = &at
	}
	if c.state == dtetype.StateCompleted {
		pc.CompletedBy, pc.CompletedByRole = "12", c.role
	}
	return pc
}

type wfEnv struct {
	*testsuite.TestWorkflowEnvironment
	mu          sync.Mutex
	projections []Projection
}

func newEnv(t *testing.T) *wfEnv {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(log.NewStructuredLogger(slog.New(slog.DiscardHandler)))
	env := &wfEnv{TestWorkflowEnvironment: s.NewTestWorkflowEnvironment()}
	env.SetStartTime(t0)
	var a *Activities
	Register(env, &Activities{})
	// The projection's SQL is tested against PostgreSQL elsewhere; here it
	// records what the workflow projects.
	env.OnActivity(a.Project, mock.Anything, mock.Anything).Return(func(_ context.Context, p Projection) error {
		env.mu.Lock()
		defer env.mu.Unlock()
		env.projections = append(env.projections, p)
		return nil
	})
	return env
}

// run signals each batch at the given offsets, queries the state at the
// end, and returns it.
func (env *wfEnv) run(t *testing.T, def dtetype.Definition, end time.Duration, batches map[time.Duration][]change) *State {
	t.Helper()
	for at, cs := range batches {
		sig := Signal{}
		for _, c := range cs {
			sig.Changes = append(sig.Changes, c.pc())
		}
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalChanges, sig) }, at)
	}
	var st *State
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryState)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Get(&st); err != nil {
			t.Fatal(err)
		}
		env.CancelWorkflow()
	}, end)
	env.ExecuteWorkflow(ShadowWorkflow, Input{Key: dtetype.Key{CycleID: 1, ReportID: 2}, Definition: def})
	if st == nil {
		t.Fatal("no state queried")
	}
	return st
}

func rules(st *State) []string {
	var out []string
	for _, v := range st.Violations {
		out = append(out, v.Rule+":"+string(v.Phase))
	}
	return out
}

func TestViolations(t *testing.T) {
	t.Parallel()
	const (
		ns = dtetype.StateNotStarted
		ip = dtetype.StateInProgress
		co = dtetype.StateCompleted
	)
	cases := []struct {
		name    string
		batches []change
		want    []string
		detail  string
	}{
		{"CleanProgress", []change{{phase: "planning", row: 1, state: ip, role: "Tester"}, {phase: "planning", row: 1, state: co, role: "Test Executive"},
			{phase: "scoping", row: 2, state: ip, role: "Tester"}}, nil, ""},
		{"DependencyUnmet", []change{{phase: "testing", row: 6, state: ip, role: "Tester"}}, []string{"dependency_unmet:testing"}, "testing started while request_info is not_started"},
		{"ParallelJoinUnmet", []change{{phase: "request_info", row: 5, state: ip}}, []string{"dependency_unmet:request_info"}, "sample_selection is not_started, data_provider_id is not_started"},
		{"RoleNotAllowed", []change{{phase: "planning", row: 1, state: ip, role: "Report Owner"}}, []string{"role_not_allowed:planning"}, `role "Report Owner" may not start planning (allowed: Tester, Test Manager)`},
		{"UnknownRole", []change{{phase: "planning", row: 1, state: ip, role: "Janitor"}}, []string{"role_not_allowed:planning"}, `role "Janitor"`},
		{"InvalidTransition", []change{{phase: "planning", row: 1, state: ip}, {phase: "planning", row: 1, state: ns}}, []string{"invalid_transition:planning"}, "back to not_started"},
		{"SkippedPhase", []change{{phase: "planning", row: 1, state: co}}, []string{"skipped_phase:planning"}, "without having been in progress"},
		{"ReopenIsAllowed", []change{{phase: "planning", row: 1, state: ip}, {phase: "planning", row: 1, state: co}, {phase: "planning", row: 1, state: ip}}, nil, ""},
		{"BackfillIsNotJudged", []change{{phase: "testing", row: 6, state: co, op: dtetype.OpSnapshot}}, nil, ""},
		{"DuplicateRowIsNotJudged", []change{{phase: "planning", row: 1, state: ns, op: dtetype.OpSnapshot}, {phase: "planning", row: 9, state: co}}, nil, ""},
	}
	def := standard(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t)
			st := env.run(t, def, time.Hour, map[time.Duration][]change{time.Minute: tc.batches})
			got := rules(st)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("violations %v, want %v", got, tc.want)
			}
			if tc.detail != "" && !strings.Contains(st.Violations[0].Detail, tc.detail) {
				t.Errorf("detail %q lacks %q", st.Violations[0].Detail, tc.detail)
			}
			if len(got) > 0 && st.Violations[0].EventID == "" {
				t.Error("violation does not name the change that broke it")
			}
		})
	}
}

func TestDeduplicatesByEventID(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	c := change{phase: "planning", row: 1, state: dtetype.StateInProgress}.pc()
	sig := Signal{Changes: []dtetype.PhaseChange{c}}
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalChanges, sig) }, time.Minute)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalChanges, sig) }, 2*time.Minute)
	var st *State
	env.RegisterDelayedCallback(func() {
		v, _ := env.QueryWorkflow(QueryState)
		v.Get(&st)
		env.CancelWorkflow()
	}, time.Hour)
	env.ExecuteWorkflow(ShadowWorkflow, Input{Key: dtetype.Key{CycleID: 1, ReportID: 2}, Definition: standard(t)})
	if st.Applied != 1 || st.Duplicates != 1 {
		t.Errorf("applied %d, duplicates %d; want 1 and 1", st.Applied, st.Duplicates)
	}
	if len(env.projections) != 1 {
		t.Errorf("%d projections; a redelivered batch must not project again", len(env.projections))
	}
}

func TestLegacyStatusPolicy(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 3, 6, 0, 0, 0, 0, time.UTC) // 3 days 15 hours after t0
	late := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	env := newEnv(t)
	st := env.run(t, standard(t), time.Hour, map[time.Duration][]change{time.Minute: {
		{phase: "planning", row: 1, state: dtetype.StateInProgress, plannedEnd: &due},
		{phase: "scoping", row: 2, state: dtetype.StateNotStarted, plannedEnd: &late},
		{phase: "testing", row: 6, state: dtetype.StateCompleted, plannedEnd: &late, op: dtetype.OpSnapshot},
	}})
	want := map[dtetype.Phase]dtetype.Status{"planning": dtetype.StatusAtRisk, "scoping": dtetype.StatusBehindSchedule, "testing": dtetype.StatusOnSchedule}
	for _, ps := range st.Phases {
		if ps.Status != want[ps.Phase] {
			t.Errorf("%s: status %s, want %s", ps.Phase, ps.Status, want[ps.Phase])
		}
	}
}

// TestSLAPolicyTimers starts a phase under the sla policy and sends nothing
// more: durable timers alone move it to at risk and then behind schedule,
// and each move is projected.
func TestSLAPolicyTimers(t *testing.T) {
	t.Parallel()
	def := standard(t)
	def.StatusPolicy = dtetype.PolicySLA
	env := newEnv(t)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalChanges, Signal{Changes: []dtetype.PhaseChange{change{phase: "planning", row: 1, state: dtetype.StateInProgress, at: t0}.pc()}})
	}, 0)
	statusAt := map[time.Duration]dtetype.Status{}
	for _, at := range []time.Duration{24 * time.Hour, 5*24*time.Hour + time.Hour, 6*24*time.Hour + time.Hour, 8 * 24 * time.Hour} {
		env.RegisterDelayedCallback(func() {
			v, err := env.QueryWorkflow(QueryState)
			if err != nil {
				t.Error(err)
				return
			}
			var st State
			v.Get(&st)
			statusAt[at] = st.phase("planning").Status
		}, at)
	}
	env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, 9*24*time.Hour)
	env.ExecuteWorkflow(ShadowWorkflow, Input{Key: dtetype.Key{CycleID: 1, ReportID: 2}, Definition: def})
	// Planning has a 7-day SLA: at risk from day 5.6, behind from day 7.
	want := map[time.Duration]dtetype.Status{
		24 * time.Hour:             dtetype.StatusOnSchedule,
		5*24*time.Hour + time.Hour: dtetype.StatusOnSchedule,
		6*24*time.Hour + time.Hour: dtetype.StatusAtRisk,
		8 * 24 * time.Hour:         dtetype.StatusBehindSchedule,
	}
	for at, w := range want {
		if statusAt[at] != w {
			t.Errorf("after %s: %s, want %s", at, statusAt[at], w)
		}
	}
	last := env.projections[len(env.projections)-1]
	if len(env.projections) != 3 || last.Phases[0].Status != dtetype.StatusBehindSchedule {
		t.Errorf("%d projections, last status %s; want the start and two timer moves, ending behind schedule", len(env.projections), last.Phases[0].Status)
	}
}

func TestSLABusinessDays(t *testing.T) {
	t.Parallel()
	s := dtetype.SLA{Duration: 5, Unit: "days", BusinessDays: true}
	fri := time.Date(2026, 3, 6, 10, 0, 0, 0, time.UTC)
	if got := s.Deadline(fri); !got.Equal(time.Date(2026, 3, 13, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("5 business days from Friday = %s, want next Friday", got)
	}
}

func TestContinueAsNewCarriesState(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	env.RegisterDelayedCallback(func() {
		env.SignalWorkflow(SignalChanges, Signal{Changes: []dtetype.PhaseChange{
			change{phase: "planning", row: 1, state: dtetype.StateInProgress}.pc(),
			change{phase: "testing", row: 6, state: dtetype.StateInProgress}.pc(),
		}})
	}, time.Minute)
	env.ExecuteWorkflow(ShadowWorkflow, Input{Key: dtetype.Key{CycleID: 1, ReportID: 2}, Definition: standard(t), MaxChangesPerRun: 2})
	err := env.GetWorkflowError()
	if err == nil || !strings.Contains(err.Error(), "continue as new") {
		t.Fatalf("workflow ended with %v, want continue-as-new", err)
	}
}
