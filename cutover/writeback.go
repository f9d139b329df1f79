package cutover

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
)

// WriteBack is the activity that writes accepted engine commands back to
// the legacy rows, in one legacy transaction each, exactly as the legacy
// application writes them (through the legacy model), marked with the
// bridge's origin so capture does not take them for legacy changes.
type WriteBack struct {
	Pool *pgxpool.Pool
	// Profile is the legacy application's write behaviour and labels.
	Profile *legacy.Profile
	// Mapping is the configured label mapping, to find a phase's row.
	Mapping adapter.Mapping
	// Translator turns the written rows back into phase changes.
	Translator *adapter.Translator
	// Capture locates the legacy table and the bridge schema.
	Capture *adapter.CaptureConfig
}

var (
	errAlreadyApplied = errors.New("command already applied")
	errIDReused       = errors.New("command id reused")
)

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// owned returns ErrNotOnNew unless the new engine owns phase of report k,
// as the cutover tables say, read through q (the write-back reads them in
// its own transaction).
func owned(ctx context.Context, q querier, schema string, k dtetype.Key, phase dtetype.Phase) error {
	m := Mode{Phase: phase, Mode: ModeShadow}
	var promoted bool
	err := q.QueryRow(ctx, `SELECT coalesce((SELECT mode FROM `+schema+`.cutover_modes WHERE phase = $1), 'shadow'),
			coalesce((SELECT percent FROM `+schema+`.cutover_modes WHERE phase = $1), 0),
			EXISTS (SELECT 1 FROM `+schema+`.cutover_promoted WHERE phase = $1 AND cycle_id = $2 AND report_id = $3)`,
		string(phase), k.CycleID, k.ReportID).Scan(&m.Mode, &m.Percent, &promoted)
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
	schema := pgx.Identifier{orDefault(w.Capture.Schema, "dtebridge")}.Sanitize()
	label := w.label(cmd.Phase)
	if label == "" {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("no legacy phase maps to %s", cmd.Phase), "bad_command", nil)
	}
	user, err := strconv.ParseInt(strings.TrimSpace(cmd.Actor), 10, 64)
	if err != nil && cmd.Action != shadow.ActionRestore {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("actor %q is not a legacy user id", cmd.Actor), "bad_command", nil)
	}
	var written []int64
	m := legacy.NewModel(w.Pool, w.Profile, &legacy.ModelConfig{
		Prepare: func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL dtebridge.origin = '"+dtetype.OriginBridge+"'"); err != nil {
				return err
			}
			// Authority is checked again here, in the write's transaction:
			// after a rollback, a retried command writes nothing.
			if err := owned(ctx, tx, schema, req.Key, cmd.Phase); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `INSERT INTO `+schema+`.commands (command_id, cycle_id, report_id, phase, action, actor)
				VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (command_id) DO NOTHING`,
				cmd.ID, req.Key.CycleID, req.Key.ReportID, string(cmd.Phase), cmd.Action, cmd.Actor)
			if err != nil {
				return err
			}
			if tag.RowsAffected() > 0 {
				return nil
			}
			var same bool
			if err := tx.QueryRow(ctx, `SELECT cycle_id = $2 AND report_id = $3 AND phase = $4 AND action = $5 FROM `+schema+`.commands
				WHERE command_id = $1`, cmd.ID, req.Key.CycleID, req.Key.ReportID, string(cmd.Phase), cmd.Action).Scan(&same); err != nil {
				return err
			}
			if !same {
				return errIDReused
			}
			return errAlreadyApplied
		},
		// What the command wrote is recorded in the same transaction, so a
		// retry after a commit always finds it.
		Finish: func(ctx context.Context, tx pgx.Tx, rows []legacy.Row) error {
			ids := make([]int64, 0, len(rows))
			for _, r := range rows {
				ids = append(ids, r.PhaseID)
			}
			_, err := tx.Exec(ctx, `UPDATE `+schema+`.commands SET row_ids = $2 WHERE command_id = $1`, cmd.ID, ids)
			return err
		},
	})
	ref := legacy.Ref{Key: req.Key, Phase: label}
	var rows []legacy.Row
	switch cmd.Action {
	case shadow.ActionStart:
		rows, err = m.Start(ctx, ref, user, legacy.StartOptions{})
	case shadow.ActionComplete:
		rows, err = m.Complete(ctx, ref, user, legacy.CompleteOptions{})
	case shadow.ActionOverride:
		o := legacy.OverrideOptions{Reason: cmd.Reason}
		if cmd.State != "" {
			o.State = &cmd.State
		}
		if cmd.Status != "" {
			o.Status = &cmd.Status
		}
		rows, err = m.Override(ctx, ref, user, o)
	case shadow.ActionClearOverride:
		rows, err = m.ClearOverride(ctx, ref)
	case shadow.ActionReopen:
		rows, err = m.Reopen(ctx, ref, legacy.ReopenState)
	case shadow.ActionRestore:
		rows, err = w.restore(ctx, m, ref, req, schema)
	default:
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown action %q", cmd.Action), "bad_command", nil)
	}
	switch {
	case errors.Is(err, errAlreadyApplied):
		if err := w.Pool.QueryRow(ctx, `SELECT row_ids FROM `+schema+`.commands WHERE command_id = $1`, cmd.ID).Scan(&written); err != nil {
			return nil, err
		}
	case errors.Is(err, errIDReused):
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("command id %s was already used for another report, phase or action", cmd.ID), "bad_command", nil)
	case errors.Is(err, ErrNotOnNew):
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "not_on_new", nil)
	case errors.Is(err, legacy.ErrGate), errors.Is(err, legacy.ErrNoRow), errors.Is(err, legacy.ErrUnsupported):
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), "legacy_refused", err)
	case err != nil:
		return nil, err
	default:
		for _, r := range rows {
			written = append(written, r.PhaseID)
		}
	}
	return w.read(ctx, cmd.ID, written)
}

// label returns the legacy label the application writes for phase p.
func (w *WriteBack) label(p dtetype.Phase) string {
	for _, ph := range w.Profile.Chain {
		if w.Mapping.Phases[ph.Label] == p {
			return ph.Label
		}
	}
	return ""
}

// restore rewrites the engine's view of the phase to the legacy row.
func (w *WriteBack) restore(ctx context.Context, m *legacy.Model, ref legacy.Ref, req shadow.WriteBackRequest, schema string) ([]legacy.Row, error) {
	v := req.View
	if v == nil {
		return nil, temporal.NewNonRetryableApplicationError("nothing to restore: the engine has no state for the phase", "bad_command", nil)
	}
	return m.Restore(ctx, ref, legacy.RestoreValues{State: v.BaseState, ActualStart: v.ActualStart, ActualEnd: v.ActualEnd,
		StartedBy: v.StartedBy, CompletedBy: v.CompletedBy})
}

// read returns the written rows as phase changes of the bridge's origin.
func (w *WriteBack) read(ctx context.Context, commandID string, ids []int64) ([]dtetype.PhaseChange, error) {
	key := w.Capture.Key
	if len(key) == 0 {
		key = []string{"phase_id"}
	}
	table := pgx.Identifier(strings.Split(orDefault(w.Capture.Table, "public.workflow_phases"), ".")).Sanitize()
	rows, err := w.Pool.Query(ctx, `SELECT to_jsonb(t), t.`+pgx.Identifier{key[0]}.Sanitize()+`::text FROM `+table+` t
		WHERE t.`+pgx.Identifier{key[0]}.Sanitize()+` = ANY($1) ORDER BY 2`, ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []dtetype.PhaseChange
	now := time.Now()
	for rows.Next() {
		var row []byte
		var id string
		if err := rows.Scan(&row, &id); err != nil {
			return nil, err
		}
		res := w.Translator.Translate(&adapter.RawChange{Op: "U", Source: w.Capture.Table, New: row, Origin: dtetype.OriginBridge, TxTime: now, CapturedAt: now})
		if res.Err != nil || res.Change == nil {
			continue
		}
		c := *res.Change
		c.EventID = "w" + commandID + ":" + id
		out = append(out, c)
	}
	return out, rows.Err()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
