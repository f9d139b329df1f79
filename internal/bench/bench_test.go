package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/internal/testenv"
)

// TestCaptureBenchmarksRun runs every capture benchmark at a tiny size. It
// checks that each produces its rows, never how fast anything was.
func TestCaptureBenchmarksRun(t *testing.T) {
	t.Parallel()
	c := testenv.Cluster(t)
	ctx := context.Background()
	o := CaptureOptions{Rows: 500, Rounds: 1, Slice: 200 * time.Millisecond, BulkRows: 100, ReaderChanges: 1000, LagRate: 50, LagDuration: time.Second}
	var rows []Row
	for _, f := range []func() ([]Row, error){
		func() ([]Row, error) { return CaptureOverhead(ctx, c, "test", o) },
		func() ([]Row, error) { return ReaderThroughput(ctx, c, o) },
		func() ([]Row, error) { return CaptureLag(ctx, c, o) },
	} {
		r, err := f()
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, r...)
	}
	if len(rows) != 15+4+6 {
		t.Errorf("%d rows, want 25", len(rows))
	}
	mrows, err := MirrorBench(ctx, c, testenv.TemporalClient(t), MirrorOptions{Signals: 50, Reports: 5, Changes: 200, Concurrency: 4, LagDuration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(mrows) != 9 { // ceiling, lag p50 and p99, and three rows per drain (batch 2000 and 500)
		t.Errorf("%d mirror rows, want 9", len(mrows))
	}
	rows = append(rows, mrows...)
	// --json: every figure has a key of its own, a value and a unit.
	keys := map[string]bool{}
	for _, r := range JSON(rows) {
		if r.Key == "" || r.Unit == "" || keys[r.Key] {
			t.Errorf("row without a unique key or a unit: %+v", r)
		}
		keys[r.Key] = true
	}
	for _, k := range []string{"capture.overhead.test.single_row.logical", "capture.reader.logical.batch_500", "capture.lag.logical.p99", "mirror.drain", "mirror.batch500.drain"} {
		if !keys[k] {
			t.Errorf("no figure %s among %v", k, keys)
		}
	}
	var out bytes.Buffer
	if err := Write(&out, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no capture (baseline)", "row trigger", "statement trigger", "log-based (logical decoding)", "changes/s", "p99", "the ceiling", "× the trigger reader"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
