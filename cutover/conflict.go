package cutover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
)

// Conflicts handles legacy writes to phases the new engine owns: each is
// recorded as an authority_conflict divergence and counted; under the
// revert policy the engine also rewrites its own state to the legacy row,
// for the whole legacy transaction's effect on the report or not at all.
type Conflicts struct {
	Store  *Store
	Policy string
	// Authority says which phases the new engine owns, and Legacy maps the
	// legacy table: under revert, a transaction that also changed phases
	// legacy owns is not reverted (both required for revert).
	Authority *Authority
	Legacy    *legacy.Table
	legacyMu  sync.RWMutex
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
	// Under revert, each legacy transaction's effect on a report is undone
	// whole or not at all: blocked says why a transaction cannot be.
	type txKey struct {
		tx string
		k  dtetype.Key
	}
	blocked := map[txKey]string{}
	if h.Policy == PolicyRevert {
		for _, c := range changes {
			tk := txKey{c.TxID, c.Key}
			if _, seen := blocked[tk]; seen || c.TxID == "" {
				continue
			}
			why, err := h.partial(ctx, c)
			if err != nil {
				return err
			}
			blocked[tk] = why
		}
	}
	for _, c := range changes {
		detail := conflictDetail(c)
		why := blocked[txKey{c.TxID, c.Key}]
		if why != "" {
			detail += "; not reverted: " + why
		}
		// A redelivered batch brings the same change again: it is recorded,
		// counted and reverted once (the detail names the change).
		fresh, err := h.Store.st.RecordConflict(ctx, c.Key, c.Phase, string(c.State), detail)
		if err != nil {
			return err
		}
		if fresh && h.Counter != nil {
			h.Counter.WithLabelValues(string(c.Phase)).Inc()
		}
		if fresh && h.Logger != nil {
			h.Logger.Warn("authority conflict", "key", c.Key.String(), "phase", c.Phase, "event_id", c.EventID, "policy", h.Policy)
		}
		if h.Policy != PolicyRevert || why != "" {
			if why != "" && fresh && h.Logger != nil {
				h.Logger.Warn("authority conflict not reverted", "key", c.Key.String(), "phase", c.Phase, "event_id", c.EventID, "why", why)
			}
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
		default:
			// Reverted: the engine's state stands in legacy again.
			if err := h.Store.st.ResolveConflict(ctx, c.Key, c.Phase, "reverted by the new engine (change "+c.EventID+")"); err != nil {
				return err
			}
		}
	}
	return nil
}

// partial says why reverting legacy transaction c.TxID's changes to c's
// report would undo only part of it: the transaction also changed phases
// the new engine does not own, which the bridge must not write, so undoing
// the rest would leave a state legacy's own rules forbid (Planning
// completed, Scoping started: reverting Planning alone leaves Scoping in
// progress after an unfinished Planning). "" when every phase it changed
// is the engine's.
func (h *Conflicts) partial(ctx context.Context, c dtetype.PhaseChange) (string, error) {
	h.legacyMu.RLock()
	t := h.Legacy
	h.legacyMu.RUnlock()
	if t == nil || h.Authority == nil {
		return "", nil
	}
	col := t.Columns
	labels, err := h.Store.st.TxPhaseLabels(ctx, c.TxID, c.Key, col.Cycle, col.Report, col.Phase)
	if err != nil {
		return "", err
	}
	var legacyOwned []string
	for _, l := range labels {
		if slices.Contains(t.IgnorePhases, l) {
			continue
		}
		p, ok := t.Phases.Get(l)
		switch {
		case !ok:
			legacyOwned = append(legacyOwned, fmt.Sprintf("%q (a label no mapping knows)", l))
		case !h.Authority.OnNew(c.Key, p):
			legacyOwned = append(legacyOwned, string(p))
		}
	}
	if len(legacyOwned) == 0 {
		return "", nil
	}
	slices.Sort(legacyOwned)
	return fmt.Sprintf("legacy transaction %s also changed %s, which legacy still owns; reverting only the new engine's phases would leave a state legacy's own rules forbid",
		c.TxID, strings.Join(slices.Compact(legacyOwned), ", ")), nil
}

// SetLegacy makes later conflicts map labels with t: a reloaded mapping.
func (h *Conflicts) SetLegacy(t *legacy.Table) {
	h.legacyMu.Lock()
	defer h.legacyMu.Unlock()
	h.Legacy = t
}
