package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/store"
)

// syncBuffer is a buffer written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestCaptureTailIsReadOnly: capture tail, even with a mapping of its own
// that cannot translate what legacy writes, changes nothing of the bridge's:
// no quarantine entries, no checkpoint, no wake-up request; it prints what it
// cannot translate. A crashed tail that kept a checkpoint stops holding back
// pruning once its lease has expired, and status says so.
func TestCaptureTailIsReadOnly(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(6, 60, 17)
	b.Quiescent(60 * time.Second)
	base := bridgeFlags(t, b)
	ctx := context.Background()

	// The tail's mapping lacks a status label the mirror's has.
	cfgPath := base[3]
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	narrow := regexp.MustCompile(`(?m)^\s*"?At Risk"?: at_risk\n`).ReplaceAllString(string(raw), "")
	if narrow == string(raw) {
		t.Fatalf("the test config has no 'At Risk: at_risk' line to remove:\n%s", raw)
	}
	narrowPath := filepath.Join(t.TempDir(), "narrow.yaml")
	if err := os.WriteFile(narrowPath, []byte(narrow), 0o644); err != nil {
		t.Fatal(err)
	}
	tailArgs := append(append([]string{"dtebridge"}, base...), "capture", "tail")
	tailArgs[4] = narrowPath
	tctx, cancel := context.WithCancel(ctx)
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(tctx, tailArgs, &out, &errOut) }()
	bridgetest.WaitFor(t, 30*time.Second, "the tail's backfill", func() bool { return strings.Count(out.String(), "\n") > 10 })
	b.Exec(`UPDATE workflow_phases SET schedule_status = 'At Risk', updated_at = now() WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases)`)
	bridgetest.WaitFor(t, 30*time.Second, "the tail to print the change it cannot translate", func() bool {
		return strings.Contains(out.String(), `"rejected"`) && strings.Contains(out.String(), `"reason":"unknown_label"`)
	})
	var cps []store.CheckpointStatus
	bridgetest.WaitFor(t, 30*time.Second, "the mirror", func() bool {
		cps, _ = b.Store().Checkpoints(ctx, time.Hour)
		return len(cps) == 1
	})
	if cps[0].Consumer != store.MirrorConsumer {
		t.Errorf("checkpoints while tailing: %+v", cps)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail: exit %d: %s", code, errOut.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(line, `{"rejected"`) {
			validateOutput(t, "capture-tail-rejected", line)
		} else {
			validateOutput(t, "capture-tail-change", line)
		}
	}
	b.Quiescent(30 * time.Second)
	if q, _ := b.Store().ListQuarantine(ctx, true); len(q) != 0 {
		t.Errorf("the tail wrote quarantine entries: %+v", q)
	}
	var readers int
	b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.readers WHERE consumer <> 'mirror'`).Scan(&readers)
	if readers != 0 {
		t.Errorf("the tail left %d wake-up requests", readers)
	}

	// A tail with --keep that crashed before acknowledging anything, an
	// hour ago: it no longer holds back pruning, and status says so.
	if _, err := b.DB.Pool.Exec(ctx, `INSERT INTO dtebridge.checkpoints (consumer, updated_at) VALUES ('crashed-tail', now() - interval '2 hours')`); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, append(base, "status", "--format", "json")...)
	var st statusReport
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		t.Fatalf("status: %d %s %s", r.code, r.stdout, r.stderr)
	}
	expired := map[string]bool{}
	for _, c := range st.Consumers {
		expired[c.Consumer] = c.Expired
	}
	if !expired["crashed-tail"] || expired[store.MirrorConsumer] {
		t.Errorf("expired consumers: %v", expired)
	}
	if r := runCLI(t, append(base, "status")...); !strings.Contains(r.stdout, "crashed-tail (expired") {
		t.Errorf("status text: %s", r.stdout)
	}
	bridgetest.WaitFor(t, 30*time.Second, "pruning past the crashed tail", func() bool {
		b.Exec(`UPDATE workflow_phases SET updated_at = now() WHERE phase_id = (SELECT max(phase_id) FROM workflow_phases)`)
		b.Quiescent(10 * time.Second)
		n, err := b.Store().Prune(ctx, time.Nanosecond, time.Hour)
		return err == nil && n > 0
	})
}
