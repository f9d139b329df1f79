package dtetype

import (
	"testing"
	"time"
)

func TestLegacyScheduleStatus(t *testing.T) {
	t.Parallel()
	due := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	// plannedEnd carries a clock time and a zone on purpose: only its date counts.
	plannedEnd := time.Date(2026, 12, 10, 15, 30, 0, 0, time.FixedZone("X", 5*3600))
	cases := []struct {
		name      string
		now       time.Time
		completed bool
		end       time.Time
		want      Status
	}{
		{"NoPlannedEnd", due, false, time.Time{}, StatusOnSchedule},
		{"CompletedAndLate", due.Add(72 * time.Hour), true, plannedEnd, StatusOnSchedule},
		{"DueMidnightExactly", due, false, plannedEnd, StatusBehindSchedule},
		{"DueDayAfternoon", due.Add(14 * time.Hour), false, plannedEnd, StatusBehindSchedule},
		{"LastSecondBeforeDue", due.Add(-time.Second), false, plannedEnd, StatusOnSchedule},
		{"Last24Hours", due.Add(-23 * time.Hour), false, plannedEnd, StatusOnSchedule},
		{"ExactlyOneDay", due.Add(-24 * time.Hour), false, plannedEnd, StatusAtRisk},
		{"SevenDaysBefore", due.Add(-7 * 24 * time.Hour), false, plannedEnd, StatusAtRisk},
		{"SevenDaysAndAnHour", due.Add(-7*24*time.Hour - time.Hour), false, plannedEnd, StatusAtRisk},
		{"EightDaysBefore", due.Add(-8 * 24 * time.Hour), false, plannedEnd, StatusOnSchedule},
		{"NowInOtherZone", due.Add(-2 * time.Hour).In(time.FixedZone("Y", -8*3600)), false, plannedEnd, StatusOnSchedule},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := LegacyScheduleStatus(tc.now, tc.completed, tc.end); got != tc.want {
				t.Errorf("LegacyScheduleStatus(%s, %v, %s) = %s, want %s", tc.now, tc.completed, tc.end, got, tc.want)
			}
		})
	}
}

func TestListsAreValid(t *testing.T) {
	t.Parallel()
	for _, s := range States() {
		if !s.Valid() {
			t.Errorf("state %q from States() is not Valid", s)
		}
	}
	for _, s := range Statuses() {
		if !s.Valid() {
			t.Errorf("status %q from Statuses() is not Valid", s)
		}
	}
	if State("Completed").Valid() || Status("At Risk").Valid() {
		t.Error("legacy labels must not be valid canonical values")
	}
}
