package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/synapsedte/dtebridge/internal/proc"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv("DTEBRIDGE_TESTENV_CHILD"); mode != "" {
		orphanChild(mode)
		return
	}
	os.Exit(Main(m))
}

// orphanChild starts both services the way a test would, reports their pids
// and directory on stdout, and then dies without cleaning up.
func orphanChild(mode string) {
	t := &testing.T{}
	c := Cluster(t)
	s := Temporal(t)
	fmt.Printf("%d %d %s\n", c.Pid(), s.Pid(), c.Dir())
	switch mode {
	case "panic":
		panic("test panicked")
	case "exit":
		os.Exit(1)
	default: // wait to be killed
		select {}
	}
}

// TestNoOrphans kills a test binary in the ways a run can end badly and checks
// that neither server nor the cluster directory outlives it.
func TestNoOrphans(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"panic", "exit", "sigkill", "sigint"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "DTEBRIDGE_TESTENV_CHILD="+mode)
			cmd.Stderr = io.Discard
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var pgPid, tPid int
			var dir string
			if _, err := fmt.Fscan(out, &pgPid, &tPid, &dir); err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("child did not report its services: %v", err)
			}
			if !proc.Alive(pgPid) || !proc.Alive(tPid) {
				t.Fatal("services not running in the child")
			}
			switch mode {
			case "sigkill":
				cmd.Process.Kill()
			case "sigint":
				cmd.Process.Signal(syscall.SIGINT)
			}
			cmd.Wait()
			deadline := time.Now().Add(45 * time.Second)
			for proc.Alive(pgPid) || proc.Alive(tPid) || exists(dir) {
				if time.Now().After(deadline) {
					t.Fatalf("after the child died: postgres alive=%v, temporal alive=%v, %s exists=%v",
						proc.Alive(pgPid), proc.Alive(tPid), dir, exists(dir))
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func TestPostgresRoundTrip(t *testing.T) {
	t.Parallel()
	db := NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE t (id int PRIMARY KEY, v text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO t VALUES (1, 'hello')`); err != nil {
		t.Fatal(err)
	}
	var v, user string
	if err := db.Pool.QueryRow(ctx, `SELECT v, current_user FROM t WHERE id = 1`).Scan(&v, &user); err != nil {
		t.Fatal(err)
	}
	if v != "hello" {
		t.Errorf("round trip read %q, want hello", v)
	}
	if user != "postgres" {
		t.Errorf("connected as %q, want postgres", user)
	}
}

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := NewDB(t), NewDB(t)
	ctx := context.Background()
	if _, err := a.Pool.Exec(ctx, `CREATE TABLE only_in_a (id int)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("a table created in %s is visible in %s", a.Name, b.Name)
	}
}

func greet(ctx workflow.Context, name string) (string, error) {
	return "hello " + name, nil
}

func TestTemporalWorkflowRun(t *testing.T) {
	t.Parallel()
	c := TemporalClient(t)
	w := worker.New(c, "testenv-smoke", worker.Options{})
	w.RegisterWorkflow(greet)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: "testenv-smoke"}, greet, "bridge")
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := run.Get(ctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != "hello bridge" {
		t.Errorf("workflow returned %q, want %q", got, "hello bridge")
	}
}
