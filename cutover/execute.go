package cutover

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
)

// ErrNotOnNew means the phase is not on the new engine for the report, so
// legacy remains authoritative and takes no engine commands.
var ErrNotOnNew = errors.New("the new engine does not own this phase for this report")

// RejectedError is a command the definition refuses; nothing was written.
type RejectedError struct {
	// Rule is the rule that failed, e.g. role_not_allowed.
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

func (e *RejectedError) Error() string { return "rejected (" + e.Rule + "): " + e.Message }

// Executor sends engine commands for phases on the new engine.
type Executor struct {
	Client           client.Client
	Store            *Store
	WorkflowIDPrefix string
	// Definition is the active definition, for role names and aliases.
	Definition *dtetype.Definition
	// Users, if set, says who an actor is and what role they hold: a
	// command's actor must be a legacy user, and acts in the role the users
	// table gives. Without it, the command states the role.
	Users *legacy.Users
	// Commands counts commands by phase and outcome (accepted, rejected,
	// failed); nil: not counted.
	Commands *prometheus.CounterVec
}

// resolveActor checks who is acting and settles the command's role: the
// users table's, where one is configured (a stated role must agree with
// it), else the stated one, which is then required.
func (x *Executor) resolveActor(ctx context.Context, cmd *shadow.Command) error {
	if strings.TrimSpace(cmd.Actor) == "" || strings.TrimSpace(cmd.Reason) == "" {
		return &RejectedError{Rule: "missing_actor_or_reason", Message: "a command needs an actor and a reason"}
	}
	if x.Users == nil {
		if strings.TrimSpace(cmd.Role) == "" {
			return &RejectedError{Rule: "missing_role", Message: "no users table is configured (legacy.users), so a command must state the role its actor acts in"}
		}
		return nil
	}
	role, err := x.Users.Resolve(ctx, cmd.Actor)
	if errors.Is(err, legacy.ErrUnknownActor) {
		return &RejectedError{Rule: "unknown_actor", Message: err.Error()}
	}
	if err != nil {
		return err
	}
	if cmd.Role != "" && !sameRole(x.Definition, cmd.Role, role) {
		return &RejectedError{Rule: "role_mismatch", Message: fmt.Sprintf("user %s holds role %q in the users table, not %q", cmd.Actor, role, cmd.Role)}
	}
	cmd.Role = role
	return nil
}

// sameRole reports whether two role names are the same role, aliases
// resolved by the definition.
func sameRole(d *dtetype.Definition, a, b string) bool {
	if strings.EqualFold(strings.TrimSpace(a), strings.TrimSpace(b)) {
		return true
	}
	if d == nil {
		return false
	}
	ca, oka := d.CanonicalRole(a)
	cb, okb := d.CanonicalRole(b)
	return oka && okb && ca == cb
}

// NewCommandID returns a random command id.
func NewCommandID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "cmd-" + hex.EncodeToString(b)
}

// Execute checks that the new engine owns cmd's phase for report k, then
// sends the command as a Temporal Update: its validator applies the
// definition, and its handler writes the result back to legacy.
func (x *Executor) Execute(ctx context.Context, k dtetype.Key, cmd shadow.Command) (*shadow.CommandResult, error) {
	if cmd.ID == "" {
		cmd.ID = NewCommandID()
	}
	outcome := "failed"
	defer func() {
		if x.Commands != nil {
			x.Commands.WithLabelValues(string(cmd.Phase), outcome).Inc()
		}
	}()
	if err := owned(ctx, x.Store.st, k, cmd.Phase); err != nil {
		if errors.Is(err, ErrNotOnNew) {
			outcome = "rejected"
		}
		return nil, err
	}
	if err := x.resolveActor(ctx, &cmd); err != nil {
		var rej *RejectedError
		if errors.As(err, &rej) {
			outcome = "rejected"
		}
		return nil, err
	}
	h, err := x.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: shadow.WorkflowID(x.WorkflowIDPrefix, k),
		UpdateID: cmd.ID, UpdateName: shadow.UpdateCommand, Args: []any{cmd}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var res shadow.CommandResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	var appErr *temporal.ApplicationError
	var actErr *temporal.ActivityError
	typ := ""
	if errors.As(err, &appErr) {
		typ = appErr.Type()
	}
	switch {
	case err == nil:
	case typ == "not_on_new":
		// Ownership changed between the check above and the write: the
		// write-back checked again inside its transaction and wrote nothing.
		outcome = "rejected"
		return nil, fmt.Errorf("%w: %s", ErrNotOnNew, appErr.Message())
	case typ == "legacy_refused", typ == "bad_command":
		// Refused inside the write-back's transaction: nothing committed.
		outcome = "rejected"
		return nil, &RejectedError{Rule: typ, Message: appErr.Message()}
	case errors.As(err, &actErr):
		// The write-back failed after its retries: not a refusal.
		return nil, fmt.Errorf("error writing %s of %s back to legacy: %w", cmd.Action, shadow.WorkflowID(x.WorkflowIDPrefix, k), err)
	case typ != "":
		// The definition refused it (validator, or the handler's re-check).
		outcome = "rejected"
		return nil, &RejectedError{Rule: typ, Message: appErr.Message()}
	default:
		return nil, fmt.Errorf("error sending %s to %s: %w", cmd.Action, shadow.WorkflowID(x.WorkflowIDPrefix, k), err)
	}
	outcome = "accepted"
	return &res, nil
}
