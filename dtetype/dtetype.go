package dtetype

import (
	"fmt"
	"time"
)

// Key identifies one report's workflow within one test cycle. Each key has
// one shadow workflow.
type Key struct {
	CycleID  int64 `json:"cycle_id"`
	ReportID int64 `json:"report_id"`
}

// String renders the key as "cycle/report", the form used in logs and ids.
func (k Key) String() string { return fmt.Sprintf("%d/%d", k.CycleID, k.ReportID) }

// Phase is a canonical phase id taken from a workflow definition, for example
// "sample_selection". Legacy phase labels reach it only through a profile
// mapping.
type Phase string

// State is the canonical progress state of a phase.
type State string

// The canonical states, in the order a phase moves through them.
const (
	StateNotStarted State = "not_started"
	StateInProgress State = "in_progress"
	StateCompleted  State = "completed"
)

// States returns every canonical state in lifecycle order.
func States() []State { return []State{StateNotStarted, StateInProgress, StateCompleted} }

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	switch s {
	case StateNotStarted, StateInProgress, StateCompleted:
		return true
	}
	return false
}

// Status is the canonical schedule status of a phase.
type Status string

// The canonical schedule statuses, from best to worst.
const (
	StatusOnSchedule     Status = "on_schedule"
	StatusAtRisk         Status = "at_risk"
	StatusBehindSchedule Status = "behind_schedule"
)

// Statuses returns every canonical schedule status from best to worst.
func Statuses() []Status { return []Status{StatusOnSchedule, StatusAtRisk, StatusBehindSchedule} }

// Valid reports whether s is one of Statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusOnSchedule, StatusAtRisk, StatusBehindSchedule:
		return true
	}
	return false
}

// AtRiskWindow is how close to its planned end a phase must be for the legacy
// rule to call it at risk.
const AtRiskWindow = 7 * 24 * time.Hour

// LegacyScheduleStatus is the schedule-status rule of the legacy orchestrator,
// quirks included. It works in calendar days in UTC against midnight at the
// start of plannedEnd:
//
//   - a completed phase, or one with no planned end (zero time), is on schedule;
//   - from midnight at the start of the planned end date it is behind
//     schedule, so the due day itself already counts as late;
//   - otherwise, if the whole days remaining until that midnight are more than
//     0 and at most 7, it is at risk;
//   - otherwise it is on schedule. This includes the last 24 hours before the
//     due midnight, where the whole days remaining are 0: legacy calls a phase
//     that is hours from being late on schedule.
//
// Only the date of plannedEnd is used; its clock time and location are ignored.
func LegacyScheduleStatus(now time.Time, completed bool, plannedEnd time.Time) Status {
	if completed || plannedEnd.IsZero() {
		return StatusOnSchedule
	}
	y, m, d := plannedEnd.Date()
	due := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	now = now.UTC()
	if !now.Before(due) {
		return StatusBehindSchedule
	}
	days := int64(due.Sub(now) / (24 * time.Hour))
	if days > 0 && days <= 7 {
		return StatusAtRisk
	}
	return StatusOnSchedule
}
