package cutover

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/reconcile"
)

// Modes of a phase.
const (
	// ModeLegacy: the phase is not mirrored; legacy alone runs it.
	ModeLegacy = "legacy"
	// ModeShadow: mirrored and compared; legacy is authoritative.
	ModeShadow = "shadow"
	// ModeNew: the new engine is authoritative for the reports it covers.
	ModeNew = "new"
)

// Conflict policies for a legacy write to a phase and report on new.
const (
	PolicyAlert  = "alert"
	PolicyRevert = "revert"
)

// GateConfig is what a promotion must show. Zero fields take defaults.
type GateConfig struct {
	// Runs is how many recent reconcile runs must pass. Default: 3.
	Runs int `yaml:"runs" json:"runs"`
	// Within is how recent they must be. Default: 24h.
	Within time.Duration `yaml:"-" json:"within"`
	// MinConsistency is the least consistency each run must show for the
	// phase. Default: 0.999.
	MinConsistency float64 `yaml:"min_consistency" json:"min_consistency"`
}

// WithDefaults fills unset fields with the defaults.
func (g GateConfig) WithDefaults() GateConfig {
	if g.Runs <= 0 {
		g.Runs = 3
	}
	if g.Within <= 0 {
		g.Within = 24 * time.Hour
	}
	if g.MinConsistency <= 0 {
		g.MinConsistency = 0.999
	}
	return g
}

// Mode is a phase's cutover mode.
type Mode struct {
	Phase     dtetype.Phase `json:"phase"`
	Mode      string        `json:"mode"`
	Percent   int           `json:"percent"`
	UpdatedAt time.Time     `json:"updated_at"`
	UpdatedBy string        `json:"updated_by"`
}

// Bucket places a report in 0..9999, stably: the percentage split of a
// phase on new covers the reports whose bucket is below percent × 100.
func Bucket(k dtetype.Key) int {
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(k.CycleID, 10) + "/" + strconv.FormatInt(k.ReportID, 10)))
	return int(h.Sum64() % 10000)
}

// Covers reports whether mode m puts report k on the new engine.
func (m Mode) Covers(k dtetype.Key, promoted bool) bool {
	return m.Mode == ModeNew && (promoted || Bucket(k) < m.Percent*100)
}

// Store reads and changes cutover state in the bridge schema.
type Store struct {
	pool   *pgxpool.Pool
	schema string
}

// NewStore returns a store on pool; schema is the bridge schema ("" for
// dtebridge).
func NewStore(pool *pgxpool.Pool, schema string) *Store {
	if schema == "" {
		schema = "dtebridge"
	}
	return &Store{pool: pool, schema: pgx.Identifier{schema}.Sanitize()}
}

// Modes returns every phase's mode; a phase never set is in shadow mode.
func (s *Store) Modes(ctx context.Context) (map[dtetype.Phase]Mode, error) {
	rows, err := s.pool.Query(ctx, `SELECT phase, mode, percent, updated_at, updated_by FROM `+s.schema+`.cutover_modes`)
	if err != nil {
		return nil, fmt.Errorf("error reading cutover modes (is the bridge installed?): %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Phase]Mode{}
	for rows.Next() {
		var m Mode
		if err := rows.Scan(&m.Phase, &m.Mode, &m.Percent, &m.UpdatedAt, &m.UpdatedBy); err != nil {
			return nil, err
		}
		out[m.Phase] = m
	}
	return out, rows.Err()
}

// ModeOf returns one phase's mode.
func ModeOf(modes map[dtetype.Phase]Mode, p dtetype.Phase) Mode {
	if m, ok := modes[p]; ok {
		return m
	}
	return Mode{Phase: p, Mode: ModeShadow}
}

// Promoted returns, per phase, the reports pinned to the new engine.
func (s *Store) Promoted(ctx context.Context) (map[dtetype.Phase]map[dtetype.Key]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT phase, cycle_id, report_id FROM `+s.schema+`.cutover_promoted`)
	if err != nil {
		return nil, fmt.Errorf("error reading promoted reports: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Phase]map[dtetype.Key]bool{}
	for rows.Next() {
		var p dtetype.Phase
		var k dtetype.Key
		if err := rows.Scan(&p, &k.CycleID, &k.ReportID); err != nil {
			return nil, err
		}
		if out[p] == nil {
			out[p] = map[dtetype.Key]bool{}
		}
		out[p][k] = true
	}
	return out, rows.Err()
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
	return fmt.Sprintf("gate for %s (%d runs within %s at ≥ %.2f%%, no unexpected divergences) %s%s",
		g.Phase, g.Config.Runs, g.Config.Within, g.Config.MinConsistency*100, verdict, figures)
}

// Gate judges whether phase may be promoted: the last cfg.Runs full
// reconcile runs covering it, all within cfg.Within, each with consistency
// for the phase at or above cfg.MinConsistency and no unexpected divergence.
func (s *Store) Gate(ctx context.Context, phase dtetype.Phase, cfg GateConfig) (*GateResult, error) {
	cfg = cfg.WithDefaults()
	res := &GateResult{Phase: phase, Config: cfg, Runs: []GateRun{}}
	runs, err := reconcile.Runs(ctx, s.pool, strings.Trim(s.schema, `"`), 200)
	if err != nil {
		return nil, err
	}
	for _, r := range runs {
		if len(res.Runs) == cfg.Runs {
			break
		}
		if r.Scope.Cycle != nil || r.Scope.Since != nil || len(r.Scope.Keys) > 0 || (r.Scope.Phase != "" && r.Scope.Phase != phase) {
			continue // not a full run of this phase
		}
		gr := GateRun{RunID: r.RunID, FinishedAt: r.FinishedAt}
		for _, p := range r.Phases {
			if p.Phase == phase {
				gr.Compared, gr.Consistency = p.Compared, p.Consistency
				for _, n := range p.Unexpected {
					gr.Unexpected += n
				}
			}
		}
		gr.Pass = gr.Compared > 0 && gr.Consistency >= cfg.MinConsistency && gr.Unexpected == 0 && time.Since(r.FinishedAt) <= cfg.Within
		res.Runs = append(res.Runs, gr)
	}
	if len(res.Runs) < cfg.Runs {
		res.Why = append(res.Why, fmt.Sprintf("%d reconcile runs of %s recorded, %d needed", len(res.Runs), phase, cfg.Runs))
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
	return res, nil
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
	From, To Mode
	Gate     *GateResult
	Forced   bool
	// Released are reports the change took off the new engine (a rollback
	// or a move out of new): their shadows must resync from legacy.
	Released []dtetype.Key
	LogID    int64
}

// Set changes a phase's mode, gated and audited, in one transaction.
// knownKeys returns every report the bridge knows, for pinning the reports
// a lowered percentage would otherwise drop.
func (s *Store) Set(ctx context.Context, c Change, gate GateConfig) (*Result, error) {
	switch {
	case c.Mode != ModeLegacy && c.Mode != ModeShadow && c.Mode != ModeNew:
		return nil, fmt.Errorf("%w: mode %q is not legacy, shadow or new", ErrInvalidChange, c.Mode)
	case c.Phase == "":
		return nil, fmt.Errorf("%w: no phase", ErrInvalidChange)
	case strings.TrimSpace(c.Actor) == "" || strings.TrimSpace(c.Reason) == "":
		return nil, fmt.Errorf("%w: an actor and a reason are required", ErrInvalidChange)
	case c.Mode == ModeNew && (c.Percent < 1 || c.Percent > 100):
		return nil, fmt.Errorf("%w: mode new needs a percentage from 1 to 100, not %d (to take reports off new, roll back)", ErrInvalidChange, c.Percent)
	case c.Mode != ModeNew && c.Percent != 0:
		return nil, fmt.Errorf("%w: a percentage applies to mode new only", ErrInvalidChange)
	}
	res := &Result{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('dtebridge.cutover'))`); err != nil {
			return err
		}
		from := Mode{Phase: c.Phase, Mode: ModeShadow}
		err := tx.QueryRow(ctx, `SELECT mode, percent, updated_at, updated_by FROM `+s.schema+`.cutover_modes WHERE phase = $1`, c.Phase).
			Scan(&from.Mode, &from.Percent, &from.UpdatedAt, &from.UpdatedBy)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		res.From = from
		promotes := c.Mode == ModeNew && (from.Mode != ModeNew || c.Percent > from.Percent)
		g, err := s.Gate(ctx, c.Phase, gate)
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
		keys, err := s.knownKeys(ctx, tx)
		if err != nil {
			return err
		}
		switch {
		case from.Mode == ModeNew && c.Mode == ModeNew && c.Percent < from.Percent:
			// Reports promoted under the higher percentage stay promoted.
			var cs, rs []int64
			for _, k := range keys {
				if Bucket(k) < from.Percent*100 {
					cs, rs = append(cs, k.CycleID), append(rs, k.ReportID)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO `+s.schema+`.cutover_promoted (cycle_id, report_id, phase)
				SELECT c, r, $3 FROM unnest($1::bigint[], $2::bigint[]) AS u(c, r) ON CONFLICT DO NOTHING`, cs, rs, c.Phase); err != nil {
				return err
			}
		case from.Mode == ModeNew && c.Mode != ModeNew:
			// Rollback releases every report the phase had on new.
			promoted := map[dtetype.Key]bool{}
			rows, err := tx.Query(ctx, `DELETE FROM `+s.schema+`.cutover_promoted WHERE phase = $1 RETURNING cycle_id, report_id`, c.Phase)
			if err != nil {
				return err
			}
			for rows.Next() {
				var k dtetype.Key
				if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
					rows.Close()
					return err
				}
				promoted[k] = true
			}
			if err := rows.Err(); err != nil {
				return err
			}
			for _, k := range keys {
				if from.Covers(k, promoted[k]) {
					res.Released = append(res.Released, k)
				}
			}
			// Legacy is authoritative again: its writes are no longer conflicts.
			if _, err := tx.Exec(ctx, `UPDATE `+s.schema+`.divergences SET resolved_at = now()
				WHERE phase = $1 AND kind = 'authority_conflict' AND resolved_at IS NULL`, c.Phase); err != nil {
				return err
			}
		}
		res.To = Mode{Phase: c.Phase, Mode: c.Mode, Percent: c.Percent, UpdatedBy: c.Actor}
		if err := tx.QueryRow(ctx, `INSERT INTO `+s.schema+`.cutover_modes (phase, mode, percent, updated_at, updated_by) VALUES ($1, $2, $3, now(), $4)
			ON CONFLICT (phase) DO UPDATE SET mode = excluded.mode, percent = excluded.percent, updated_at = now(), updated_by = excluded.updated_by
			RETURNING updated_at`, c.Phase, c.Mode, c.Percent, c.Actor).Scan(&res.To.UpdatedAt); err != nil {
			return err
		}
		figures, _ := json.Marshal(g)
		return tx.QueryRow(ctx, `INSERT INTO `+s.schema+`.cutover_log (actor, phase, from_mode, to_mode, from_percent, to_percent, reason, forced, gate)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING log_id`,
			c.Actor, c.Phase, from.Mode, c.Mode, from.Percent, c.Percent, c.Reason, res.Forced, figures).Scan(&res.LogID)
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// knownKeys lists every report the shadow knows.
func (s *Store) knownKeys(ctx context.Context, tx pgx.Tx) ([]dtetype.Key, error) {
	rows, err := tx.Query(ctx, `SELECT cycle_id, report_id FROM `+s.schema+`.shadow_keys ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dtetype.Key
	for rows.Next() {
		var k dtetype.Key
		if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// LogEntry is one audited mode change.
type LogEntry struct {
	ID          int64           `json:"id"`
	At          time.Time       `json:"at"`
	Actor       string          `json:"actor"`
	Phase       dtetype.Phase   `json:"phase"`
	FromMode    string          `json:"from_mode"`
	ToMode      string          `json:"to_mode"`
	FromPercent int             `json:"from_percent"`
	ToPercent   int             `json:"to_percent"`
	Reason      string          `json:"reason"`
	Forced      bool            `json:"forced"`
	Gate        json.RawMessage `json:"gate"`
}

// History returns the audit log, newest first, optionally for one phase.
func (s *Store) History(ctx context.Context, phase dtetype.Phase, limit int) ([]LogEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT log_id, at, actor, phase, from_mode, to_mode, from_percent, to_percent, reason, forced, gate
		FROM `+s.schema+`.cutover_log WHERE $1 = '' OR phase = $1 ORDER BY log_id DESC LIMIT $2`, string(phase), limit)
	if err != nil {
		return nil, fmt.Errorf("error reading the cutover log: %w", err)
	}
	defer rows.Close()
	var out []LogEntry
	for rows.Next() {
		var e LogEntry
		var gate []byte
		if err := rows.Scan(&e.ID, &e.At, &e.Actor, &e.Phase, &e.FromMode, &e.ToMode, &e.FromPercent, &e.ToPercent, &e.Reason, &e.Forced, &gate); err != nil {
			return nil, err
		}
		e.Gate = gate
		out = append(out, e)
	}
	return out, rows.Err()
}

// Authority is a running process's view of cutover: which phases are
// mirrored and which reports the new engine owns. It refreshes itself, so
// a mode change takes effect in every process within seconds.
type Authority struct {
	store    *Store
	mu       sync.RWMutex
	modes    map[dtetype.Phase]Mode
	promoted map[dtetype.Phase]map[dtetype.Key]bool
	loaded   time.Time
}

// NewAuthority returns an authority view backed by store.
func NewAuthority(store *Store) *Authority {
	return &Authority{store: store, modes: map[dtetype.Phase]Mode{}, promoted: map[dtetype.Phase]map[dtetype.Key]bool{}}
}

// Refresh reloads modes and promotions.
func (a *Authority) Refresh(ctx context.Context) error {
	// The database's clock, read first: the view is at least this fresh,
	// and legacy transaction times come from the same clock.
	var asOf time.Time
	if err := a.store.pool.QueryRow(ctx, `SELECT clock_timestamp()`).Scan(&asOf); err != nil {
		return fmt.Errorf("error reading cutover modes: %w", err)
	}
	modes, err := a.store.Modes(ctx)
	if err != nil {
		return err
	}
	promoted, err := a.store.Promoted(ctx)
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
func (a *Authority) Mode(p dtetype.Phase) Mode {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return ModeOf(a.modes, p)
}

// OnNew reports whether the new engine owns phase p of report k.
func (a *Authority) OnNew(k dtetype.Key, p dtetype.Phase) bool {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return ModeOf(a.modes, p).Covers(k, a.promoted[p][k])
}

// Mirrored is false for a phase in legacy mode.
func (a *Authority) Mirrored(p dtetype.Phase) bool { return a.Mode(p).Mode != ModeLegacy }

// LegacyPhases lists the phases in legacy mode, which reconcile skips.
func (a *Authority) LegacyPhases() []dtetype.Phase {
	var out []dtetype.Phase
	for p, m := range a.Modes() {
		if m.Mode == ModeLegacy {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Modes returns a copy of every set mode.
func (a *Authority) Modes() map[dtetype.Phase]Mode {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make(map[dtetype.Phase]Mode, len(a.modes))
	for k, v := range a.modes {
		out[k] = v
	}
	return out
}
