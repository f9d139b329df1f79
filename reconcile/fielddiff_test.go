package reconcile

import (
	"testing"
	"time"
)

func TestFieldDiffReadable(t *testing.T) {
	a := time.Date(2026, 12, 16, 0, 0, 0, 0, time.UTC)
	b := a.AddDate(0, 0, -3)
	got := fieldDiff(&sides{State: "completed", StartedBy: "4242", PlannedEnd: &a}, &sides{State: "completed", StartedBy: "43", PlannedEnd: &b})
	want := `PlannedEnd: legacy 2026-12-16T00:00:00Z, shadow 2026-12-13T00:00:00Z; StartedBy: legacy "4242", shadow "43"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := fieldDiff(&sides{ActualEnd: &a}, &sides{}); got != "ActualEnd: legacy 2026-12-16T00:00:00Z, shadow none" {
		t.Errorf("nil side: %s", got)
	}
}
