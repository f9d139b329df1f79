package cutover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// WriteBack is the activity that writes accepted engine commands back to
// the legacy rows, in one legacy transaction each, exactly as the legacy
// application writes them (through the legacy writer, driven by the
// configured mapping), marked with the bridge's origin so capture does not
// take them for legacy changes, and claimed in the command audit so a
// retried command is applied once.
type WriteBack struct {
	// Writer writes the legacy rows; SetWriter swaps it (a reload).
	Writer *legacy.Writer
	// Store is the bridge schema: ownership and the command audit.
	Store *store.Store

	mu sync.RWMutex
}

// SetWriter makes later write-backs write with x: a reloaded mapping.
func (w *WriteBack) SetWriter(x *legacy.Writer) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.Writer = x
}

func (w *WriteBack) writer() *legacy.Writer {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.Writer
}

// owned returns ErrNotOnNew unless the new engine owns phase of report k,
// as the cutover tables read through st say.
func owned(ctx context.Context, st *store.Store, k dtetype.Key, phase dtetype.Phase) error {
	m, promoted, err := st.Owner(ctx, k, phase)
	if err != nil {
		return err
	}
	if !m.Covers(k, promoted) {
		return fmt.Errorf("%w: %s is in %s mode (%d%%) and report %s is not covered; legacy is authoritative", ErrNotOnNew, phase, m.Mode, m.Percent, k)
	}
	return nil
}

// WriteBack applies req and returns the legacy rows it wrote, translated.
// A retry of a command that committed returns those rows again.
func (w *WriteBack) WriteBack(ctx context.Context, req shadow.WriteBackRequest) ([]dtetype.PhaseChange, error) {
	cmd := req.Command
	if cmd.Deadline != nil && time.Now().After(*cmd.Deadline) {
		// A retry (after a missing grant was added, say) must not apply a
		// command whose caller gave up long ago.
		return nil, w.pastDeadline(ctx, req)
	}
	op := legacy.Op{Action: cmd.Action, Key: req.Key, Phase: cmd.Phase, Actor: cmd.Actor, Reason: cmd.Reason, State: cmd.State, Status: cmd.Status}
	if cmd.Action == dtetype.ActionRestore {
		v := req.View
		if v == nil {
			return nil, temporal.NewNonRetryableApplicationError("nothing to restore: the engine has no state for the phase", "bad_command", nil)
		}
		op.Restore = &legacy.Restore{State: v.BaseState, ActualStart: v.ActualStart, ActualEnd: v.ActualEnd, StartedBy: v.StartedBy, CompletedBy: v.CompletedBy}
	}
	written, err := w.writer().Apply(ctx, op, legacy.Hooks{
		Prepare: func(ctx context.Context, tx pgx.Tx) error {
			// Both capture modes see the mark: the trigger the setting,
			// the decoder the row.
			if err := w.Store.On(tx).MarkBridgeWrite(ctx); err != nil {
				return err
			}
			if cmd.Deadline != nil {
				// A write blocked (on a row lock, say) past the deadline is
				// cancelled by the server rather than applied late.
				ms := max(1, time.Until(*cmd.Deadline).Milliseconds())
				if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = "+strconv.FormatInt(ms, 10)); err != nil {
					return err
				}
			}
			// Authority is checked again here, in the write's transaction:
			// after a rollback, a retried command writes nothing.
			st := w.Store.On(tx)
			if err := owned(ctx, st, req.Key, cmd.Phase); err != nil {
				return err
			}
			return st.ClaimCommand(ctx, store.Command{ID: cmd.ID, Key: req.Key, Phase: cmd.Phase, Action: cmd.Action,
				Actor: cmd.Actor, Role: cmd.Role, Reason: cmd.Reason})
		},
		// What the command wrote is recorded in the same transaction, so a
		// retry after a commit always finds it.
		Finish: func(ctx context.Context, tx pgx.Tx, rows []legacy.Written) error {
			if cmd.Deadline != nil && time.Now().After(*cmd.Deadline) {
				return errPastDeadline // the transaction rolls back: nothing is written
			}
			keys := make([]string, len(rows))
			for i, r := range rows {
				keys[i] = r.RowKey
			}
			return w.Store.On(tx).SetCommandRows(ctx, cmd.ID, keys)
		},
	})
	var gate *legacy.GateError
	var pgErr *pgconn.PgError
	if errors.Is(err, errPastDeadline) || (errors.As(err, &pgErr) && pgErr.Code == "57014" && cmd.Deadline != nil && time.Now().After(*cmd.Deadline)) {
		return nil, w.pastDeadline(ctx, req)
	}
	switch {
	case errors.Is(err, store.ErrCommandApplied):
		return w.again(ctx, req)
	case errors.Is(err, store.ErrCommandIDReused):
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("command id %s was already used for another report, phase or action", cmd.ID), "bad_command", nil)
	case errors.Is(err, ErrNotOnNew):
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "not_on_new", nil)
	case errors.As(err, &gate), errors.Is(err, legacy.ErrNoRow), errors.Is(err, legacy.ErrUnwritable), permanent(err):
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "legacy_refused", nil)
	case err != nil:
		return nil, err
	}
	out := make([]dtetype.PhaseChange, len(written))
	for i, r := range written {
		out[i] = r.Change
		out[i].EventID = "w" + cmd.ID + ":" + r.RowKey
	}
	return out, nil
}

// again returns what an already applied command wrote, as the rows stand.
func (w *WriteBack) again(ctx context.Context, req shadow.WriteBackRequest) ([]dtetype.PhaseChange, error) {
	keys, err := w.Store.CommandRows(ctx, req.Command.ID)
	if err != nil {
		return nil, err
	}
	out := make([]dtetype.PhaseChange, 0, len(keys))
	for _, k := range keys {
		c, err := w.writer().RowByKey(ctx, k)
		if err != nil {
			return nil, err
		}
		if c == nil {
			continue // deleted since
		}
		c.EventID = "w" + req.Command.ID + ":" + k
		c.Origin = dtetype.OriginBridge
		out = append(out, *c)
	}
	return out, nil
}

// errPastDeadline aborts a write-back whose command's deadline passed.
var errPastDeadline = errors.New("past the command's deadline")

// pastDeadline is the refusal of a command whose deadline passed before it
// could be written; the executor that sent it records it.
func (w *WriteBack) pastDeadline(_ context.Context, req shadow.WriteBackRequest) error {
	msg := fmt.Sprintf("the command's deadline %s passed before it could be written: it is not applied", req.Command.Deadline.UTC().Format(time.RFC3339))
	return temporal.NewNonRetryableApplicationError(msg, shadow.RuleDeadlineExceeded, nil)
}

// permanent reports whether a database error is one no retry can fix: bad
// data (class 22, such as 22P02 invalid text or 22021 a NUL byte), a
// violated constraint (23), or a missing privilege or object (42, such as
// 42501). Those fail the command at once instead of after ten retries.
func permanent(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code[:2] {
	case "22", "23", "42":
		return true
	}
	return false
}
