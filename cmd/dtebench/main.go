// Command dtebench runs dtebridge's benchmarks against throwaway local
// services and prints one table of figures, each beside a baseline measured
// in the same run. make bench runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/synapsedte/dtebridge/internal/bench"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
)

func main() {
	only := flag.String("only", "", "comma-separated benchmarks to run: overhead, reader, lag, mirror (default: all)")
	quick := flag.Bool("quick", false, "small sizes, for a smoke run")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *only, *quick); err != nil {
		fmt.Fprintln(os.Stderr, "dtebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, only string, quick bool) error {
	want := func(name string) bool { return only == "" || strings.Contains(","+only+",", ","+name+",") }
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o := bench.CaptureOptions{Logger: log}
	if quick {
		o = bench.CaptureOptions{Logger: log, Rows: 2000, Rounds: 1, Slice: 500 * time.Millisecond, ReaderChanges: 5000, LagDuration: 2 * time.Second, LagRate: 100}
	}
	var rows []bench.Row
	began := time.Now()
	for _, durable := range []bool{true, false} {
		if !want("overhead") && (!durable || (!want("reader") && !want("lag"))) {
			continue
		}
		c, err := localpg.Start(ctx, &localpg.Config{Durable: durable})
		if err != nil {
			return err
		}
		defer c.Stop()
		label := "durable commits"
		if !durable {
			label = "fsync off (worst case)"
		}
		if want("overhead") {
			r, err := bench.CaptureOverhead(ctx, c, label, o)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		if durable && want("reader") {
			r, err := bench.ReaderThroughput(ctx, c, o)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		if durable && want("lag") {
			r, err := bench.CaptureLag(ctx, c, o)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
	}
	if want("mirror") {
		r, err := mirrorBench(ctx, quick, log)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	fmt.Printf("dtebridge benchmarks: %d CPUs, %s, local PostgreSQL, %s\n\n", runtime.NumCPU(), runtime.Version(), time.Since(began).Round(time.Second))
	return bench.Write(os.Stdout, rows)
}

// mirrorBench runs the mirror benchmarks on a fresh cluster and dev server.
func mirrorBench(ctx context.Context, quick bool, log *slog.Logger) ([]bench.Row, error) {
	c, err := localpg.Start(ctx, &localpg.Config{Durable: true})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	ts, err := localtemporal.Start(ctx, &localtemporal.Config{Path: os.Getenv("DTEBRIDGE_TEMPORAL_CLI")})
	if err != nil {
		return nil, err
	}
	defer ts.Stop()
	tc, err := client.Dial(client.Options{HostPort: ts.Address(), Logger: sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))})
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	o := bench.MirrorOptions{}
	if quick {
		o = bench.MirrorOptions{Signals: 200, Reports: 20, Changes: 1000, LagDuration: 3 * time.Second}
	}
	log.Info("mirror benchmarks")
	return bench.MirrorBench(ctx, c, tc, o)
}
