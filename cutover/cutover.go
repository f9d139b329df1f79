package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/store"
)

// Conflict policies for a legacy write to a phase and report on new.
const (
	PolicyAlert  = "alert"
	PolicyRevert = "revert"
)

// GateConfig is what a promotion must show; config resolves it.
type GateConfig struct {
	// Runs is how many recent reconcile runs must pass.
	Runs int `json:"runs"`
	// Within is how recent they must be.
	Within time.Duration `json:"within"`
	// MinSpan is how long the runs must span, oldest to newest, so a gate
	// is not passed by runs seconds apart.
	MinSpan time.Duration `json:"min_span"`
	// MinConsistency is the least consistency each run must show for the
	// phase.
	MinConsistency float64 `json:"min_consistency"`
}

// gateConfigJSON is GateConfig with durations written as Go duration
// strings ("24h0m0s").
type gateConfigJSON struct {
	Runs           int              `json:"runs"`
	Within         dtetype.Duration `json:"within"`
	MinSpan        dtetype.Duration `json:"min_span"`
	MinConsistency float64          `json:"min_consistency"`
}

// MarshalJSON writes durations as strings.
func (g GateConfig) MarshalJSON() ([]byte, error) {
	return json.Marshal(gateConfigJSON{g.Runs, dtetype.Duration(g.Within), dtetype.Duration(g.MinSpan), g.MinConsistency})
}

// UnmarshalJSON reads durations as strings, or as nanoseconds (gates
// recorded before they were strings).
func (g *GateConfig) UnmarshalJSON(b []byte) error {
	var j gateConfigJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*g = GateConfig{j.Runs, time.Duration(j.Within), time.Duration(j.MinSpan), j.MinConsistency}
	return nil
}

// Store reads and changes cutover state in the bridge schema.
type Store struct {
	st *store.Store
}

// NewStore returns cutover's view of the bridge schema st.
func NewStore(st *store.Store) *Store { return &Store{st: st} }

// Modes returns every phase's mode that has been set; a phase never set is
// in shadow mode (dtetype.ModeOf).
func (s *Store) Modes(ctx context.Context) (map[dtetype.Phase]dtetype.Mode, error) {
	return s.st.Modes(ctx)
}

// GateRun is one reconcile run as the gate judged it.
type GateRun struct {
	RunID       int64     `json:"run_id"`
	FinishedAt  time.Time `json:"finished_at"`
	Compared    int64     `json:"compared"`
	Consistency float64   `json:"consistency"`
	Unexpected  int64     `json:"unexpected"`
	Pass        bool      `json:"pass"`
}

// GateResult is a gate's verdict with its figures.
type GateResult struct {
	Phase  dtetype.Phase `json:"phase"`
	Config GateConfig    `json:"config"`
	Runs   []GateRun     `json:"runs"`
	Pass   bool          `json:"pass"`
	// Why lists what fails, empty when it passes.
	Why []string `json:"why,omitempty"`
}

// String renders the figures on one line.
func (g *GateResult) String() string {
	var runs []string
	for _, r := range g.Runs {
		runs = append(runs, fmt.Sprintf("run %d: %.2f%% of %d, %d unexpected", r.RunID, r.Consistency*100, r.Compared, r.Unexpected))
	}
	verdict := "passes"
	if !g.Pass {
		verdict = "refused: " + strings.Join(g.Why, "; ")
	}
	figures := ""
	if len(runs) > 0 {
		figures = " [" + strings.Join(runs, "; ") + "]"
	}
	return fmt.Sprintf("gate for %s (%d runs within %s spanning ≥ %s at ≥ %.2f%%, no unexpected divergences) %s%s",
		g.Phase, g.Config.Runs, g.Config.Within, g.Config.MinSpan, g.Config.MinConsistency*100, verdict, figures)
}

// Gate judges whether phase may be promoted: the last cfg.Runs full
// reconcile runs covering it, all within cfg.Within, each with consistency
// for the phase at or above cfg.MinConsistency and no unexpected divergence.
func (s *Store) Gate(ctx context.Context, phase dtetype.Phase, cfg GateConfig) (*GateResult, error) {
	runs, err := reconcile.GateRuns(ctx, s.st, GateRunsRead)
	if err != nil {
		return nil, err
	}
	return GateOf(runs, phase, cfg), nil
}

// GateRunsRead is how many recorded runs, newest first, the gate looks
// through for full runs of a phase.
const GateRunsRead = 200

// GateOf judges the gate of phase on runs, the recorded runs newest first
// (reconcile.Runs(ctx, st, GateRunsRead)), so one read serves every phase.
func GateOf(runs []reconcile.RunSummary, phase dtetype.Phase, cfg GateConfig) *GateResult {
	res := &GateResult{Phase: phase, Config: cfg, Runs: []GateRun{}}
	// Incremental runs since the newest full run looked at every report
	// written since: one that found an unexpected divergence in the phase
	// fails the gate, whatever the full runs before it found.
	for _, r := range runs {
		if r.Kind != store.RunIncremental {
			if r.FullOf(phase) {
				break
			}
			continue
		}
		for _, p := range r.Phases {
			if n := sumCounts(p.Unexpected); p.Phase == phase && n > 0 {
				res.Why = append(res.Why, fmt.Sprintf("incremental run %d found %d unexpected divergences since the last full run", r.RunID, n))
			}
		}
	}
	for _, r := range runs {
		if len(res.Runs) == cfg.Runs {
			break
		}
		if !r.FullOf(phase) {
			continue
		}
		gr := GateRun{RunID: r.RunID, FinishedAt: r.FinishedAt}
		for _, p := range r.Phases {
			if p.Phase == phase {
				gr.Compared, gr.Consistency, gr.Unexpected = p.Compared, p.Consistency, sumCounts(p.Unexpected)
			}
		}
		gr.Pass = gr.Compared > 0 && gr.Consistency >= cfg.MinConsistency && gr.Unexpected == 0 && time.Since(r.FinishedAt) <= cfg.Within
		res.Runs = append(res.Runs, gr)
	}
	if len(res.Runs) < cfg.Runs {
		res.Why = append(res.Why, fmt.Sprintf("%d reconcile runs of %s recorded, %d needed", len(res.Runs), phase, cfg.Runs))
	} else if n := len(res.Runs); n > 0 {
		if span := res.Runs[0].FinishedAt.Sub(res.Runs[n-1].FinishedAt); span < cfg.MinSpan {
			res.Why = append(res.Why, fmt.Sprintf("the %d runs span %s, less than %s (cutover.gate.min_span): reconcile again later",
				n, span.Round(time.Millisecond), cfg.MinSpan))
		}
	}
	for _, r := range res.Runs {
		switch {
		case time.Since(r.FinishedAt) > cfg.Within:
			res.Why = append(res.Why, fmt.Sprintf("run %d is older than %s", r.RunID, cfg.Within))
		case r.Compared == 0:
			res.Why = append(res.Why, fmt.Sprintf("run %d compared nothing for %s", r.RunID, phase))
		case r.Unexpected > 0:
			res.Why = append(res.Why, fmt.Sprintf("run %d found %d unexpected divergences", r.RunID, r.Unexpected))
		case r.Consistency < cfg.MinConsistency:
			res.Why = append(res.Why, fmt.Sprintf("run %d consistency %.2f%% is below %.2f%%", r.RunID, r.Consistency*100, cfg.MinConsistency*100))
		}
	}
	res.Pass = len(res.Why) == 0
	return res
}

func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Change is a request to change a phase's mode.
type Change struct {
	Phase dtetype.Phase
	Mode  string
	// Percent is 1 to 100 for mode new, and 0 for the others.
	Percent int
	Actor   string
	Reason  string
	// Force overrides a gate refusal; the override is recorded.
	Force bool
	// LegacyTable is the table the write-back updates: a move to new needs
	// this role to be allowed to, force or not.
	LegacyTable string
}

// Sentinel errors.
var (
	// ErrGateRefused means a promotion did not pass its gate.
	ErrGateRefused = errors.New("promotion refused by the gate")
	// ErrInvalidChange means the request itself is wrong.
	ErrInvalidChange = errors.New("invalid cutover change")
)

// GateError is a refused promotion with its figures.
type GateError struct{ Gate *GateResult }

func (e *GateError) Error() string { return e.Gate.String() + " (use --force --reason to override)" }

// Unwrap returns ErrGateRefused.
func (e *GateError) Unwrap() error { return ErrGateRefused }

// Result is what a change did.
type Result struct {
	From, To dtetype.Mode
	Gate     *GateResult
	Forced   bool
	// Released are reports the change took off the new engine (a rollback
	// or a move out of new); Resynced the reports re-driven because the
	// shadow did not follow the phase (a move out of legacy). Redrives are
	// the re-drives requested for either, which the running bridge serves.
	Released []dtetype.Key
	Resynced []dtetype.Key
	Redrives []int64
	LogID    int64
	// NoOp means the phase already had that mode: nothing was changed or
	// logged.
	NoOp bool
}

// Set changes a phase's mode, gated and audited, in one transaction. A
// change out of new releases the phase's reports and requests their
// re-drive from legacy in the same transaction, so the running bridge
// resyncs them even if the caller goes away.
func (s *Store) Set(ctx context.Context, c Change, gate GateConfig) (*Result, error) {
	switch {
	case !slices.Contains(dtetype.Modes(), c.Mode):
		return nil, fmt.Errorf("%w: mode %q is not legacy, shadow or new", ErrInvalidChange, c.Mode)
	case c.Phase == "":
		return nil, fmt.Errorf("%w: no phase", ErrInvalidChange)
	case strings.TrimSpace(c.Actor) == "" || strings.TrimSpace(c.Reason) == "":
		return nil, fmt.Errorf("%w: an actor and a reason are required", ErrInvalidChange)
	case c.Mode == dtetype.ModeNew && (c.Percent < 1 || c.Percent > 100):
		return nil, fmt.Errorf("%w: mode new needs a percentage from 1 to 100, not %d (to take reports off new, roll back)", ErrInvalidChange, c.Percent)
	case c.Mode != dtetype.ModeNew && c.Percent != 0:
		return nil, fmt.Errorf("%w: a percentage applies to mode new only", ErrInvalidChange)
	}
	res := &Result{}
	err := s.st.InTx(ctx, func(tx *store.Store) error {
		from, err := tx.LockMode(ctx, c.Phase)
		if err != nil {
			return err
		}
		res.From = from
		if from.Mode == c.Mode && from.Percent == c.Percent {
			res.To, res.NoOp = from, true // nothing changes, so nothing is logged
			return nil
		}
		if c.Mode == dtetype.ModeNew && c.LegacyTable != "" {
			var can bool
			if err := tx.DB().QueryRow(ctx, `SELECT has_table_privilege(to_regclass($1), 'UPDATE')`,
				pgx.Identifier(strings.Split(c.LegacyTable, ".")).Sanitize()).Scan(&can); err != nil {
				return err
			}
			if !can {
				return fmt.Errorf("%w: this role may not UPDATE %s, so the new engine's commands could not be written back: GRANT UPDATE ON %s to it first (dtebridge check lists what the configuration needs)",
					ErrInvalidChange, c.LegacyTable, c.LegacyTable)
			}
		}
		promotes := c.Mode == dtetype.ModeNew && (from.Mode != dtetype.ModeNew || c.Percent > from.Percent)
		g, err := NewStore(tx).Gate(ctx, c.Phase, gate)
		if err != nil {
			return err
		}
		res.Gate = g
		if promotes && !g.Pass {
			if !c.Force {
				return &GateError{Gate: g}
			}
			res.Forced = true
		}
		keys, err := tx.ProjectedKeys(ctx, nil, 0)
		if err != nil {
			return err
		}
		switch {
		case from.Mode == dtetype.ModeNew && c.Mode == dtetype.ModeNew && c.Percent < from.Percent:
			// Reports promoted under the higher percentage stay promoted.
			var pin []dtetype.Key
			for _, k := range keys {
				if dtetype.Bucket(k) < from.Percent*100 {
					pin = append(pin, k)
				}
			}
			if err := tx.Pin(ctx, c.Phase, pin); err != nil {
				return err
			}
		case from.Mode == dtetype.ModeNew && c.Mode != dtetype.ModeNew:
			// Rollback releases every report the phase had on new.
			released, err := tx.ReleaseAll(ctx, c.Phase)
			if err != nil {
				return err
			}
			promoted := map[dtetype.Key]bool{}
			for _, k := range released {
				promoted[k] = true
			}
			for _, k := range keys {
				if from.Covers(k, promoted[k]) {
					res.Released = append(res.Released, k)
				}
			}
			// Legacy is authoritative again: its writes are no longer conflicts.
			if err := tx.ResolveConflicts(ctx, c.Phase); err != nil {
				return err
			}
			if res.Redrives, err = tx.RequestRedrives(ctx, store.RedriveRequest{Keys: res.Released, Reason: store.RedriveRollback,
				RequestedBy: c.Actor}); err != nil {
				return err
			}
		case from.Mode == dtetype.ModeLegacy && c.Mode != dtetype.ModeLegacy:
			// The shadow did not follow the phase while legacy ran it alone:
			// every report is re-driven, so the shadow is equal to legacy again.
			if res.Redrives, err = tx.RequestRedrives(ctx, store.RedriveRequest{Keys: keys, Reason: store.RedriveMode,
				RequestedBy: c.Actor}); err != nil {
				return err
			}
			res.Resynced = keys
		}
		res.To = dtetype.Mode{Phase: c.Phase, Mode: c.Mode, Percent: c.Percent, UpdatedBy: c.Actor}
		at, err := tx.SetMode(ctx, res.To)
		if err != nil {
			return err
		}
		res.To.UpdatedAt = &at
		figures, _ := json.Marshal(g)
		res.LogID, err = tx.LogMode(ctx, store.LogEntry{Actor: c.Actor, Phase: c.Phase, FromMode: from.Mode, ToMode: c.Mode,
			FromPercent: from.Percent, ToPercent: c.Percent, Reason: c.Reason, Forced: res.Forced, Gate: figures})
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// OnNew is which reports a phase is on the new engine for.
type OnNew struct {
	Mode dtetype.Mode `json:"mode"`
	// Reports are those the engine owns the phase of, each pinned (it
	// stays on new when the percentage falls) or covered by the
	// percentage's buckets.
	Reports []ReportOnNew `json:"reports"`
	// Followed is how many reports the shadow follows in all.
	Followed int `json:"followed"`
}

// ReportOnNew is one report the new engine owns a phase of.
type ReportOnNew struct {
	Key    dtetype.Key `json:"key"`
	Pinned bool        `json:"pinned"`
}

// ReportsOnNew lists the reports phase is on the new engine for, in key
// order.
func (s *Store) ReportsOnNew(ctx context.Context, phase dtetype.Phase) (*OnNew, error) {
	modes, err := s.st.Modes(ctx)
	if err != nil {
		return nil, err
	}
	promoted, err := s.st.Promoted(ctx)
	if err != nil {
		return nil, err
	}
	keys, err := s.st.ProjectedKeys(ctx, nil, 0)
	if err != nil {
		return nil, err
	}
	out := &OnNew{Mode: dtetype.ModeOf(modes, phase), Reports: []ReportOnNew{}, Followed: len(keys)}
	for _, k := range keys {
		if pinned := promoted[phase][k]; out.Mode.Covers(k, pinned) {
			out.Reports = append(out.Reports, ReportOnNew{Key: k, Pinned: pinned})
		}
	}
	return out, nil
}

// History returns the audit log, newest first, optionally for one phase.
func (s *Store) History(ctx context.Context, phase dtetype.Phase, limit int) ([]store.LogEntry, error) {
	return s.st.History(ctx, phase, limit)
}

// Authority is a running process's view of cutover: which phases are
// mirrored and which reports the new engine owns. It refreshes itself, so
// a mode change takes effect in every process within seconds.
type Authority struct {
	store    *Store
	mu       sync.RWMutex
	modes    map[dtetype.Phase]dtetype.Mode
	promoted map[dtetype.Phase]map[dtetype.Key]bool
	loaded   time.Time
}

// NewAuthority returns an authority view backed by store.
func NewAuthority(store *Store) *Authority {
	return &Authority{store: store, modes: map[dtetype.Phase]dtetype.Mode{}, promoted: map[dtetype.Phase]map[dtetype.Key]bool{}}
}

// Refresh reloads modes and promotions.
func (a *Authority) Refresh(ctx context.Context) error {
	// The database's clock, read first: the view is at least this fresh,
	// and legacy transaction times come from the same clock.
	asOf, err := a.store.st.Now(ctx)
	if err != nil {
		return fmt.Errorf("error reading cutover modes: %w", err)
	}
	modes, err := a.store.st.Modes(ctx)
	if err != nil {
		return err
	}
	promoted, err := a.store.st.Promoted(ctx)
	if err != nil {
		return err
	}
	a.mu.Lock()
	a.modes, a.promoted, a.loaded = modes, promoted, asOf
	a.mu.Unlock()
	return nil
}

// AsOf makes sure the view is fresher than t, a legacy transaction time,
// refreshing it if not. The mirror calls it before routing changes, so a
// legacy write made after a mode change is judged by the new mode even
// between periodic refreshes.
func (a *Authority) AsOf(ctx context.Context, t time.Time) error {
	a.mu.RLock()
	fresh := a.loaded.After(t)
	a.mu.RUnlock()
	if fresh {
		return nil
	}
	return a.Refresh(ctx)
}

// Run refreshes every interval until ctx ends.
func (a *Authority) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		_ = a.Refresh(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Mode returns phase p's mode.
func (a *Authority) Mode(p dtetype.Phase) dtetype.Mode {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return dtetype.ModeOf(a.modes, p)
}

// OnNew reports whether the new engine owns phase p of report k.
func (a *Authority) OnNew(k dtetype.Key, p dtetype.Phase) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return dtetype.ModeOf(a.modes, p).Covers(k, a.promoted[p][k])
}

// Mirrored is false for a phase in legacy mode.
func (a *Authority) Mirrored(p dtetype.Phase) bool { return a.Mode(p).Mode != dtetype.ModeLegacy }

// Modes returns a copy of every set mode.
func (a *Authority) Modes() map[dtetype.Phase]dtetype.Mode {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make(map[dtetype.Phase]dtetype.Mode, len(a.modes))
	for k, v := range a.modes {
		out[k] = v
	}
	return out
}
