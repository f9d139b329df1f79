package cutover

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
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
	// Writer writes the legacy rows.
	Writer *legacy.Writer
	// Store is the bridge schema: ownership and the command audit.
	Store *store.Store
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
	op := legacy.Op{Action: cmd.Action, Key: req.Key, Phase: cmd.Phase, Actor: cmd.Actor, Reason: cmd.Reason, State: cmd.State, Status: cmd.Status}
	if cmd.Action == dtetype.ActionRestore {
		v := req.View
		if v == nil {
			return nil, temporal.NewNonRetryableApplicationError("nothing to restore: the engine has no state for the phase", "bad_command", nil)
		}
		op.Restore = &legacy.Restore{State: v.BaseState, ActualStart: v.ActualStart, ActualEnd: v.ActualEnd, StartedBy: v.StartedBy, CompletedBy: v.CompletedBy}
	}
	written, err := w.Writer.Apply(ctx, op, legacy.Hooks{
		Prepare: func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL dtebridge.origin = '"+dtetype.OriginBridge+"'"); err != nil {
				return err
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
			keys := make([]string, len(rows))
			for i, r := range rows {
				keys[i] = r.RowKey
			}
			return w.Store.On(tx).SetCommandRows(ctx, cmd.ID, keys)
		},
	})
	var gate *legacy.GateError
	switch {
	case errors.Is(err, store.ErrCommandApplied):
		return w.again(ctx, req)
	case errors.Is(err, store.ErrCommandIDReused):
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("command id %s was already used for another report, phase or action", cmd.ID), "bad_command", nil)
	case errors.Is(err, ErrNotOnNew):
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "not_on_new", nil)
	case errors.As(err, &gate), errors.Is(err, legacy.ErrNoRow), errors.Is(err, legacy.ErrUnwritable):
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
		c, err := w.Writer.RowByKey(ctx, k)
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
