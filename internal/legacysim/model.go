package legacysim

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/synapsedte/dtebridge/dtetype"
)

var (
	// ErrGate means a gate the legacy application enforces is not met.
	ErrGate = errors.New("gate not met")
	// ErrNoRow means the (cycle, report, phase) has no workflow_phases row.
	ErrNoRow = errors.New("no workflow_phases row")
	// ErrUnsupported means the profile's schema cannot express the operation,
	// for example a status-only complete without a status column.
	ErrUnsupported = errors.New("not supported by this profile")
	// ErrUnknownPhase means a phase label is not in the profile's chain.
	ErrUnknownPhase = errors.New("unknown phase")
)

// GateError reports a start refused by a legacy gate.
type GateError struct {
	Phase, Needs string
}

func (e *GateError) Error() string {
	return fmt.Sprintf("cannot start %s: %s is not complete", e.Phase, e.Needs)
}

// Unwrap returns ErrGate.
func (e *GateError) Unwrap() error { return ErrGate }

// DB is what the model needs from a database handle; *pgxpool.Pool and
// *pgx.Conn satisfy it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// ModelConfig configures a Model. A nil config is ready to use.
type ModelConfig struct {
	// Now is the application's clock. Default: time.Now.
	Now func() time.Time
	// Prepare, if set, runs first in every operation's transaction; an
	// error aborts the operation. The bridge's write-back uses it to mark
	// its writes with its origin and to claim a command exactly once.
	Prepare func(ctx context.Context, tx pgx.Tx) error
	// Finish, if set, runs last in every operation's transaction, with the
	// rows the operation wrote; an error aborts the operation. The
	// write-back records what a command wrote in the same transaction.
	Finish func(ctx context.Context, tx pgx.Tx, written []Row) error
}

// Model writes workflow_phases rows the way the legacy application does.
// Every operation is one SQL transaction, retried on deadlock.
type Model struct {
	db      DB
	profile *Profile
	now     func() time.Time
	prepare func(ctx context.Context, tx pgx.Tx) error
	finish  func(ctx context.Context, tx pgx.Tx, written []Row) error
	cols    string

	mu      sync.Mutex
	written map[pgx.Tx][]Row // rows written by each open transaction, for finish
}

// NewModel returns a model of the legacy application for profile on db.
func NewModel(db DB, profile *Profile, cfg *ModelConfig) *Model {
	if cfg == nil {
		cfg = &ModelConfig{}
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	// Dates and times are read within the bounds the bridge carries, so a
	// row with infinity or a BC date (a fault a test injects) stays usable.
	bounded := func(col string) string {
		return "CASE WHEN " + col + " > '9999-12-31 23:59:59.999999+00' THEN '9999-12-31 23:59:59.999999+00'::timestamptz WHEN " + col +
			" < '0001-01-01 00:00:00+00 BC' THEN '0001-01-01 00:00:00+00 BC'::timestamptz ELSE " + col + "::timestamptz END"
	}
	cols := []string{"phase_id", "cycle_id", "report_id", "phase_name::text", "phase_order",
		"state::text", "schedule_status::text", "state_override::text", "status_override::text",
		"override_reason", "override_by", bounded("override_at"), bounded("planned_start_date"), bounded("planned_end_date"),
		bounded("actual_start_date"), bounded("actual_end_date"), "started_by", "completed_by", "notes", bounded("updated_at")}
	if profile.StatusColumn {
		cols = append(cols, "status::text")
	}
	return &Model{db: db, profile: profile, now: now, prepare: cfg.Prepare, finish: cfg.Finish, cols: strings.Join(cols, ", "),
		written: map[pgx.Tx][]Row{}}
}

// Profile returns the model's profile.
func (m *Model) Profile() *Profile { return m.profile }

// Row is a workflow_phases row as the model reads it.
type Row struct {
	PhaseID        int64
	Key            dtetype.Key
	PhaseName      string
	PhaseOrder     *int64
	State          string
	ScheduleStatus string
	StateOverride  *string
	StatusOverride *string
	OverrideReason *string
	OverrideBy     *int64
	OverrideAt     *time.Time
	PlannedStart   *time.Time
	PlannedEnd     *time.Time
	ActualStart    *time.Time
	ActualEnd      *time.Time
	StartedBy      *int64
	CompletedBy    *int64
	Notes          *string
	UpdatedAt      time.Time
	// Status is the legacy status column; nil where the profile has none.
	Status *string
}

// EffectiveState is the state readers see: the override if set, else the base.
func (r *Row) EffectiveState() string {
	if r.StateOverride != nil {
		return *r.StateOverride
	}
	return r.State
}

// EffectiveScheduleStatus is the schedule status readers see.
func (r *Row) EffectiveScheduleStatus() string {
	if r.StatusOverride != nil {
		return *r.StatusOverride
	}
	return r.ScheduleStatus
}

func (m *Model) scan(row pgx.Row) (*Row, error) {
	var r Row
	dest := []any{&r.PhaseID, &r.Key.CycleID, &r.Key.ReportID, &r.PhaseName, &r.PhaseOrder,
		&r.State, &r.ScheduleStatus, &r.StateOverride, &r.StatusOverride,
		&r.OverrideReason, &r.OverrideBy, &r.OverrideAt, &r.PlannedStart, &r.PlannedEnd,
		&r.ActualStart, &r.ActualEnd, &r.StartedBy, &r.CompletedBy, &r.Notes, &r.UpdatedAt}
	if m.profile.StatusColumn {
		dest = append(dest, &r.Status)
	}
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	return &r, nil
}

// Ref names one phase of one report: the key and the phase's label (or any
// of its aliases).
type Ref struct {
	Key   dtetype.Key
	Phase string
}

func (r Ref) String() string { return fmt.Sprintf("%s %s", r.Key, r.Phase) }

// tx runs fn in a transaction, retrying deadlocks and serialization failures.
func (m *Model) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	if m.prepare != nil || m.finish != nil {
		inner := fn
		fn = func(tx pgx.Tx) error {
			if m.prepare != nil {
				if err := m.prepare(ctx, tx); err != nil {
					return err
				}
			}
			if m.finish == nil {
				return inner(tx)
			}
			m.mu.Lock()
			m.written[tx] = nil
			m.mu.Unlock()
			defer func() {
				m.mu.Lock()
				delete(m.written, tx)
				m.mu.Unlock()
			}()
			if err := inner(tx); err != nil {
				return err
			}
			m.mu.Lock()
			written := m.written[tx]
			m.mu.Unlock()
			return m.finish(ctx, tx, written)
		}
	}
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, m.db, fn)
		var pgErr *pgconn.PgError
		if err != nil && attempt < 5 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			continue
		}
		return err
	}
}

// lock reads and locks the row of ref. With duplicate rows, the application
// always works on the oldest one, the first its query returns.
func (m *Model) lock(ctx context.Context, tx pgx.Tx, ref Ref) (*Row, error) {
	i := m.profile.Phase(ref.Phase)
	if i < 0 {
		return nil, fmt.Errorf("%w %q in profile %s", ErrUnknownPhase, ref.Phase, m.profile.Name)
	}
	q := "SELECT " + m.cols + ` FROM workflow_phases
		WHERE cycle_id = $1 AND report_id = $2 AND phase_name::text = ANY($3)
		ORDER BY phase_id LIMIT 1 FOR UPDATE`
	r, err := m.scan(tx.QueryRow(ctx, q, ref.Key.CycleID, ref.Key.ReportID, m.profile.Chain[i].Labels()))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w for %s", ErrNoRow, ref)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", ref, err)
	}
	return r, nil
}

// change is a pending UPDATE of one row: columns in the order they were set.
type change struct {
	cols []string
	vals []any
}

func (c *change) set(col string, val any) {
	c.cols = append(c.cols, col)
	c.vals = append(c.vals, val)
}

// write applies c to the row and re-reads it. Column names come from this
// package only, never from input.
func (m *Model) write(ctx context.Context, tx pgx.Tx, r *Row, c *change) (*Row, error) {
	var sb strings.Builder
	sb.WriteString("UPDATE workflow_phases SET ")
	for i, col := range c.cols {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(pgx.Identifier{col}.Sanitize() + " = $" + strconv.Itoa(i+1))
	}
	sb.WriteString(" WHERE phase_id = $" + strconv.Itoa(len(c.cols)+1) + " RETURNING " + m.cols)
	out, err := m.scan(tx.QueryRow(ctx, sb.String(), append(c.vals, r.PhaseID)...))
	if err != nil {
		return nil, fmt.Errorf("error updating phase row %d: %w", r.PhaseID, err)
	}
	if m.finish != nil {
		m.mu.Lock()
		if rows, ok := m.written[tx]; ok {
			m.written[tx] = append(rows, *out)
		}
		m.mu.Unlock()
	}
	return out, nil
}

// update is one operation on one row: in a transaction it locks the row of
// ref, lets decide choose the change (nil: write nothing), writes it and
// returns the row as written.
func (m *Model) update(ctx context.Context, ref Ref, decide func(tx pgx.Tx, r *Row, now time.Time) (*change, error)) ([]Row, error) {
	var out []Row
	err := m.tx(ctx, func(tx pgx.Tx) error {
		out = nil
		r, err := m.lock(ctx, tx, ref)
		if err != nil {
			return err
		}
		c, err := decide(tx, r, m.now())
		if err != nil || c == nil {
			return err
		}
		w, err := m.write(ctx, tx, r, c)
		if err != nil {
			return err
		}
		out = []Row{*w}
		return nil
	})
	return out, err
}

// schedule is the orchestrator's schedule-status recompute for a row whose
// base state is state.
func (m *Model) schedule(now time.Time, state string, plannedEnd *time.Time) string {
	var end time.Time
	if plannedEnd != nil {
		end = *plannedEnd
	}
	return m.profile.Status(dtetype.LegacyScheduleStatus(now, state == m.profile.State(dtetype.StateCompleted), end))
}

// StartOptions selects among the application's start paths.
type StartOptions struct {
	// KeepStatus leaves the legacy status column alone (the unusual path).
	KeepStatus bool
	// OnlyIfNull sets actual_start_date and started_by only where they are
	// NULL (the path used after a reopen).
	OnlyIfNull bool
}

// Start moves a phase to In Progress. Starting Scoping needs Planning
// complete, and starting Data Provider ID needs Sample Selection complete.
func (m *Model) Start(ctx context.Context, ref Ref, user int64, opts StartOptions) ([]Row, error) {
	return m.update(ctx, ref, func(tx pgx.Tx, r *Row, now time.Time) (*change, error) {
		if err := m.checkGate(ctx, tx, ref); err != nil {
			return nil, err
		}
		return m.startChange(r, user, opts, now), nil
	})
}

// startChange is what starting the row r writes.
func (m *Model) startChange(r *Row, user int64, opts StartOptions, now time.Time) *change {
	inProgress := m.profile.State(dtetype.StateInProgress)
	var c change
	c.set("state", inProgress)
	if m.profile.StatusColumn && !opts.KeepStatus {
		c.set("status", StatusInProgress)
	}
	if !opts.OnlyIfNull || r.ActualStart == nil {
		c.set("actual_start_date", now)
	}
	if !opts.OnlyIfNull || r.StartedBy == nil {
		c.set("started_by", user)
	}
	c.set("schedule_status", m.schedule(now, inProgress, r.PlannedEnd))
	c.set("updated_at", now)
	return &c
}

func (m *Model) checkGate(ctx context.Context, tx pgx.Tx, ref Ref) error {
	i := m.profile.Phase(ref.Phase)
	if i < 0 {
		return fmt.Errorf("%w %q in profile %s", ErrUnknownPhase, ref.Phase, m.profile.Name)
	}
	needs, ok := gates[m.profile.Chain[i].Label]
	if !ok {
		return nil
	}
	j := m.profile.Phase(needs)
	var state string
	err := tx.QueryRow(ctx, `SELECT coalesce(state_override, state)::text FROM workflow_phases
		WHERE cycle_id = $1 AND report_id = $2 AND phase_name::text = ANY($3)
		ORDER BY phase_id LIMIT 1`, ref.Key.CycleID, ref.Key.ReportID, m.profile.Chain[j].Labels()).Scan(&state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("error reading gate %s for %s: %w", needs, ref, err)
	}
	if state != m.profile.State(dtetype.StateCompleted) {
		return &GateError{Phase: m.profile.Chain[i].Label, Needs: needs}
	}
	return nil
}

// CompleteOptions selects among the application's complete paths.
type CompleteOptions struct {
	// StatusOnly sets only the legacy status column and leaves state,
	// dates and users behind, as some code paths do. It needs a profile
	// with a status column.
	StatusOnly bool
}

// Complete marks a phase complete. Completing Planning (fully) also starts
// Scoping when Scoping has not started.
func (m *Model) Complete(ctx context.Context, ref Ref, user int64, opts CompleteOptions) ([]Row, error) {
	if opts.StatusOnly && !m.profile.StatusColumn {
		return nil, fmt.Errorf("status-only complete: %w %s (no status column)", ErrUnsupported, m.profile.Name)
	}
	var out []Row
	err := m.tx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		r, err := m.lock(ctx, tx, ref)
		if err != nil {
			return err
		}
		now := m.now()
		complete := m.profile.State(dtetype.StateCompleted)
		var c change
		if opts.StatusOnly {
			c.set("status", StatusComplete)
			c.set("schedule_status", m.schedule(now, r.State, r.PlannedEnd))
		} else {
			c.set("state", complete)
			if m.profile.StatusColumn {
				c.set("status", StatusComplete)
			}
			c.set("actual_end_date", now)
			c.set("completed_by", user)
			c.set("schedule_status", m.schedule(now, complete, r.PlannedEnd))
		}
		c.set("updated_at", now)
		w, err := m.write(ctx, tx, r, &c)
		if err != nil {
			return err
		}
		out = append(out, *w)
		if opts.StatusOnly || m.profile.Chain[m.profile.Phase(ref.Phase)].Label != "Planning" {
			return nil
		}
		s, err := m.lock(ctx, tx, Ref{Key: ref.Key, Phase: "Scoping"})
		if errors.Is(err, ErrNoRow) {
			return nil
		}
		if err != nil {
			return err
		}
		if s.State != m.profile.State(dtetype.StateNotStarted) {
			return nil
		}
		w, err = m.write(ctx, tx, s, m.startChange(s, user, StartOptions{}, now))
		if err != nil {
			return err
		}
		out = append(out, *w)
		return nil
	})
	return out, err
}

// OverrideOptions is an override of state and/or schedule status.
type OverrideOptions struct {
	// State, if set, becomes state_override.
	State *dtetype.State
	// Status, if set, becomes status_override.
	Status *dtetype.Status
	// Reason is recorded in override_reason.
	Reason string
}

// Override sets state_override and/or status_override with reason, user and
// time. The base state and schedule status are never changed by it.
func (m *Model) Override(ctx context.Context, ref Ref, user int64, o OverrideOptions) ([]Row, error) {
	if o.State == nil && o.Status == nil {
		return nil, errors.New("override needs a state, a status, or both")
	}
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		var c change
		if o.State != nil {
			c.set("state_override", m.profile.State(*o.State))
		}
		if o.Status != nil {
			c.set("status_override", m.profile.Status(*o.Status))
		}
		c.set("override_reason", o.Reason)
		c.set("override_by", user)
		c.set("override_at", now)
		c.set("updated_at", now)
		return &c, nil
	})
}

// ClearOverride nulls all five override fields.
func (m *Model) ClearOverride(ctx context.Context, ref Ref) ([]Row, error) {
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		var c change
		for _, col := range []string{"state_override", "status_override", "override_reason", "override_by", "override_at"} {
			c.set(col, nil)
		}
		c.set("updated_at", now)
		return &c, nil
	})
}

// ReopenForm is one of the four ways the legacy application reopens a phase.
type ReopenForm int

// The reopen forms of LEGACY.md.
const (
	// ReopenStatus sets status back to In Progress and nulls
	// actual_end_date, leaving state Complete. Needs a status column.
	ReopenStatus ReopenForm = iota + 1
	// ReopenState sets state back to In Progress and clears actual_end_date
	// and completed_by, leaving status alone.
	ReopenState
	// ReopenApproval is the approval loop: state back to In Progress,
	// actual_end_date and completed_by cleared, status kept at Pending
	// Approval. Needs a status column.
	ReopenApproval
	// ReopenReset is the full reset: state and status Not Started, actual
	// dates and users nulled, phase_data emptied, notes ResetNote.
	ReopenReset
)

// ReopenForms returns every reopen form.
func ReopenForms() []ReopenForm {
	return []ReopenForm{ReopenStatus, ReopenState, ReopenApproval, ReopenReset}
}

func (f ReopenForm) String() string {
	switch f {
	case ReopenStatus:
		return "status"
	case ReopenState:
		return "state"
	case ReopenApproval:
		return "approval"
	case ReopenReset:
		return "reset"
	}
	return "ReopenForm(" + strconv.Itoa(int(f)) + ")"
}

// Reopen reopens a phase in one of the four forms. Each recomputes the
// schedule status, because the orchestrator touched the row.
func (m *Model) Reopen(ctx context.Context, ref Ref, form ReopenForm) ([]Row, error) {
	if (form == ReopenStatus || form == ReopenApproval) && !m.profile.StatusColumn {
		return nil, fmt.Errorf("reopen (%s): %w %s (no status column)", form, ErrUnsupported, m.profile.Name)
	}
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		state := r.State
		var c change
		switch form {
		case ReopenStatus:
			c.set("status", StatusInProgress)
			c.set("actual_end_date", nil)
		case ReopenState:
			state = m.profile.State(dtetype.StateInProgress)
			c.set("state", state)
			c.set("actual_end_date", nil)
			c.set("completed_by", nil)
		case ReopenApproval:
			state = m.profile.State(dtetype.StateInProgress)
			c.set("state", state)
			c.set("status", StatusPendingApproval)
			c.set("actual_end_date", nil)
			c.set("completed_by", nil)
		case ReopenReset:
			state = m.profile.State(dtetype.StateNotStarted)
			c.set("state", state)
			if m.profile.StatusColumn {
				c.set("status", StatusNotStarted)
			}
			for _, col := range []string{"actual_start_date", "actual_end_date", "started_by", "completed_by"} {
				c.set(col, nil)
			}
			c.set("phase_data", map[string]any{})
			c.set("notes", ResetNote)
		default:
			return nil, fmt.Errorf("unknown reopen form %d", form)
		}
		c.set("schedule_status", m.schedule(now, state, r.PlannedEnd))
		c.set("updated_at", now)
		return &c, nil
	})
}

// SubmitForApproval sets the legacy status to Pending Approval, the start of
// the approval loop. Needs a status column.
func (m *Model) SubmitForApproval(ctx context.Context, ref Ref) ([]Row, error) {
	if !m.profile.StatusColumn {
		return nil, fmt.Errorf("submit for approval: %w %s (no status column)", ErrUnsupported, m.profile.Name)
	}
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		var c change
		c.set("status", StatusPendingApproval)
		c.set("schedule_status", m.schedule(now, r.State, r.PlannedEnd))
		c.set("updated_at", now)
		return &c, nil
	})
}

// Refresh is the orchestrator touching a row only to recompute its schedule
// status. This path skips rows whose status_override is set (the other
// paths recompute regardless), and writes nothing when the value is current.
func (m *Model) Refresh(ctx context.Context, ref Ref) ([]Row, error) {
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		s := m.schedule(now, r.State, r.PlannedEnd)
		if r.StatusOverride != nil || s == r.ScheduleStatus {
			return nil, nil
		}
		var c change
		c.set("schedule_status", s)
		c.set("updated_at", now)
		return &c, nil
	})
}

// RestoreValues are what Restore writes.
type RestoreValues struct {
	State                  dtetype.State
	ActualStart, ActualEnd *time.Time
	StartedBy, CompletedBy string
}

// Restore writes a given state back over the row of ref: the bridge's
// revert policy uses it when legacy writes to a phase the new engine owns.
// It sets what the application's own operations set (state, status,
// schedule status, actual dates and actors) and nothing else.
func (m *Model) Restore(ctx context.Context, ref Ref, v RestoreValues) ([]Row, error) {
	actor := func(s string) any {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
		return nil
	}
	return m.update(ctx, ref, func(_ pgx.Tx, r *Row, now time.Time) (*change, error) {
		var c change
		state := m.profile.State(v.State)
		c.set("state", state)
		if m.profile.StatusColumn {
			c.set("status", map[dtetype.State]string{dtetype.StateNotStarted: StatusNotStarted,
				dtetype.StateInProgress: StatusInProgress, dtetype.StateCompleted: StatusComplete}[v.State])
		}
		c.set("actual_start_date", v.ActualStart)
		c.set("actual_end_date", v.ActualEnd)
		c.set("started_by", actor(v.StartedBy))
		c.set("completed_by", actor(v.CompletedBy))
		c.set("schedule_status", m.schedule(now, state, r.PlannedEnd))
		c.set("updated_at", now)
		return &c, nil
	})
}

// Row reads the row of ref, the one the application would work on.
func (m *Model) Row(ctx context.Context, ref Ref) (*Row, error) {
	var out *Row
	err := m.tx(ctx, func(tx pgx.Tx) error {
		var err error
		out, err = m.lock(ctx, tx, ref)
		return err
	})
	return out, err
}
