package cutover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

// KindAuthorityConflict is the divergence a legacy write to a phase and
// report on the new engine is recorded as.
const KindAuthorityConflict = "authority_conflict"

// Conflicts handles legacy writes to phases the new engine owns: each is
// recorded as an authority_conflict divergence and counted; under the
// revert policy the engine also rewrites its own state to the legacy row.
type Conflicts struct {
	Store  *Store
	Policy string
	// Client and WorkflowIDPrefix reach the shadow workflows, for revert.
	Client           client.Client
	WorkflowIDPrefix string
	// Counter counts conflicts by phase; nil: not counted.
	Counter *prometheus.CounterVec
	Logger  *slog.Logger
}

// Handle records and handles conflicts.
func (h *Conflicts) Handle(ctx context.Context, changes []dtetype.PhaseChange) error {
	for _, c := range changes {
		detail := fmt.Sprintf("legacy wrote %s (state %s) while the new engine owns it (change %s, by %s)", c.Phase, c.State, c.EventID, orDefault(c.StartedBy+c.CompletedBy, "?"))
		// A redelivered batch brings the same change again: it is recorded,
		// counted and reverted once (the detail names the change).
		var id int64
		err := h.Store.pool.QueryRow(ctx, `INSERT INTO `+h.Store.schema+`.divergences (cycle_id, report_id, phase, kind, legacy_value, shadow_value,
				detail, first_seen, last_seen, last_run)
			VALUES ($1, $2, $3, $4, $5, 'engine is authoritative', $6, now(), now(), 0)
			ON CONFLICT (cycle_id, report_id, phase, kind) WHERE resolved_at IS NULL
			DO UPDATE SET last_seen = now(), legacy_value = excluded.legacy_value, detail = excluded.detail
			WHERE divergences.detail IS DISTINCT FROM excluded.detail
			RETURNING divergence_id`,
			c.Key.CycleID, c.Key.ReportID, string(c.Phase), KindAuthorityConflict, string(c.State), detail).Scan(&id)
		fresh := !errors.Is(err, pgx.ErrNoRows)
		if err != nil && fresh {
			return fmt.Errorf("error recording an authority conflict: %w", err)
		}
		if fresh && h.Counter != nil {
			h.Counter.WithLabelValues(string(c.Phase)).Inc()
		}
		if fresh && h.Logger != nil {
			h.Logger.Warn("authority conflict", "key", c.Key.String(), "phase", c.Phase, "event_id", c.EventID, "policy", orDefault(h.Policy, PolicyAlert))
		}
		if h.Policy != PolicyRevert {
			continue
		}
		cmd := shadow.Command{ID: "revert-" + c.EventID, Action: shadow.ActionRestore, Phase: c.Phase, Actor: "dtebridge",
			Reason: "revert a legacy write to a phase the new engine owns"}
		handle, err := h.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: shadow.WorkflowID(h.WorkflowIDPrefix, c.Key),
			UpdateID: cmd.ID, UpdateName: shadow.UpdateCommand, Args: []any{cmd}, WaitForStage: client.WorkflowUpdateStageCompleted})
		if err == nil {
			err = handle.Get(ctx, nil)
		}
		// The update id makes a revert idempotent, so a redelivered batch
		// may try again. A revert that cannot be done (the row was deleted,
		// the phase rolled back) is logged, not retried: the conflict is
		// recorded and alerted on, and capture must not wait on it.
		var appErr *temporal.ApplicationError
		switch {
		case errors.As(err, &appErr):
			if h.Logger != nil {
				h.Logger.Warn("could not revert an authority conflict", "key", c.Key.String(), "phase", c.Phase, "event_id", c.EventID, "error", err)
			}
		case err != nil:
			return fmt.Errorf("error reverting %s %s (will retry): %w", c.Key, c.Phase, err)
		}
	}
	return nil
}
