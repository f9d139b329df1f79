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
	if opts.MaxConcurrentWorkflowTaskPollers == 0 {
		// Each report is its own workflow, so many small workflow tasks
		// wait at once: more pollers than the SDK's default of 2 keep up.
		opts.MaxConcurrentWorkflowTaskPollers = 8
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
