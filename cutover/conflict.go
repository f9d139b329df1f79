package cutover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

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

// conflictDetail says what legacy wrote and who the row names.
func conflictDetail(c dtetype.PhaseChange) string {
	var who []string
	if c.StartedBy != "" {
		who = append(who, "started_by "+c.StartedBy)
	}
	if c.CompletedBy != "" {
		who = append(who, "completed_by "+c.CompletedBy)
	}
	if c.Override != nil && c.Override.By != "" {
		who = append(who, "override_by "+c.Override.By)
	}
	actors := "no actor recorded"
	if len(who) > 0 {
		actors = strings.Join(who, ", ")
	}
	return fmt.Sprintf("legacy wrote %s (state %s; %s) while the new engine owns it (change %s)", c.Phase, c.State, actors, c.EventID)
}

// Handle records and handles conflicts.
func (h *Conflicts) Handle(ctx context.Context, changes []dtetype.PhaseChange) error {
	for _, c := range changes {
		// A redelivered batch brings the same change again: it is recorded,
		// counted and reverted once (the detail names the change).
		fresh, err := h.Store.st.RecordConflict(ctx, c.Key, c.Phase, string(c.State), conflictDetail(c))
		if err != nil {
			return err
		}
		if fresh && h.Counter != nil {
			h.Counter.WithLabelValues(string(c.Phase)).Inc()
		}
		if fresh && h.Logger != nil {
			h.Logger.Warn("authority conflict", "key", c.Key.String(), "phase", c.Phase, "event_id", c.EventID, "policy", h.Policy)
		}
		if h.Policy != PolicyRevert {
			continue
		}
		cmd := shadow.Command{ID: "revert-" + c.EventID, Action: dtetype.ActionRestore, Phase: c.Phase, Actor: "dtebridge",
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
