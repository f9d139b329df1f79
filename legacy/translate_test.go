package legacy_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
)

func productionTranslator(t *testing.T, known ...dtetype.Phase) *legacy.Translator {
	t.Helper()
	cfg, err := config.Example("production")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Legacy.IgnorePhases = []string{"Data Profiling"}
	tr, err := cfg.Translator(known)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// row builds a production row as to_jsonb renders it, with overrides.
func row(over map[string]any) json.RawMessage {
	r := map[string]any{
		"phase_id": 17, "cycle_id": 3, "report_id": 41, "phase_name": "Sampling", "phase_order": nil,
		"status": "Pending Approval", "state": "Complete", "schedule_status": "Past Due",
		"state_override": nil, "status_override": nil, "override_reason": nil, "override_by": nil, "override_at": nil,
		"planned_start_date": "2026-01-15", "planned_end_date": "2026-01-20",
		"actual_start_date": "2026-01-16T09:30:00.123456+00:00", "actual_end_date": nil,
		"started_by": 11, "completed_by": nil, "notes": "x", "progress_percentage": 40,
	}
	for k, v := range over {
		r[k] = v
	}
	b, _ := json.Marshal(r)
	return b
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t)
	tx := time.Date(2026, 1, 17, 8, 0, 0, 0, time.UTC)
	got := tr.Translate(&legacy.RawChange{ID: 9, Op: "U", Source: "public.workflow_phases", New: row(nil), Origin: "legacy", TxTime: tx, CapturedAt: tx})
	if got.Err != nil || got.Change == nil {
		t.Fatalf("translate: %+v", got.Err)
	}
	start := time.Date(2026, 1, 15, 0, 0, 0, 0, time.UTC)
	end := time.Date(2026, 1, 20, 0, 0, 0, 0, time.UTC)
	actual := time.Date(2026, 1, 16, 9, 30, 0, 123456000, time.UTC)
	want := &dtetype.PhaseChange{
		Key: dtetype.Key{CycleID: 3, ReportID: 41}, RowID: "17", Phase: "sample_selection", Op: dtetype.OpUpdate,
		State: dtetype.StateCompleted, Status: dtetype.StatusBehindSchedule,
		BaseState: dtetype.StateCompleted, BaseStatus: dtetype.StatusBehindSchedule,
		PlannedStart: &start, PlannedEnd: &end, ActualStart: &actual, StartedBy: "11",
		LegacyPhase: "Sampling", LegacyStatus: "Pending Approval", TxTime: tx, CapturedAt: tx, Origin: "legacy",
	}
	if d := cmp.Diff(want, got.Change); d != "" {
		t.Errorf("translation (-want +got):\n%s", d)
	}
	if !got.HasKey || got.Key != want.Key {
		t.Errorf("key %v/%v", got.Key, got.HasKey)
	}
}

func TestTranslateOverridesAreEffective(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t)
	got := tr.Translate(&legacy.RawChange{Op: "U", New: row(map[string]any{
		"state_override": "In Progress", "status_override": "On Track", "override_reason": "rework",
		"override_by": 5, "override_at": "2026-01-18T10:00:00+00:00"})})
	if got.Err != nil {
		t.Fatal(got.Err)
	}
	c := got.Change
	if c.State != dtetype.StateInProgress || c.Status != dtetype.StatusOnSchedule ||
		c.BaseState != dtetype.StateCompleted || c.BaseStatus != dtetype.StatusBehindSchedule {
		t.Errorf("effective %s/%s base %s/%s", c.State, c.Status, c.BaseState, c.BaseStatus)
	}
	if c.Override == nil || c.Override.Reason != "rework" || c.Override.By != "5" || c.Override.At == nil {
		t.Errorf("override %+v", c.Override)
	}
	// Only a status override: the state stays the base state.
	got = tr.Translate(&legacy.RawChange{Op: "U", New: row(map[string]any{"status_override": "At Risk"})})
	if got.Change.State != dtetype.StateCompleted || got.Change.Status != dtetype.StatusAtRisk {
		t.Errorf("status-only override: %s/%s", got.Change.State, got.Change.Status)
	}
}

func TestTranslateDeleteUsesOldRow(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t)
	got := tr.Translate(&legacy.RawChange{Op: "D", Old: row(nil), New: json.RawMessage("null")})
	if got.Err != nil || got.Change.Op != dtetype.OpDelete || got.Change.RowID != "17" {
		t.Fatalf("delete: %+v %+v", got.Err, got.Change)
	}
}

func TestTranslateQuarantineReasons(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t, "planning", "sample_selection", "testing")
	cases := map[string]struct {
		raw    legacy.RawChange
		reason string
		detail string
		hasKey bool
	}{
		"UnknownPhaseLabel": {legacy.RawChange{Op: "U", New: row(map[string]any{"phase_name": "Audit"})}, legacy.ReasonUnknownLabel, `phase label "Audit" is not in legacy.phases`, true},
		"UnknownState":      {legacy.RawChange{Op: "U", New: row(map[string]any{"state": "Escalated"})}, legacy.ReasonUnknownLabel, `state label "Escalated" is not in legacy.states`, true},
		"UnknownStatus":     {legacy.RawChange{Op: "U", New: row(map[string]any{"schedule_status": "Late"})}, legacy.ReasonUnknownLabel, `schedule_status label "Late"`, true},
		"UnknownOverride":   {legacy.RawChange{Op: "U", New: row(map[string]any{"state_override": "done"})}, legacy.ReasonUnknownLabel, `state_override label "done"`, true},
		"NullCycle":         {legacy.RawChange{Op: "U", New: row(map[string]any{"cycle_id": nil})}, legacy.ReasonNullKey, "cycle_id or report_id is NULL", false},
		"MissingReport":     {legacy.RawChange{Op: "U", New: json.RawMessage(`{"phase_id": 1, "cycle_id": 1}`)}, legacy.ReasonNullKey, "NULL or missing", false},
		"NullPrimaryKey":    {legacy.RawChange{Op: "U", New: row(map[string]any{"phase_id": nil})}, legacy.ReasonNullKey, "primary-key column phase_id", true},
		"TextCycle":         {legacy.RawChange{Op: "U", New: row(map[string]any{"cycle_id": "three"})}, legacy.ReasonUnparseable, "cycle_id holds three, not an integer", false},
		"BadDate":           {legacy.RawChange{Op: "U", New: row(map[string]any{"planned_end_date": "someday"})}, legacy.ReasonUnparseable, `planned_end_date holds "someday"`, true},
		"NotAnObject":       {legacy.RawChange{Op: "U", New: json.RawMessage(`[1, 2]`)}, legacy.ReasonUnparseable, "not a JSON object", false},
		"NoRows":            {legacy.RawChange{Op: "U"}, legacy.ReasonUnparseable, "neither an old nor a new row", false},
		"UnknownOp":         {legacy.RawChange{Op: "T", New: row(nil)}, legacy.ReasonUnparseable, `unknown operation "T"`, true},
		"NullState":         {legacy.RawChange{Op: "U", New: row(map[string]any{"state": nil})}, legacy.ReasonUnparseable, "column state is NULL", true},
		"NotInDefinition":   {legacy.RawChange{Op: "U", New: row(map[string]any{"phase_name": "Observations"})}, legacy.ReasonUnknownPhase, `phase "observations" (label "Observations") is not in the workflow definitions`, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got := tr.Translate(&tc.raw)
			if got.Err == nil {
				t.Fatalf("translated %+v, want %s", got.Change, tc.reason)
			}
			if got.Err.Reason != tc.reason || !strings.Contains(got.Err.Detail, tc.detail) {
				t.Errorf("got %s: %s; want %s: ...%s...", got.Err.Reason, got.Err.Detail, tc.reason, tc.detail)
			}
			if got.HasKey != tc.hasKey {
				t.Errorf("HasKey = %v, want %v", got.HasKey, tc.hasKey)
			}
		})
	}
}

func TestTranslateIgnoredPhase(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t)
	got := tr.Translate(&legacy.RawChange{Op: "U", New: row(map[string]any{"phase_name": "Data Profiling"})})
	if !got.Ignored || got.Change != nil || got.Err != nil {
		t.Errorf("Data Profiling is ignored: %+v", got)
	}
}

func TestNewTranslatorRejectsBadMapping(t *testing.T) {
	t.Parallel()
	cases := map[string]func(*legacy.Table){
		`"Done" maps to "finished"`: func(t *legacy.Table) { t.States.Set("Done", "finished") },
		`"Late" maps to "late"`:     func(t *legacy.Table) { t.Statuses.Set("Late", "late") },
		`"X" maps to an empty`:      func(t *legacy.Table) { t.Phases.Set("X", "") },
	}
	for want, breakIt := range cases {
		cfg, err := config.Example("seed")
		if err != nil {
			t.Fatal(err)
		}
		breakIt(&cfg.Legacy)
		if _, err := legacy.NewTranslator(&cfg.Legacy, nil); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want %q", err, want)
		}
	}
}

// FuzzTranslate feeds arbitrary bytes as a row: translation may refuse them,
// but it must never panic, and a refusal always carries a known reason.
func FuzzTranslate(f *testing.F) {
	f.Add([]byte(row(nil)), "U")
	f.Add([]byte(`{"cycle_id": 1.5, "report_id": 1e99, "phase_name": 3}`), "I")
	f.Add([]byte(`null`), "D")
	cfg, err := config.Example("production")
	if err != nil {
		f.Fatal(err)
	}
	tr, err := cfg.Translator(nil)
	if err != nil {
		f.Fatal(err)
	}
	reasons := map[string]bool{}
	for _, r := range legacy.Reasons() {
		reasons[r] = true
	}
	f.Fuzz(func(t *testing.T, b []byte, op string) {
		got := tr.Translate(&legacy.RawChange{Op: op, New: b, Old: b})
		if got.Err != nil && !reasons[got.Err.Reason] {
			t.Errorf("unknown reason %q", got.Err.Reason)
		}
		if got.Err == nil && !got.Ignored && got.Change == nil {
			t.Error("no change, no error, not ignored")
		}
	})
}

// TestTranslateWholeTimeRange: PostgreSQL's whole range of dates and
// times translates, infinity and BC dates included, within the bounds the
// bridge carries through JSON.
func TestTranslateWholeTimeRange(t *testing.T) {
	t.Parallel()
	tr := productionTranslator(t)
	cases := map[string]time.Time{
		"infinity":                     dtetype.MaxTime,
		"-infinity":                    dtetype.MinTime,
		"4713-01-01 BC":                dtetype.MinTime,
		"4713-11-24T00:00:00+00:00 BC": dtetype.MinTime,
		"294276-12-31":                 dtetype.MaxTime,
		"10000-01-01T00:00:00+00:00":   dtetype.MaxTime,
		"0001-01-01":                   time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		"1890-06-01T12:00:00+00:53:28": time.Date(1890, 6, 1, 11, 6, 32, 0, time.UTC),
	}
	for value, want := range cases {
		got := tr.Translate(&legacy.RawChange{Op: "U", New: row(map[string]any{"actual_start_date": value, "planned_end_date": value})})
		if got.Err != nil || got.Change == nil {
			t.Errorf("%s: %v", value, got.Err)
			continue
		}
		if !got.Change.ActualStart.Equal(want) || !got.Change.PlannedEnd.Equal(want) {
			t.Errorf("%s: %v, %v; want %v", value, got.Change.ActualStart, got.Change.PlannedEnd, want)
		}
		// It must travel as JSON, as workflow payloads do.
		b, err := json.Marshal(got.Change)
		var back dtetype.PhaseChange
		if err != nil || json.Unmarshal(b, &back) != nil || !back.ActualStart.Equal(want) {
			t.Errorf("%s does not round-trip through JSON: %v", value, err)
		}
	}
}
