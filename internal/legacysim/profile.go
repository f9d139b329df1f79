package legacysim

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"

	"github.com/synapsedte/dtebridge/dtetype"
)

var (
	//go:embed schema/seed.sql
	seedSchema string
	//go:embed schema/production.sql
	productionSchema string
)

// PhaseSpec is one phase of a legacy workflow chain as the legacy application
// knows it.
type PhaseSpec struct {
	// Label is the phase label the application writes by default.
	Label string
	// Aliases are older labels some reports were created with.
	Aliases []string
	// PlannedDays is the planned duration the orchestrator schedules.
	PlannedDays int
}

// Labels returns the phase's label followed by its aliases.
func (p PhaseSpec) Labels() []string { return append([]string{p.Label}, p.Aliases...) }

// Profile describes one legacy label profile: the labels the application
// writes and the schema it runs on. The legacy model and simulator use it;
// the bridge does not (it reads labels through configuration).
type Profile struct {
	// Name is the profile name: seed or production.
	Name string
	// Schema is the SQL that creates the legacy tables.
	Schema string
	// Chain lists the phases in workflow order.
	Chain []PhaseSpec
	// States maps canonical states to the state enum's labels.
	States map[dtetype.State]string
	// Statuses maps canonical schedule statuses to the schedule enum's labels.
	Statuses map[dtetype.Status]string
	// StatusColumn reports whether workflow_phases has the legacy status column.
	StatusColumn bool
	// UniquePhase reports whether (cycle_id, report_id, phase_name) is unique.
	UniquePhase bool
	// PhaseOrderBase is the phase_order of the first phase (1 or 0). Reports
	// created with alias labels get a NULL phase_order in profiles with aliases.
	PhaseOrderBase int
	// ExtraColumns reports whether the version-specific columns
	// (progress_percentage, sla_deadline, is_sla_breached, risk_level,
	// created_by_id, updated_by_id) exist.
	ExtraColumns bool
	// Enum type names, for tests that compare them with the database.
	PhaseEnum, StateEnum, ScheduleEnum, StatusEnum string
}

// The labels of the legacy status column (production profile only).
const (
	StatusNotStarted      = "Not Started"
	StatusInProgress      = "In Progress"
	StatusComplete        = "Complete"
	StatusPendingApproval = "Pending Approval"
)

// The gates the legacy application really enforces: starting the key phase
// needs the value phase complete.
var gates = map[string]string{
	"Scoping":          "Planning",
	"Data Provider ID": "Sample Selection",
}

// ResetNote is the note a full reset writes.
const ResetNote = "Phase reset for fresh start"

// Seed is the analysis profile of workflow-analysis.md.
var Seed = &Profile{
	Name:   "seed",
	Schema: seedSchema,
	Chain: []PhaseSpec{
		{Label: "Planning", PlannedDays: 7},
		{Label: "Scoping", PlannedDays: 7},
		{Label: "Sample Selection", PlannedDays: 5},
		{Label: "Data Provider ID", PlannedDays: 3},
		{Label: "Request Info", PlannedDays: 7},
		{Label: "Testing", PlannedDays: 14},
		{Label: "Observations", PlannedDays: 7},
	},
	States: map[dtetype.State]string{
		dtetype.StateNotStarted: "Not Started",
		dtetype.StateInProgress: "In Progress",
		dtetype.StateCompleted:  "Completed",
	},
	Statuses: map[dtetype.Status]string{
		dtetype.StatusOnSchedule:     "On Schedule",
		dtetype.StatusAtRisk:         "At Risk",
		dtetype.StatusBehindSchedule: "Behind Schedule",
	},
	UniquePhase:    true,
	PhaseOrderBase: 1,
	PhaseEnum:      "workflow_phase_enum",
	StateEnum:      "workflow_state_enum",
	ScheduleEnum:   "workflow_status_enum",
}

// Production is the profile of production databases described in LEGACY.md.
var Production = &Profile{
	Name:   "production",
	Schema: productionSchema,
	Chain: []PhaseSpec{
		{Label: "Planning", PlannedDays: 7},
		{Label: "Data Profiling", PlannedDays: 5},
		{Label: "Scoping", PlannedDays: 7},
		{Label: "Sample Selection", Aliases: []string{"Sampling"}, PlannedDays: 5},
		{Label: "Data Provider ID", Aliases: []string{"Data Owner ID", "Data Owner Identification"}, PlannedDays: 3},
		{Label: "Request Info", PlannedDays: 7},
		{Label: "Testing", Aliases: []string{"Test Execution"}, PlannedDays: 14},
		{Label: "Observations", PlannedDays: 7},
		{Label: "Finalize Test Report", Aliases: []string{"Preparing Test Report"}, PlannedDays: 5},
	},
	States: map[dtetype.State]string{
		dtetype.StateNotStarted: "Not Started",
		dtetype.StateInProgress: "In Progress",
		dtetype.StateCompleted:  "Complete",
	},
	Statuses: map[dtetype.Status]string{
		dtetype.StatusOnSchedule:     "On Track",
		dtetype.StatusAtRisk:         "At Risk",
		dtetype.StatusBehindSchedule: "Past Due",
	},
	StatusColumn:   true,
	PhaseOrderBase: 0,
	ExtraColumns:   true,
	PhaseEnum:      "phase_name_enum",
	StateEnum:      "phase_state_enum",
	ScheduleEnum:   "schedule_status_enum",
	StatusEnum:     "phase_status_enum",
}

// Profiles returns the built-in profiles.
func Profiles() []*Profile { return []*Profile{Seed, Production} }

// ProfileByName returns the built-in profile with that name.
func ProfileByName(name string) (*Profile, error) {
	for _, p := range Profiles() {
		if p.Name == name {
			return p, nil
		}
	}
	names := make([]string, 0, 2)
	for _, p := range Profiles() {
		names = append(names, p.Name)
	}
	return nil, fmt.Errorf("unknown legacy profile %q: use one of %s", name, strings.Join(names, ", "))
}

// Phase returns the chain index of the phase that has label as its label or
// an alias, or -1.
func (p *Profile) Phase(label string) int {
	for i, ph := range p.Chain {
		if slices.Contains(ph.Labels(), label) {
			return i
		}
	}
	return -1
}

// State returns the label of a canonical state.
func (p *Profile) State(s dtetype.State) string { return p.States[s] }

// StateOf returns the canonical state of a state label, and false for a label
// the profile does not know.
func (p *Profile) StateOf(label string) (dtetype.State, bool) {
	for s, l := range p.States {
		if l == label {
			return s, true
		}
	}
	return "", false
}

// Status returns the label of a canonical schedule status.
func (p *Profile) Status(s dtetype.Status) string { return p.Statuses[s] }

// StatusOf returns the canonical schedule status of a label, and false for a
// label the profile does not know.
func (p *Profile) StatusOf(label string) (dtetype.Status, bool) {
	for s, l := range p.Statuses {
		if l == label {
			return s, true
		}
	}
	return "", false
}
