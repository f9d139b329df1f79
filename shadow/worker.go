package shadow

import (
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// WorkerConfig configures a shadow worker. A nil config is ready to use.
type WorkerConfig struct {
	// TaskQueue is the queue to poll. Default: DefaultTaskQueue.
	TaskQueue string
	// Schema is the bridge schema the projection goes to. Default: dtebridge.
	Schema string
	// Options are passed to the Temporal worker.
	Options worker.Options
}

// NewWorker returns a worker that runs shadow workflows and their
// activities. Start it with Start or Run.
func NewWorker(c client.Client, pool *pgxpool.Pool, cfg *WorkerConfig) worker.Worker {
	if cfg == nil {
		cfg = &WorkerConfig{}
	}
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
	w := worker.New(c, orDefault(cfg.TaskQueue, DefaultTaskQueue), opts)
	Register(w, &Activities{Pool: pool, Schema: cfg.Schema})
	return w
}

// Register registers the shadow workflow and activities on any registry,
// such as a worker or a test environment.
func Register(r worker.Registry, a *Activities) {
	r.RegisterWorkflowWithOptions(ShadowWorkflow, workflow.RegisterOptions{Name: WorkflowName})
	r.RegisterActivity(a)
}
