package serve_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// oversized writes a 2.5 MB override reason, over the Temporal dev
// server's 2 MB payload limit, on one row of report k.
func oversized(b *bridgetest.Bridge, k dtetype.Key) {
	b.Exec(`UPDATE workflow_phases SET override_reason = repeat('r', 2500*1024), updated_at = now()
		WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`, k.CycleID, k.ReportID)
}

// touch makes an ordinary legacy change to report k.
func touch(b *bridgetest.Bridge, k dtetype.Key, by int) {
	b.Exec(`UPDATE workflow_phases SET completed_by = $3, updated_at = now()
		WHERE phase_id = (SELECT max(phase_id) FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2)`, k.CycleID, k.ReportID, by)
}

func ready(t *testing.T, b *bridgetest.Bridge) (bool, string) {
	t.Helper()
	resp, err := http.Get("http://" + b.Srv.Addr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Ready    bool     `json:"ready"`
		Problems []string `json:"problems"`
	}
	json.NewDecoder(resp.Body).Decode(&body)
	return body.Ready && resp.StatusCode == 200, strings.Join(body.Problems, "; ")
}

// TestOversizedRowIsCapped: free text is capped before it reaches the
// shadow, so a row with a 2.5 MB override reason flows like any other.
func TestOversizedRowIsCapped(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(4, 40, 5)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	keys, err := b.Store().ProjectedKeys(ctx, nil, 2)
	if err != nil || len(keys) != 2 {
		t.Fatal(err, keys)
	}
	oversized(b, keys[0])
	touch(b, keys[1], 77)
	b.Quiescent(60 * time.Second)
	phases, err := b.Store().ProjectedPhases(ctx, keys[0])
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	for _, p := range phases {
		if p.Override != nil && len(p.Override.Reason) > len(reason) {
			reason = p.Override.Reason
		}
	}
	if len(reason) < legacy.DefaultMaxText || len(reason) > legacy.DefaultMaxText+64 || !strings.Contains(reason, "bytes cut]") {
		t.Errorf("override reason carried into the shadow: %d bytes, ending %q", len(reason), reason[max(0, len(reason)-40):])
	}
	if q, _ := b.Store().ListQuarantine(ctx, true); len(q) != 0 {
		t.Errorf("quarantine: %+v", q)
	}
	if ok, why := ready(t, b); !ok {
		t.Errorf("not ready: %s", why)
	}
}

// TestUndeliverableChangeIsQuarantined: a change Temporal refuses for good
// (here uncapped, over the payload limit) goes to quarantine as too_large,
// holding only its own report; every other report keeps flowing, a backfill
// whose snapshot holds the row finishes, and the process stays ready.
func TestUndeliverableChangeIsQuarantined(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Configure: func(c *config.Config) { c.Capture.MaxText = -1 }})
	b.Simulate(4, 40, 6)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	st := b.Store()
	keys, err := st.ProjectedKeys(ctx, nil, 3)
	if err != nil || len(keys) != 3 {
		t.Fatal(err, keys)
	}
	poisoned := keys[0]
	oversized(b, poisoned)
	touch(b, poisoned, 91) // a later change of the same report waits behind
	touch(b, keys[1], 92)  // another report's change flows
	bridgetest.WaitFor(t, 60*time.Second, "the change to be quarantined and the rest delivered", func() bool {
		backlog, err := st.BacklogOf(ctx, store.MirrorConsumer)
		return err == nil && backlog.Changes == 0
	})
	q, err := st.ListQuarantine(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, e := range q {
		if e.Key == nil || *e.Key != poisoned {
			t.Errorf("quarantined a change of another report: %+v", e)
		}
		reasons[e.Reason]++
	}
	if reasons[legacy.ReasonTooLarge] != 1 || reasons[legacy.ReasonHeld] != 1 {
		t.Fatalf("quarantine reasons %v, want one too_large and one held", reasons)
	}
	if !strings.Contains(q[0].Detail, "Temporal refuses") {
		t.Errorf("detail %q", q[0].Detail)
	}
	// Delivered is not yet projected: the workflow projects on its own time.
	bridgetest.WaitFor(t, 30*time.Second, "the other report's change in its projection", func() bool {
		phases, _ := st.ProjectedPhases(ctx, keys[1])
		for _, p := range phases {
			if p.CompletedBy == "92" {
				return true
			}
		}
		return false
	})
	if ok, why := ready(t, b); !ok {
		t.Errorf("not ready: %s", why)
	}
	// A backfill whose snapshot holds the row finishes.
	before := time.Now()
	if err := st.RequestBackfill(ctx, store.MirrorConsumer); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 60*time.Second, "the backfill", func() bool {
		cps, err := st.Checkpoints(ctx, time.Hour)
		return err == nil && len(cps) == 1 && cps[0].BackfilledAt != nil && cps[0].BackfilledAt.After(before) && !cps[0].BackfillRequested
	})
	touch(b, keys[2], 93)
	b.Quiescent(30 * time.Second)
}
