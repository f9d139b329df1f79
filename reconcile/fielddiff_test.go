package reconcile

import (
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
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

// TestRepairNamesWhatRemains: the text report names each divergence repair
// left, and why.
func TestRepairNamesWhatRemains(t *testing.T) {
	k := dtetype.Key{CycleID: 1, ReportID: 2}
	r := &Report{Repair: &RepairReport{Attempted: 2, Repaired: 1, Reports: 2, Failed: map[string]string{"1/3": "legacy row 9 does not translate"},
		Remaining:     []dtetype.Divergence{{Key: k, Phase: "planning", Kind: dtetype.KindStateMismatch, Detail: "State: legacy \"completed\", shadow \"in_progress\""}},
		NotRepairable: map[string]int{dtetype.KindDuplicateRows: 2}}}
	var b strings.Builder
	r.writeExtras(&b, "")
	for _, want := range []string{"1 of 2 divergences repaired, 1 remain", "Remains: 1/2 planning state_mismatch: State: legacy",
		"legacy and the workflow still disagree", "Not re-driven: 1/3: legacy row 9 does not translate", "2 duplicate_legacy_rows"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("repair text lacks %q:\n%s", want, b.String())
		}
	}
}
