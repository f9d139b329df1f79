package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
)

// TestSpill: a run that finds more divergences than Options.Spill keeps
// them in sorted files instead of memory, and reports, renders, records
// and repairs exactly what a run that holds them in memory does in the
// same snapshot. Close removes the files.
func TestSpill(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(12, 300, 5)
	b.Quiescent(60 * time.Second)
	// Divergences of several kinds over many reports and phases.
	b.Bypass(`UPDATE workflow_phases SET started_by = 4000 + phase_id WHERE phase_id % 3 = 0`)
	b.Bypass(`UPDATE workflow_phases SET planned_end_date = planned_end_date + 2 WHERE phase_id % 5 = 0`)
	b.Bypass(`DELETE FROM workflow_phases WHERE phase_id % 11 = 0`)
	snap, release := exportSnapshot(t, b)
	defer release()
	now := time.Now()
	mem := run(t, b, func(o *reconcile.Options) { o.Snapshot, o.Now = snap, func() time.Time { return now } })
	spilled := run(t, b, func(o *reconcile.Options) {
		o.Snapshot, o.Now, o.Spill, o.Persist = snap, func() time.Time { return now }, 7, true
	})
	if mem.Spilled() || !spilled.Spilled() || spilled.Divergences != nil || len(mem.Divergences) < 30 {
		t.Fatalf("spilled %v (%d in memory), not spilled %v (%d)", spilled.Spilled(), len(spilled.Divergences), mem.Spilled(), len(mem.Divergences))
	}
	// A run that finds exactly Spill keeps them in memory.
	exact := run(t, b, func(o *reconcile.Options) { o.Snapshot, o.Spill = snap, len(mem.Divergences) })
	if exact.Spilled() || len(exact.Divergences) != len(mem.Divergences) {
		t.Errorf("a run with exactly Spill divergences spilled: %v", exact.Spilled())
	}
	var read []dtetype.Divergence
	for d, err := range spilled.All() {
		if err != nil {
			t.Fatal(err)
		}
		d.FirstSeen = nil
		read = append(read, d)
	}
	if diff := cmp.Diff(mem.Divergences, read); diff != "" {
		t.Fatalf("spilled divergences differ from the ones held in memory (-memory +spilled):\n%s", diff)
	}
	if mem.Unexpected != spilled.Unexpected || mem.Expected != spilled.Expected || !cmp.Equal(mem.Counts, spilled.Counts) ||
		!cmp.Equal(mem.Phases, spilled.Phases) {
		t.Errorf("figures differ: %d/%d %v, spilled %d/%d %v", mem.Unexpected, mem.Expected, mem.Counts, spilled.Unexpected, spilled.Expected, spilled.Counts)
	}
	// Recorded: every divergence found is open.
	if open := openDivergences(t, b); int64(len(open)) != spilled.Unexpected+spilled.Expected || spilled.New != int64(len(open)) {
		t.Errorf("%d open divergences recorded, %d new; the run found %d", len(open), spilled.New, spilled.Unexpected+spilled.Expected)
	}
	// Rendered alike: JSON lists them all, text and Markdown the first ten.
	var a, c bytes.Buffer
	if err := mem.WriteJSON(&a); err != nil {
		t.Fatal(err)
	}
	if err := spilled.WriteJSON(&c); err != nil {
		t.Fatal(err)
	}
	var ja, jc map[string]any
	if err := json.Unmarshal(a.Bytes(), &ja); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(c.Bytes(), &jc); err != nil {
		t.Fatalf("streamed JSON: %v\n%s", err, c.String())
	}
	for _, k := range []string{"run_id", "new", "finished_at", "started_at"} {
		delete(ja, k)
		delete(jc, k)
	}
	for _, d := range jc["divergences"].([]any) {
		delete(d.(map[string]any), "first_seen")
	}
	if diff := cmp.Diff(ja, jc); diff != "" {
		t.Errorf("JSON differs (-memory +spilled):\n%s", diff)
	}
	head := regexp.MustCompile(`(?m)^Reconcile \(.*$`)
	for _, render := range []func(*reconcile.Report, *bytes.Buffer) error{
		func(r *reconcile.Report, w *bytes.Buffer) error { return r.WriteText(w, 10) },
		func(r *reconcile.Report, w *bytes.Buffer) error { return r.WriteMarkdown(w, 10) },
	} {
		a.Reset()
		c.Reset()
		if err := render(mem, &a); err != nil {
			t.Fatal(err)
		}
		if err := render(spilled, &c); err != nil {
			t.Fatal(err)
		}
		x, y := head.ReplaceAllString(a.String(), ""), head.ReplaceAllString(c.String(), "")
		x = regexp.MustCompile(` Run \d+: \d+ new, \d+ resolved since the previous run\.`).ReplaceAllString(x, "")
		y = regexp.MustCompile(` Run \d+: \d+ new, \d+ resolved since the previous run\.`).ReplaceAllString(y, "")
		if x != y {
			t.Errorf("rendered differently:\n%s\n---\n%s", x, y)
		}
	}
	// The files go with Close.
	dirs := func() int {
		m, _ := filepath.Glob(filepath.Join(os.TempDir(), "dtebridge-reconcile-*"))
		return len(m)
	}
	before := dirs()
	if err := spilled.Close(); err != nil {
		t.Fatal(err)
	}
	if after := dirs(); after != before-1 {
		t.Errorf("spill directories: %d before Close, %d after", before, after)
	}
	for _, err := range spilled.All() {
		if err == nil {
			t.Error("a closed spilled report still yields divergences")
		}
		break
	}
	if mem.Close(); len(mem.Divergences) < 30 {
		t.Error("Close dropped the divergences of a report that held them in memory")
	}
	release()

	// A spilled run repairs what it found.
	r := run(t, b, func(o *reconcile.Options) { o.Spill = 5 })
	defer r.Close()
	if err := reconcile.Repair(context.Background(), b.Cfg.ReconcileOptions(b.DB.Pool), reconcile.TemporalOptions{Client: b.TC,
		WorkflowIDPrefix: b.Cfg.Shadow.WorkflowIDPrefix}, r); err != nil {
		t.Fatal(err)
	}
	if r.Repair.Attempted == 0 || r.Repair.Repaired != r.Repair.Attempted {
		t.Errorf("repair of a spilled run: %+v", r.Repair)
	}
}
