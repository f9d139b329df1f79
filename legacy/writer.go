package legacy

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
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Writer errors.
var (
	// ErrGate means a gate the legacy application enforces is not met.
	ErrGate = errors.New("gate not met")
	// ErrNoRow means the report has no row for the phase.
	ErrNoRow = errors.New("no legacy row")
	// ErrUnwritable means the row or the request cannot be written as the
	// legacy application would: an unmapped label, a missing column.
	ErrUnwritable = errors.New("cannot write this row as the legacy application would")
)

// GateError is a start refused by a legacy gate.
type GateError struct {
	Phase dtetype.Phase
	Needs []string
}

func (e *GateError) Error() string {
	return fmt.Sprintf("legacy would not start %s: %s", e.Phase, strings.Join(e.Needs, ", "))
}

// Unwrap returns ErrGate.
func (e *GateError) Unwrap() error { return ErrGate }

// Op is one legacy write: an action on one phase of one report.
type Op struct {
	// Action is what the legacy application does (dtetype.Action*): start
	// sets the state (and the legacy status) in progress, the actual start
	// and who started, legacy's gates applying; complete sets them
	// completed, the actual end and who completed, and starts the phase
	// legacy starts on completion; override sets the overrides with reason,
	// actor and time, leaving the base state; clear-override nulls the five
	// override columns; reopen is legacy's state reopen (in progress, actual
	// end and who completed cleared); restore writes given values over the
	// row (the revert conflict policy).
	Action string
	Key    dtetype.Key
	Phase  dtetype.Phase
	// Actor is the legacy user id acting.
	Actor string
	// Reason is an override's reason.
	Reason string
	// State and Status are an override's values.
	State  dtetype.State
	Status dtetype.Status
	// Restore holds the values a restore writes.
	Restore *Restore
}

// Restore is what dtetype.ActionRestore writes.
type Restore struct {
	State                  dtetype.State
	ActualStart, ActualEnd *time.Time
	StartedBy, CompletedBy string
}

// Written is one row a write changed, as it stands after the write.
type Written struct {
	// RowKey is the row's key as text.
	RowKey string
	// Change is the row in canonical terms, origin dtebridge.
	Change dtetype.PhaseChange
}

// Hooks run inside the write's transaction.
type Hooks struct {
	// Prepare runs first; an error aborts the write. The write-back marks
	// its origin and claims its command here.
	Prepare func(ctx context.Context, tx pgx.Tx) error
	// Finish runs last, with the rows written; an error aborts the write.
	Finish func(ctx context.Context, tx pgx.Tx, written []Written) error
}

// DB is what the writer needs from a database handle.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Writer writes legacy rows exactly as the legacy application does, driven
// by the configured table: its columns, the labels the mapping gives each
// canonical value (the first listed, or the preferred one), the gates
// legacy enforces and the phases it starts by itself. Cutover's write-back
// and the revert conflict policy write through it. Each write is one
// transaction, retried on deadlock.
type Writer struct {
	db  DB
	t   *Table
	tr  *Translator
	now func() time.Time

	typesOnce sync.Once
	types     map[string]ColumnType
	typesErr  error
}

// NewWriter returns a writer of table t (resolved, as config gives it) on
// db. now is the application clock; nil means time.Now.
func NewWriter(db DB, t *Table, now func() time.Time) (*Writer, error) {
	tr, err := NewTranslator(t, &TranslatorConfig{MaxText: -1})
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &Writer{db: db, t: tr.Table(), tr: tr, now: now}, nil
}

// ColumnTypes returns the legacy table's columns and their types.
func (w *Writer) ColumnTypes(ctx context.Context) (map[string]ColumnType, error) {
	w.typesOnce.Do(func() {
		w.types, w.typesErr = TableColumns(ctx, w.db, w.t.Name)
		if w.typesErr == nil && len(w.types) == 0 {
			w.typesErr = fmt.Errorf("legacy table %s not found (set legacy.table in the config)", w.t.Name)
		}
	})
	return w.types, w.typesErr
}

// row is a locked legacy row.
type row struct {
	ctid   string
	key    string
	change *dtetype.PhaseChange
}

// set is a pending UPDATE: columns and values in the order set.
type set struct {
	cols []string
	vals []any
}

func (s *set) put(col string, val any) {
	if col == "" {
		return // the table has no such column
	}
	s.cols = append(s.cols, col)
	s.vals = append(s.vals, val)
}

// text is a value written as text and cast to its column's type, so labels
// reach enum columns and actor ids reach integer or text columns alike.
type text string

// Apply performs op in one transaction, with h's hooks, and returns the
// rows it wrote.
func (w *Writer) Apply(ctx context.Context, op Op, h Hooks) ([]Written, error) {
	types, err := w.ColumnTypes(ctx)
	if err != nil {
		return nil, err
	}
	var out []Written
	fn := func(tx pgx.Tx) error {
		out = nil
		if h.Prepare != nil {
			if err := h.Prepare(ctx, tx); err != nil {
				return err
			}
		}
		now := w.now()
		r, err := w.lock(ctx, tx, op.Key, op.Phase)
		if err != nil {
			return err
		}
		s, err := w.decide(ctx, tx, op, r, now)
		if err != nil {
			return err
		}
		wr, err := w.write(ctx, tx, types, r, s)
		if err != nil {
			return err
		}
		out = append(out, *wr)
		if next, ok := w.t.Write.StartOnComplete[op.Phase]; ok && op.Action == dtetype.ActionComplete {
			n, err := w.lock(ctx, tx, op.Key, next)
			switch {
			case errors.Is(err, ErrNoRow):
			case err != nil:
				return err
			case n.change.BaseState == dtetype.StateNotStarted:
				s, err := w.start(n, op.Actor, now)
				if err != nil {
					return err
				}
				wr, err := w.write(ctx, tx, types, n, s)
				if err != nil {
					return err
				}
				out = append(out, *wr)
			}
		}
		if h.Finish != nil {
			return h.Finish(ctx, tx, out)
		}
		return nil
	}
	for attempt := 0; ; attempt++ {
		err := pgx.BeginFunc(ctx, w.db, fn)
		var pgErr *pgconn.PgError
		if err != nil && attempt < 5 && errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001") {
			continue
		}
		return out, err
	}
}

// lock reads and locks the row legacy works on for phase p of report k:
// with duplicate rows, the oldest (the first in key order), as legacy does.
func (w *Writer) lock(ctx context.Context, tx pgx.Tx, k dtetype.Key, p dtetype.Phase) (*row, error) {
	labels := w.t.PhaseLabels(p)
	if len(labels) == 0 {
		return nil, fmt.Errorf("%w: no label in legacy.phases maps to %s", ErrUnwritable, p)
	}
	c := w.t.Columns
	q := "SELECT to_jsonb(t), " + w.t.KeyExpr("t") + ", t.ctid::text FROM " + w.t.Ident() + " t WHERE " + Col("t", c.Cycle) + " = $1 AND " +
		Col("t", c.Report) + " = $2 AND " + Col("t", c.Phase) + "::text = ANY($3) ORDER BY " + w.t.KeyOrder("t") + " LIMIT 1 FOR UPDATE"
	var raw []byte
	r := &row{}
	err := tx.QueryRow(ctx, q, k.CycleID, k.ReportID, labels).Scan(&raw, &r.key, &r.ctid)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w for %s of report %s", ErrNoRow, p, k)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading %s of report %s: %w", p, k, err)
	}
	res := w.tr.Translate(&RawChange{Op: "S", Source: w.t.Name, RowKey: r.key, New: raw, Origin: dtetype.OriginLegacy})
	if res.Err != nil || res.Change == nil {
		return nil, fmt.Errorf("%w: row %s (%s of report %s) does not translate: %v", ErrUnwritable, r.key, p, k, res.Err)
	}
	r.change = res.Change
	return r, nil
}

// decide returns what op writes to r.
func (w *Writer) decide(ctx context.Context, tx pgx.Tx, op Op, r *row, now time.Time) (*set, error) {
	c := w.t.Columns
	var s set
	switch op.Action {
	case dtetype.ActionStart:
		if err := w.checkGate(ctx, tx, op.Key, op.Phase); err != nil {
			return nil, err
		}
		return w.start(r, op.Actor, now)
	case dtetype.ActionComplete:
		if err := w.state(&s, dtetype.StateCompleted); err != nil {
			return nil, err
		}
		s.put(c.ActualEnd, now)
		s.put(c.CompletedBy, text(op.Actor))
		if err := w.schedule(&s, r, dtetype.StateCompleted, now); err != nil {
			return nil, err
		}
	case dtetype.ActionOverride:
		if op.State == "" && op.Status == "" {
			return nil, fmt.Errorf("%w: an override needs a state, a status or both", ErrUnwritable)
		}
		if op.State != "" {
			l, err := w.t.StateLabel(op.State)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnwritable, err)
			}
			s.put(c.StateOverride, text(l))
		}
		if op.Status != "" {
			l, err := w.t.StatusLabel(op.Status)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrUnwritable, err)
			}
			s.put(c.StatusOverride, text(l))
		}
		s.put(c.OverrideReason, text(op.Reason))
		s.put(c.OverrideBy, text(op.Actor))
		s.put(c.OverrideAt, now)
	case dtetype.ActionClearOverride:
		for _, col := range []string{c.StateOverride, c.StatusOverride, c.OverrideReason, c.OverrideBy, c.OverrideAt} {
			s.put(col, nil)
		}
	case dtetype.ActionReopen:
		if err := w.baseState(&s, dtetype.StateInProgress); err != nil {
			return nil, err
		}
		s.put(c.ActualEnd, nil)
		s.put(c.CompletedBy, nil)
		if err := w.schedule(&s, r, dtetype.StateInProgress, now); err != nil {
			return nil, err
		}
	case dtetype.ActionRestore:
		v := op.Restore
		if v == nil {
			return nil, fmt.Errorf("%w: nothing to restore", ErrUnwritable)
		}
		if err := w.state(&s, v.State); err != nil {
			return nil, err
		}
		s.put(c.ActualStart, legacyTime(v.ActualStart))
		s.put(c.ActualEnd, legacyTime(v.ActualEnd))
		s.put(c.StartedBy, actor(v.StartedBy))
		s.put(c.CompletedBy, actor(v.CompletedBy))
		if err := w.schedule(&s, r, v.State, now); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown action %q", ErrUnwritable, op.Action)
	}
	s.put(c.UpdatedAt, now)
	return &s, nil
}

// legacyTime is a time as legacy stores it: the bounds the bridge carries
// (dtetype.MaxTime, MinTime) are infinity and -infinity there.
func legacyTime(t *time.Time) any {
	switch {
	case t == nil:
		return nil
	case !t.Before(dtetype.MaxTime):
		return pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
	case !t.After(dtetype.MinTime):
		return pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	}
	return *t
}

func actor(id string) any {
	if id == "" {
		return nil
	}
	return text(id)
}

// start is what starting r writes.
func (w *Writer) start(r *row, user string, now time.Time) (*set, error) {
	c := w.t.Columns
	var s set
	if err := w.state(&s, dtetype.StateInProgress); err != nil {
		return nil, err
	}
	s.put(c.ActualStart, now)
	s.put(c.StartedBy, text(user))
	if err := w.schedule(&s, r, dtetype.StateInProgress, now); err != nil {
		return nil, err
	}
	s.put(c.UpdatedAt, now)
	return &s, nil
}

// state sets the base state and, where there is one, the legacy status
// column to st.
func (w *Writer) state(s *set, st dtetype.State) error {
	if err := w.baseState(s, st); err != nil {
		return err
	}
	l, err := w.t.LegacyStatusLabel(st)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnwritable, err)
	}
	if l != "" {
		s.put(w.t.Columns.LegacyStatus, text(l))
	}
	return nil
}

func (w *Writer) baseState(s *set, st dtetype.State) error {
	l, err := w.t.StateLabel(st)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnwritable, err)
	}
	s.put(w.t.Columns.State, text(l))
	return nil
}

// schedule sets the schedule status legacy computes when it touches a row
// whose base state becomes st.
func (w *Writer) schedule(s *set, r *row, st dtetype.State, now time.Time) error {
	var end time.Time
	if r.change.PlannedEnd != nil {
		end = *r.change.PlannedEnd
	}
	l, err := w.t.StatusLabel(dtetype.LegacyScheduleStatus(now, st == dtetype.StateCompleted, end))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnwritable, err)
	}
	s.put(w.t.Columns.Status, text(l))
	return nil
}

// checkGate refuses to start phase p of report k unless every phase legacy
// requires for it is completed (the oldest row's effective state).
func (w *Writer) checkGate(ctx context.Context, tx pgx.Tx, k dtetype.Key, p dtetype.Phase) error {
	var unmet []string
	for _, need := range w.t.Write.Gates[p] {
		labels := w.t.PhaseLabels(need)
		c := w.t.Columns
		var raw []byte
		err := tx.QueryRow(ctx, "SELECT to_jsonb(t) FROM "+w.t.Ident()+" t WHERE "+Col("t", c.Cycle)+" = $1 AND "+Col("t", c.Report)+" = $2 AND "+
			Col("t", c.Phase)+"::text = ANY($3) ORDER BY "+w.t.KeyOrder("t")+" LIMIT 1", k.CycleID, k.ReportID, labels).Scan(&raw)
		state := dtetype.StateNotStarted
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return fmt.Errorf("error reading %s of report %s: %w", need, k, err)
		default:
			res := w.tr.Translate(&RawChange{Op: "S", New: raw, Origin: dtetype.OriginLegacy})
			if res.Change != nil {
				state = res.Change.State
			}
		}
		if state != dtetype.StateCompleted {
			unmet = append(unmet, fmt.Sprintf("%s is %s", need, state))
		}
	}
	if len(unmet) > 0 {
		return &GateError{Phase: p, Needs: unmet}
	}
	return nil
}

// write applies s to r and returns the row as written.
func (w *Writer) write(ctx context.Context, tx pgx.Tx, types map[string]ColumnType, r *row, s *set) (*Written, error) {
	var sb strings.Builder
	sb.WriteString("UPDATE " + w.t.Ident() + " t SET ")
	args := make([]any, 0, len(s.vals)+1)
	for i, col := range s.cols {
		typ, ok := types[col]
		if !ok {
			return nil, fmt.Errorf("%w: column %q is not in %s (check legacy.columns)", ErrUnwritable, col, w.t.Name)
		}
		if i > 0 {
			sb.WriteString(", ")
		}
		p := "$" + strconv.Itoa(i+1)
		if v, ok := s.vals[i].(text); ok {
			args = append(args, string(v))
			p += "::text::" + typ.Name
		} else {
			args = append(args, s.vals[i])
		}
		sb.WriteString(Col("", col) + " = " + p)
	}
	args = append(args, r.ctid)
	sb.WriteString(" WHERE t.ctid = $" + strconv.Itoa(len(args)) + "::tid RETURNING to_jsonb(t), " + w.t.KeyExpr("t"))
	var raw []byte
	out := &Written{}
	if err := tx.QueryRow(ctx, sb.String(), args...).Scan(&raw, &out.RowKey); err != nil {
		return nil, fmt.Errorf("error writing legacy row %s: %w", r.key, err)
	}
	now := w.now()
	res := w.tr.Translate(&RawChange{Op: "U", Source: w.t.Name, RowKey: out.RowKey, New: raw, Origin: dtetype.OriginBridge, TxTime: now, CapturedAt: now})
	if res.Err != nil || res.Change == nil {
		return nil, fmt.Errorf("%w: row %s as written does not translate: %v", ErrUnwritable, out.RowKey, res.Err)
	}
	out.Change = *res.Change
	return out, nil
}

// Row reads the row legacy works on for phase p of report k, in canonical
// terms.
func (w *Writer) Row(ctx context.Context, k dtetype.Key, p dtetype.Phase) (*dtetype.PhaseChange, error) {
	var out *dtetype.PhaseChange
	err := pgx.BeginFunc(ctx, w.db, func(tx pgx.Tx) error {
		r, err := w.lock(ctx, tx, k, p)
		if err == nil {
			out = r.change
		}
		return err
	})
	return out, err
}

// RowByKey reads the row whose key, as text, is key, in canonical terms;
// nil if there is none.
func (w *Writer) RowByKey(ctx context.Context, key string) (*dtetype.PhaseChange, error) {
	types, err := w.ColumnTypes(ctx)
	if err != nil {
		return nil, err
	}
	where := w.t.KeyExpr("t") + " = $1"
	if len(w.t.Key) == 1 {
		// One key column: compare in its own type, so its index serves.
		where = Col("t", w.t.Key[0]) + " = $1::text::" + types[w.t.Key[0]].Name
	}
	var raw []byte
	err = w.db.QueryRow(ctx, "SELECT to_jsonb(t) FROM "+w.t.Ident()+" t WHERE "+where+" LIMIT 1", key).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("error reading legacy row %s: %w", key, err)
	}
	now := w.now()
	res := w.tr.Translate(&RawChange{Op: "S", Source: w.t.Name, RowKey: key, New: raw, Origin: dtetype.OriginLegacy, TxTime: now, CapturedAt: now})
	if res.Change == nil {
		return nil, fmt.Errorf("%w: row %s does not translate: %v", ErrUnwritable, key, res.Err)
	}
	return res.Change, nil
}
