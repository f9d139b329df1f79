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
	if len(rows) != 9+2+3 {
		t.Errorf("%d rows, want 14", len(rows))
	}
	mrows, err := MirrorBench(ctx, c, testenv.TemporalClient(t), MirrorOptions{Signals: 50, Reports: 5, Changes: 200, Concurrency: 4, LagDuration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(mrows) != 6 {
		t.Errorf("%d mirror rows, want 6", len(mrows))
	}
	rows = append(rows, mrows...)
	var out bytes.Buffer
	if err := Write(&out, rows); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"no capture (baseline)", "row trigger", "statement trigger", "changes/s", "p99", "the ceiling"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
