package shadow

import (
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/synapsedte/dtebridge/store"
)

// WorkerConfig configures a shadow worker.
type WorkerConfig struct {
	// TaskQueue is the queue to poll; required.
	TaskQueue string
	// Options are passed to the Temporal worker.
	Options worker.Options
}

// NewWorker returns a worker that runs shadow workflows and their
// activities, projecting into st. Start it with Start or Run.
func NewWorker(c client.Client, st *store.Store, cfg WorkerConfig) worker.Worker {
	opts := cfg.Options
	if opts.MaxConcurrentWorkflowTaskPollers == 0 && opts.WorkflowTaskPollerBehavior == nil {
		// Each report is its own workflow, so many small workflow tasks wait
		// at once. Autoscaling pollers keep one poll open on the normal task
		// queue at all times. A fixed maximum shares its pollers between the
		// sticky and the normal queue and sends every poll to the sticky queue
		// while the server reports a sticky backlog: after a burst, all of
		// them then wait out a one-minute long poll there, and a new report's
		// first workflow task waits with them.
		opts.WorkflowTaskPollerBehavior = worker.NewPollerBehaviorAutoscaling(worker.PollerBehaviorAutoscalingOptions{
			InitialNumberOfPollers: 8, MinimumNumberOfPollers: 2, MaximumNumberOfPollers: 32})
	}
	w := worker.New(c, cfg.TaskQueue, opts)
	Register(w, &Activities{Store: st})
	return w
}

// Register registers the shadow workflow and activities on any registry,
// such as a worker or a test environment.
func Register(r worker.Registry, a *Activities) {
	r.RegisterWorkflowWithOptions(ShadowWorkflow, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterActivity(a)
}
