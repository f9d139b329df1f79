package shadow

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/synapsedte/dtebridge/dtetype"
)

// UpdateCommand is the Temporal Update that carries an engine command for
// a phase on the new engine.
const UpdateCommand = "command"

// WriteBackActivity is the registered name of the activity that writes an
// accepted command back to the legacy row (package cutover implements it).
const WriteBackActivity = "WriteBack"

// Command is an instruction to the engine for one phase of one report.
type Command struct {
	// ID makes the command idempotent; it is also the Update id.
	ID     string        `json:"id"`
	Action string        `json:"action"`
	Phase  dtetype.Phase `json:"phase"`
	// Actor is the legacy user id acting; Role the role they act in.
	Actor  string `json:"actor"`
	Role   string `json:"role"`
	Reason string `json:"reason"`
	// State and Status are an override's values.
	State  dtetype.State  `json:"state,omitempty"`
	Status dtetype.Status `json:"status,omitempty"`
	// Deadline, if set, is when the caller stops waiting: past it the
	// command is refused and never written.
	Deadline *time.Time `json:"deadline,omitempty"`
}

// RuleDeadlineExceeded refuses a command whose caller has stopped waiting.
const RuleDeadlineExceeded = "deadline_exceeded"

// CommandResult is what an accepted command did.
type CommandResult struct {
	Phase  dtetype.Phase  `json:"phase"`
	State  dtetype.State  `json:"state"`
	Status dtetype.Status `json:"status"`
	// Rows are the legacy rows written back.
	Rows int `json:"rows"`
}

// WriteBackRequest asks the write-back activity to apply cmd to key's
// legacy row as the legacy application would.
type WriteBackRequest struct {
	Key     dtetype.Key `json:"key"`
	Command Command     `json:"command"`
	// View is the engine's state of the phase, for a restore.
	View *PhaseState `json:"view,omitempty"`
	At   time.Time   `json:"at"`
}

// rejected is a validator's refusal, typed by the rule that failed.
func rejected(rule, format string, args ...any) error {
	return temporal.NewApplicationError(fmt.Sprintf(format, args...), rule)
}

// validate applies the definition to cmd without changing anything: roles,
// dependencies and valid transitions.
func (e *engine) validate(cmd Command, now time.Time) error {
	if cmd.Deadline != nil && now.After(*cmd.Deadline) {
		return rejected(RuleDeadlineExceeded, "the command's deadline %s has passed: its caller no longer waits, so it is not applied",
			cmd.Deadline.UTC().Format(time.RFC3339))
	}
	if cmd.Action == dtetype.ActionRestore {
		return nil
	}
	def := e.d.Phase(cmd.Phase)
	if def == nil {
		return rejected("unknown_phase", "phase %q is not in %s", cmd.Phase, e.d.Key())
	}
	if !slices.Contains(dtetype.Actions(), cmd.Action) {
		return rejected("unknown_action", "action %q is not one of %s", cmd.Action, strings.Join(dtetype.Actions(), ", "))
	}
	if strings.TrimSpace(cmd.Actor) == "" || strings.TrimSpace(cmd.Reason) == "" {
		return rejected("missing_actor_or_reason", "a command needs an actor and a reason")
	}
	if len(def.Roles) > 0 {
		role, known := e.d.CanonicalRole(cmd.Role)
		if !known || !slices.Contains(def.Roles, role) {
			return rejected(RuleRoleNotAllowed, "role %q may not %s %s (allowed: %s)", cmd.Role, cmd.Action, cmd.Phase, strings.Join(def.Roles, ", "))
		}
	}
	state := dtetype.StateNotStarted
	if ps := e.s.phase(cmd.Phase); ps != nil {
		state = ps.State
	}
	need := map[string]dtetype.State{dtetype.ActionStart: dtetype.StateNotStarted, dtetype.ActionComplete: dtetype.StateInProgress, dtetype.ActionReopen: dtetype.StateCompleted}
	if want, ok := need[cmd.Action]; ok && state != want {
		return rejected(RuleInvalidTransition, "%s %s needs it %s; it is %s", cmd.Action, cmd.Phase, want, state)
	}
	if cmd.Action == dtetype.ActionStart {
		var unmet []string
		for _, dep := range def.DependsOn {
			if dd := e.d.Phase(dep); dd != nil && !dd.When.Holds(e.attrs) {
				continue
			}
			st := dtetype.StateNotStarted
			if ps := e.s.phase(dep); ps != nil {
				st = ps.State
			}
			if st != dtetype.StateCompleted {
				unmet = append(unmet, fmt.Sprintf("%s is %s", dep, st))
			}
		}
		if len(unmet) > 0 {
			return rejected(RuleDependencyUnmet, "%s cannot start while %s", cmd.Phase, strings.Join(unmet, ", "))
		}
	}
	if cmd.Action == dtetype.ActionOverride {
		if cmd.State == "" && cmd.Status == "" {
			return rejected("invalid_override", "an override needs a state, a status or both")
		}
		if (cmd.State != "" && !cmd.State.Valid()) || (cmd.Status != "" && !cmd.Status.Valid()) {
			return rejected("invalid_override", "override %q/%q is not a canonical state and status", cmd.State, cmd.Status)
		}
	}
	return nil
}

// registerCommands installs the command Update on the workflow: the
// validator refuses what the definition forbids, so nothing is written; the
// handler writes the command back to legacy through an activity and applies
// the rows written.
func registerCommands(ctx workflow.Context, e *engine, project func(workflow.Context) error) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{InitialInterval: time.Second, BackoffCoefficient: 2, MaximumInterval: 30 * time.Second,
			MaximumAttempts: 10, NonRetryableErrorTypes: []string{"legacy_refused", "bad_command", RuleDeadlineExceeded}},
	})
	// Commands run one at a time: each is judged again once it holds the
	// lock, against the state the previous one left, so two concurrent
	// commands can never both pass on a stale state.
	mu := workflow.NewMutex(ctx)
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateCommand,
		func(ctx workflow.Context, cmd Command) (CommandResult, error) {
			if err := mu.Lock(ctx); err != nil {
				return CommandResult{}, err
			}
			defer mu.Unlock()
			if err := e.validate(cmd, workflow.Now(ctx)); err != nil {
				return CommandResult{}, err
			}
			req := WriteBackRequest{Key: e.s.Key, Command: cmd, At: workflow.Now(ctx)}
			if ps := e.s.phase(cmd.Phase); ps != nil {
				view := *ps
				req.View = &view
			}
			var rows []dtetype.PhaseChange
			if err := workflow.ExecuteActivity(actx, WriteBackActivity, req).Get(ctx, &rows); err != nil {
				return CommandResult{}, err
			}
			for _, c := range rows {
				e.apply(c)
			}
			e.refreshStatuses(workflow.Now(ctx))
			if err := project(ctx); err != nil {
				return CommandResult{}, err
			}
			res := CommandResult{Phase: cmd.Phase, Rows: len(rows)}
			if ps := e.s.phase(cmd.Phase); ps != nil {
				res.State, res.Status = ps.State, ps.Status
			}
			return res, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, cmd Command) error { return e.validate(cmd, workflow.Now(ctx)) }})
}
