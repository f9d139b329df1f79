package adapter_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
)

// childEnv, when set, turns the test binary into a reader process for the
// crash and failover tests; see runChild.
const childEnv = "DTEBRIDGE_ADAPTER_CHILD"

// delivery is one line a child reader writes per delivered change.
type delivery struct {
	Event       string `json:"event"`
	Seq         int64  `json:"seq"`
	Row         string `json:"row"`
	CompletedBy string `json:"completed_by"`
	Identity    string `json:"identity"`
}

// runChild runs a reader that appends every delivered change to a file,
// synced before the batch is acknowledged. With CRASH_AFTER=n it kills
// itself after writing its n-th batch, before acknowledging it.
func runChild() int {
	url, out, identity := os.Getenv("DB_URL"), os.Getenv("OUT"), os.Getenv("IDENTITY")
	crashAfter, _ := strconv.Atoi(os.Getenv("CRASH_AFTER"))
	batch, _ := strconv.Atoi(os.Getenv("BATCH"))
	cfg, err := config.Example("seed")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tr, err := cfg.Translator(nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if m := os.Getenv("MODE"); m != "" {
		cfg.Capture.Mode = m
	}
	rc := cfg.ReaderConfig()
	rc.BatchSize = batch
	rc.Identity = identity
	rc.PollInterval = 100 * time.Millisecond
	rc.StandbyInterval = 200 * time.Millisecond
	batches := 0
	r := adapter.NewReader(cfg.Store(pool), tr, rc)
	err = r.Run(ctx, adapter.ConsumerFunc(func(ctx context.Context, b adapter.Batch) error {
		w := bufio.NewWriter(f)
		for _, c := range b.Changes {
			line, _ := json.Marshal(delivery{c.EventID, c.Seq, c.RowID, c.CompletedBy, identity})
			w.Write(append(line, '\n'))
		}
		if err := w.Flush(); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
		if len(b.Changes) > 0 {
			batches++
		}
		if crashAfter > 0 && batches == crashAfter {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}))
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// child starts a reader process.
func (f *fixture) child(out, identity string, batch, crashAfter int) *exec.Cmd {
	f.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "DB_URL="+f.db.URL, "OUT="+out, "IDENTITY="+identity,
		"BATCH="+strconv.Itoa(batch), "CRASH_AFTER="+strconv.Itoa(crashAfter), "MODE="+f.cfg.Capture.Mode)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

// readDeliveries reads a child's output file.
func readDeliveries(t *testing.T, path string) []delivery {
	t.Helper()
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	// A reader may be writing as we read: a last line without its newline
	// is not there yet.
	if i := bytes.LastIndexByte(raw, '\n'); i >= 0 {
		raw = raw[:i+1]
	} else {
		raw = nil
	}
	var out []delivery
	for _, line := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d delivery
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out = append(out, d)
	}
	return out
}
