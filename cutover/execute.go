package cutover

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
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
	// Timeout bounds how long a command may take: its deadline. Default:
	// 30s (config: cutover.command_timeout).
	Timeout time.Duration
	// Logger receives what the caller need not hear. Default: none.
	Logger *slog.Logger
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

// ErrNoWorkflow means the report has no shadow workflow: the bridge has
// never seen it in legacy.
var ErrNoWorkflow = errors.New("no such report")

// InputError is a command whose input is malformed; nothing was sent.
type InputError struct{ Problem string }

func (e *InputError) Error() string { return e.Problem }

// Limits on command input, checked before anything is sent.
const (
	maxIDBytes     = 128
	maxActorBytes  = 256
	maxReasonBytes = 4096
)

// checkInput refuses what no database or workflow should see: text that
// is not UTF-8 or holds a NUL byte, overlong fields, values that are not
// canonical.
func checkInput(k dtetype.Key, cmd shadow.Command) error {
	if k.CycleID <= 0 || k.ReportID <= 0 {
		return fmt.Errorf("%w: cycle and report ids are positive, not %d and %d", ErrNoWorkflow, k.CycleID, k.ReportID)
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{{"id", cmd.ID, maxIDBytes}, {"actor", cmd.Actor, maxActorBytes}, {"role", cmd.Role, maxActorBytes}, {"reason", cmd.Reason, maxReasonBytes}} {
		switch {
		case !utf8.ValidString(f.value):
			return &InputError{fmt.Sprintf("%s is not valid UTF-8", f.name)}
		case strings.ContainsRune(f.value, 0):
			return &InputError{fmt.Sprintf("%s holds a NUL byte, which legacy cannot store", f.name)}
		case len(f.value) > f.max:
			return &InputError{fmt.Sprintf("%s is %d bytes long; at most %d", f.name, len(f.value), f.max)}
		}
	}
	if cmd.State != "" && !cmd.State.Valid() {
		return &InputError{fmt.Sprintf("state %q is not one of %v", cmd.State, dtetype.States())}
	}
	if cmd.Status != "" && !cmd.Status.Valid() {
		return &InputError{fmt.Sprintf("status %q is not one of %v", cmd.Status, dtetype.Statuses())}
	}
	return nil
}

// Execute checks the command's input, that the new engine owns cmd's phase
// for report k and who the actor is, then sends the command as a Temporal
// Update with a deadline (Timeout from now, unless ctx ends sooner): its
// validator applies the definition, and its handler writes the result back
// to legacy. Past the deadline the command is refused and never written.
// Refusals are recorded in the command audit.
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
	if err := checkInput(k, cmd); err != nil {
		outcome = "rejected"
		return nil, err
	}
	deadline := time.Now().Add(cmp.Or(x.Timeout, 30*time.Second))
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if cmd.Deadline == nil || cmd.Deadline.After(deadline) {
		cmd.Deadline = &deadline
	}
	ctx, cancel := context.WithDeadline(ctx, cmd.Deadline.Add(5*time.Second)) // room to hear the refusal
	defer cancel()
	res, err := x.execute(ctx, k, &cmd)
	var rej *RejectedError
	switch {
	case err == nil:
		outcome = "accepted"
	case errors.As(err, &rej):
		outcome = "rejected"
		x.refused(k, cmd, rej.Rule, rej.Message)
	case errors.Is(err, ErrNotOnNew):
		outcome = "rejected"
		x.refused(k, cmd, "not_on_new", err.Error())
	case errors.Is(err, ErrNoWorkflow):
		outcome = "rejected"
	}
	return res, err
}

// refused records a refusal; a failure to record it is not the caller's
// problem, so it is only logged.
func (x *Executor) refused(k dtetype.Key, cmd shadow.Command, rule, message string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := x.Store.st.RecordRefusal(ctx, store.Command{ID: cmd.ID, Key: k, Phase: cmd.Phase, Action: cmd.Action, Actor: cmd.Actor,
		Role: cmd.Role, Reason: cmd.Reason}, rule, message)
	if err != nil && x.Logger != nil {
		x.Logger.Warn("could not record a refused command", "command", cmd.ID, "error", err)
	}
}

func (x *Executor) execute(ctx context.Context, k dtetype.Key, cmd *shadow.Command) (*shadow.CommandResult, error) {
	if err := owned(ctx, x.Store.st, k, cmd.Phase); err != nil {
		return nil, err
	}
	if err := x.resolveActor(ctx, cmd); err != nil {
		return nil, err
	}
	id := shadow.WorkflowID(x.WorkflowIDPrefix, k)
	h, err := x.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{WorkflowID: id,
		UpdateID: cmd.ID, UpdateName: shadow.UpdateCommand, Args: []any{*cmd}, WaitForStage: client.WorkflowUpdateStageCompleted})
	var res shadow.CommandResult
	if err == nil {
		err = h.Get(ctx, &res)
	}
	var appErr *temporal.ApplicationError
	var actErr *temporal.ActivityError
	var notFound *serviceerror.NotFound
	typ := ""
	if errors.As(err, &appErr) {
		typ = appErr.Type()
	}
	switch {
	case err == nil:
		return &res, nil
	case errors.As(err, &notFound):
		return nil, fmt.Errorf("%w: report %s has no shadow workflow (the bridge has not seen it in legacy)", ErrNoWorkflow, k)
	case typ == "not_on_new":
		// Ownership changed between the check above and the write: the
		// write-back checked again inside its transaction and wrote nothing.
		return nil, fmt.Errorf("%w: %s", ErrNotOnNew, appErr.Message())
	case typ == "legacy_refused", typ == "bad_command", typ == shadow.RuleDeadlineExceeded:
		// Refused inside the write-back's transaction: nothing committed.
		return nil, &RejectedError{Rule: typ, Message: appErr.Message()}
	case errors.As(err, &actErr):
		// The write-back failed after its retries: not a refusal.
		return nil, fmt.Errorf("error writing %s of %s back to legacy: %w", cmd.Action, id, err)
	case typ != "":
		// The definition refused it (validator, or the handler's re-check).
		return nil, &RejectedError{Rule: typ, Message: appErr.Message()}
	case ctx.Err() != nil:
		return nil, &RejectedError{Rule: shadow.RuleDeadlineExceeded, Message: fmt.Sprintf("no answer from %s before the command's deadline", id)}
	}
	return nil, fmt.Errorf("error sending %s to %s: %w", cmd.Action, id, err)
}
