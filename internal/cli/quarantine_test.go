package cli

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/store"
)

// TestQuarantineResolve resolves quarantined changes from the command line:
// skip drops one and releases what waits behind it, resync drops a
// report's pending changes and re-drives it from legacy; both are recorded
// with actor and reason, and reconcile is clean afterwards.
func TestQuarantineResolve(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(6, 60, 19)
	b.Quiescent(60 * time.Second)
	base := bridgeFlags(t, b)
	ctx := context.Background()
	keys, err := b.Store().ProjectedKeys(ctx, nil, 2)
	if err != nil || len(keys) != 2 {
		t.Fatal(err, keys)
	}
	a, c := keys[0], keys[1]
	b.Exec(`ALTER TYPE workflow_state_enum ADD VALUE 'Escalated'`)
	row := func(k dtetype.Key) string {
		return `(SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = ` + strconv.FormatInt(k.CycleID, 10) + ` AND report_id = ` + strconv.FormatInt(k.ReportID, 10) + `)`
	}
	// Report a: a label the mapping will never know, then the fix in legacy.
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated', updated_at = now() WHERE phase_id = ` + row(a))
	// (The schedule status the legacy rule gives an in-progress row.)
	b.Exec(`UPDATE workflow_phases SET state = 'In Progress', updated_at = now(), schedule_status = CASE WHEN planned_end_date <= current_date
		THEN 'Behind Schedule' WHEN planned_end_date - current_date <= 7 THEN 'At Risk' ELSE 'On Schedule' END::workflow_status_enum WHERE phase_id = ` + row(a))
	// Report c: the unknown label, then a change that translates.
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated', updated_at = now() WHERE phase_id = ` + row(c))
	b.Exec(`UPDATE workflow_phases SET state = 'Completed', schedule_status = 'On Schedule', updated_at = now() WHERE phase_id = ` + row(c))
	var q []store.QuarantineEntry
	bridgetest.WaitFor(t, 30*time.Second, "four quarantined changes", func() bool {
		q, _ = b.Store().ListQuarantine(ctx, false)
		return len(q) == 4
	})
	first := map[dtetype.Key]string{}
	for _, e := range q {
		if _, ok := first[*e.Key]; !ok {
			first[*e.Key] = e.EventID
			if e.Reason != "unknown_label" {
				t.Errorf("first entry of %s: %s", e.Key, e.Reason)
			}
		}
	}

	validateOutput(t, "quarantine-retry", runCLI(t, append(base, "quarantine", "retry", "--format", "json")...).stdout)
	r := runCLI(t, append(base, "quarantine", "resolve", "--action", "resync", first[a])...)
	if r.code != 2 {
		t.Errorf("resolve without actor and reason: exit %d", r.code)
	}
	r = runCLI(t, append(base, "quarantine", "resolve", "--action", "resync", "--actor", "ops", "--reason", "INC-7: label withdrawn", "--format", "json", first[a])...)
	validateOutput(t, "quarantine-resolve", r.stdout)
	var res struct {
		Resolved []string `json:"resolved"`
		Redrive  struct {
			Applied []dtetype.Key `json:"applied"`
		} `json:"redrive"`
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &res) != nil || len(res.Resolved) != 2 || len(res.Redrive.Applied) != 1 {
		t.Fatalf("resolve resync: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(base, "quarantine", "resolve", "--action", "skip", "--actor", "ops", "--reason", "INC-8", first[c])...)
	if r.code != 0 || !strings.Contains(r.stdout, "Resolved 1 quarantined changes (skip).") || !strings.Contains(r.stdout, "Released 1 changes held behind it.") {
		t.Fatalf("resolve skip: exit %d, %s %s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, append(base, "quarantine", "resolve", "--action", "skip", "--actor", "ops", "--reason", "again", first[c])...)
	if r.code != 2 || !strings.Contains(r.stderr, "no pending quarantined change") {
		t.Errorf("resolving a resolved change: exit %d, %s", r.code, r.stderr)
	}
	b.Quiescent(30 * time.Second)
	all, err := b.Store().ListQuarantine(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range all {
		if e.DeliveredAt == nil {
			t.Errorf("still pending: %+v", e)
		}
		if e.EventID == first[c] && (e.Resolution != "skip" || e.ResolvedBy != "ops" || e.ResolvedReason != "INC-8") {
			t.Errorf("the skip is not recorded: %+v", e)
		}
	}
	if r := runCLI(t, append(base, "reconcile", "--fail-on-divergence")...); r.code != 0 {
		t.Errorf("reconcile after resolving: exit %d\n%s", r.code, r.stdout)
	}
}
