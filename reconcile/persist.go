package reconcile

import (
	"context"
	"encoding/json"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/store"
)

// persist records the run and tracks divergences across runs: one still
// found keeps its first_seen, one no longer found in the run's scope gets
// resolved_at, and the run counts both. The report's divergences show
// their first_seen, unless the run spilled them to disk (the console and
// the divergences API show it for every open divergence).
func persist(ctx context.Context, st *store.Store, r *Report, exclude []dtetype.Phase, keys []dtetype.Key) error {
	scope, _ := json.Marshal(r.Scope)
	counts, _ := json.Marshal(r.Counts)
	phases, _ := json.Marshal(r.Phases)
	run := store.Run{StartedAt: r.StartedAt, Scope: scope, Counts: counts, Phases: phases, Compared: r.Compared,
		Consistent: r.Consistent, InFlight: r.InFlight, Unexpected: r.Unexpected, Expected: r.Expected, Kind: r.Kind, Touched: r.Touched}
	if r.BaseRun != 0 {
		run.BaseRun = &r.BaseRun
	}
	if r.Kind != store.RunScoped {
		run.Snapshot, run.Fingerprint = &r.snapshot, &r.fingerprint
	}
	rec, err := st.RecordRun(ctx, run,
		store.RunScope{Cycle: r.Scope.Cycle, Phase: r.Scope.Phase, Keys: keys, InFlight: r.inFlightReports, Exclude: exclude}, r.All(), !r.Spilled())
	if err != nil {
		return err
	}
	r.RunID, r.New, r.Resolved = rec.RunID, rec.New, rec.Resolved
	for i := range r.Divergences {
		d := &r.Divergences[i]
		if t, ok := rec.FirstSeen[store.DivergenceKey{Key: d.Key, Phase: d.Phase, Kind: d.Kind}]; ok {
			d.FirstSeen = &t
		}
	}
	return nil
}

// RunSummary is a recorded run, as status and the cutover gates read it.
type RunSummary struct {
	RunID      int64     `json:"run_id"`
	FinishedAt time.Time `json:"finished_at"`
	// Kind is full, incremental or scoped.
	Kind        string        `json:"kind"`
	Scope       Scope         `json:"scope"`
	Compared    int64         `json:"compared"`
	Consistent  int64         `json:"consistent"`
	Unexpected  int64         `json:"unexpected"`
	Expected    int64         `json:"expected"`
	New         int64         `json:"new"`
	Resolved    int64         `json:"resolved"`
	Phases      []PhaseReport `json:"phases"`
	Consistency float64       `json:"consistency"`
	// Duration is how long the run took.
	Duration time.Duration `json:"-"`
}

// FullOf reports whether the run looked at every report of phase: a full
// run, or one scoped to the phase alone.
func (r *RunSummary) FullOf(phase dtetype.Phase) bool {
	return r.Kind != store.RunIncremental && r.Scope.Cycle == nil && r.Scope.Since == nil && len(r.Scope.Keys) == 0 &&
		(r.Scope.Phase == "" || r.Scope.Phase == phase)
}

// Runs returns the most recent recorded runs, newest first.
func Runs(ctx context.Context, st *store.Store, limit int) ([]RunSummary, error) {
	rows, err := st.Runs(ctx, limit)
	if err != nil {
		return nil, err
	}
	return summaries(rows)
}

// GateRuns returns the runs the cutover gates judge by, newest first: the
// last limit runs that are not incremental, and every incremental run
// since the newest full run.
func GateRuns(ctx context.Context, st *store.Store, limit int) ([]RunSummary, error) {
	rows, err := st.GateRuns(ctx, limit)
	if err != nil {
		return nil, err
	}
	return summaries(rows)
}

func summaries(rows []store.RunRow) ([]RunSummary, error) {
	out := make([]RunSummary, 0, len(rows))
	for _, x := range rows {
		s := RunSummary{RunID: x.RunID, FinishedAt: x.FinishedAt, Kind: x.Kind, Compared: x.Compared, Consistent: x.Consistent, Unexpected: x.Unexpected,
			Expected: x.Expected, New: x.New, Resolved: x.Resolved, Duration: x.FinishedAt.Sub(x.StartedAt)}
		if err := json.Unmarshal(x.Scope, &s.Scope); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(x.Phases, &s.Phases); err != nil {
			return nil, err
		}
		s.Consistency = ratio(s.Consistent, s.Compared)
		out = append(out, s)
	}
	return out, nil
}
