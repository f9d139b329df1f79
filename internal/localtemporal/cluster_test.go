package localtemporal_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/synapsedte/dtebridge/internal/localtemporal"
	"github.com/synapsedte/dtebridge/internal/proc"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// counter counts the signals it receives until it gets a zero.
func counter(ctx workflow.Context) (int, error) {
	ch := workflow.GetSignalChannel(ctx, "n")
	total := 0
	for {
		var n int
		ch.Receive(ctx, &n)
		if n == 0 {
			return total, nil
		}
		total += n
	}
}

// TestCluster: the production topology starts with its schemas applied by
// the SQL tool, one process per service; a workflow survives its history
// and matching services being killed and restarted; Stop removes the
// processes and the databases.
func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := testenv.Cluster(t)
	c, err := localtemporal.StartCluster(ctx, &localtemporal.ClusterConfig{PostgresURL: pg.URL("postgres"), Split: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			c.Stop()
		}
	}()
	pids := map[string]int{}
	for _, s := range localtemporal.Services {
		if pids[s] = c.Pid(s); pids[s] == 0 {
			t.Fatalf("no process for %s", s)
		}
	}
	tc := registerDefault(t, c)
	defer tc.Close()
	w := worker.New(tc, "tq", worker.Options{})
	w.RegisterWorkflow(counter)
	// A new namespace reaches the other services' caches within seconds.
	deadline := time.Now().Add(time.Minute)
	for {
		if err = w.Start(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	defer w.Stop()
	opts := client.StartWorkflowOptions{ID: "counter", TaskQueue: "tq"}
	if _, err := tc.SignalWithStartWorkflow(ctx, "counter", "n", 1, opts, counter); err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"history", "matching"} {
		if err := c.Kill(s); err != nil {
			t.Fatal(err)
		}
		if proc.Alive(pids[s]) {
			t.Fatalf("%s still alive after Kill", s)
		}
		if err := c.Restart(ctx, s); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := tc.SignalWorkflow(sctx, "counter", "", "n", 10*(i+1))
		cancel()
		if err != nil {
			t.Fatalf("signal after %s restarted: %v", s, err)
		}
	}
	if err := tc.SignalWorkflow(ctx, "counter", "", "n", 0); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := tc.GetWorkflow(ctx, "counter", "").Get(ctx, &total); err != nil || total != 31 {
		t.Fatalf("result %d, %v; want 31", total, err)
	}
	w.Stop()
	tc.Close()
	for _, s := range localtemporal.Services {
		pids[s] = c.Pid(s)
	}
	dbs := c.Databases()
	c.Stop()
	stopped = true
	for _, s := range localtemporal.Services {
		if proc.Alive(pids[s]) {
			t.Errorf("%s still alive after Stop", s)
		}
	}
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", dbs).Scan(&n); err != nil || n != 0 {
		t.Errorf("%d of Temporal's databases %v left after Stop (%v)", n, dbs, err)
	}
}

// TestClusterOneProcess: the same server runs all four services in one
// process, as small installations do.
func TestClusterOneProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pg := testenv.Cluster(t)
	c, err := localtemporal.StartCluster(ctx, &localtemporal.ClusterConfig{PostgresURL: pg.URL("postgres")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	for _, s := range localtemporal.Services {
		if c.Pid(s) != 0 {
			t.Errorf("a process of its own for %s", s)
		}
	}
	pid := c.Pid("all")
	// A second cluster on the same databases is refused, and they stay.
	if _, err := localtemporal.StartCluster(ctx, &localtemporal.ClusterConfig{PostgresURL: pg.URL("postgres"), Database: c.Databases()[0]}); err == nil ||
		!strings.Contains(err.Error(), "exists") {
		t.Errorf("a cluster on databases that exist: %v", err)
	}
	// It still answers: its databases were not dropped.
	registerDefault(t, c).Close()
	c.Stop()
	if proc.Alive(pid) {
		t.Error("the server is alive after Stop")
	}
}

// registerDefault dials the cluster and registers the namespace default.
func registerDefault(t *testing.T, c *localtemporal.Cluster) client.Client {
	t.Helper()
	tc, err := client.Dial(client.Options{HostPort: c.Address()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.WorkflowService().RegisterNamespace(context.Background(), &workflowservice.RegisterNamespaceRequest{Namespace: "default",
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}); err != nil {
		tc.Close()
		t.Fatal(err)
	}
	return tc
}
