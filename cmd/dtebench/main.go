// Command dtebench runs dtebridge's benchmarks against throwaway local
// services and prints one table of figures, each beside a baseline measured
// in the same run. make bench runs it.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/synapsedte/dtebridge/internal/bench"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
	"github.com/synapsedte/dtebridge/shadow"
)

func main() {
	only := flag.String("only", "", "comma-separated benchmarks to run: overhead, reader, lag, mirror, reconcile, growth, console (default: all)")
	quick := flag.Bool("quick", false, "small sizes, for a smoke run")
	jsonFile := flag.String("json", "", "also write the table as JSON to this file: one object per figure with a stable key, its value, unit and ratio to its baseline")
	child := flag.String("reconcile-child", "", "internal: run one reconcile of this database and print its figures")
	spill := flag.Int("reconcile-spill", 0, "internal: the child's reconcile.Options.Spill")
	record := flag.Bool("reconcile-record", false, "internal: the child records the run and writes its JSON report")
	flag.Parse()
	if *child != "" {
		if err := reconcileChild(*child, *spill, *record); err != nil {
			fmt.Fprintln(os.Stderr, "dtebench:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *only, *quick, *jsonFile); err != nil {
		fmt.Fprintln(os.Stderr, "dtebench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, only string, quick bool, jsonFile string) error {
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
	if want("reconcile") {
		r, err := reconcileBench(ctx, quick, log)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if want("growth") {
		r, err := growthBench(ctx, quick, log)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if want("mirror") {
		r, err := mirrorBench(ctx, quick, log)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	if want("console") {
		r, err := consoleBench(ctx, quick, log)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	fmt.Printf("dtebridge benchmarks: %d CPUs, %s, local PostgreSQL, %s\n\n", runtime.NumCPU(), runtime.Version(), time.Since(began).Round(time.Second))
	if jsonFile != "" {
		out, err := json.MarshalIndent(map[string]any{"cpus": runtime.NumCPU(), "go": runtime.Version(), "started_at": began.UTC(),
			"seconds": time.Since(began).Seconds(), "quick": quick, "rows": bench.JSON(rows)}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(jsonFile, append(out, '\n'), 0o644); err != nil {
			return fmt.Errorf("error writing %s: %w", jsonFile, err)
		}
	}
	return bench.Write(os.Stdout, rows)
}

// mirrorBench runs the mirror benchmarks on a fresh cluster, first against
// the dev server, then against Temporal as production runs it (PostgreSQL
// persistence and SQL visibility on the same cluster, one process per
// service), each with its own raw SignalWithStart ceiling.
func mirrorBench(ctx context.Context, quick bool, log *slog.Logger) ([]bench.Row, error) {
	c, err := localpg.Start(ctx, &localpg.Config{Durable: true})
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	o := bench.MirrorOptions{}
	if quick {
		o = bench.MirrorOptions{Signals: 200, Reports: 20, Changes: 1000, LagDuration: 3 * time.Second}
	}
	quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	log.Info("mirror benchmarks: Temporal dev server")
	rows, err := func() ([]bench.Row, error) {
		ts, err := localtemporal.Start(ctx, &localtemporal.Config{Path: os.Getenv("DTEBRIDGE_TEMPORAL_CLI")})
		if err != nil {
			return nil, err
		}
		defer ts.Stop()
		tc, err := client.Dial(client.Options{HostPort: ts.Address(), Logger: quiet})
		if err != nil {
			return nil, err
		}
		defer tc.Close()
		return bench.MirrorBench(ctx, c, tc, o)
	}()
	if err != nil {
		return nil, err
	}
	log.Info("mirror benchmarks: Temporal server " + localtemporal.ServerVersion + " with PostgreSQL persistence, one process per service")
	tcl, err := localtemporal.StartCluster(ctx, &localtemporal.ClusterConfig{PostgresURL: c.URL("postgres"), Split: true,
		ServerPath: os.Getenv("DTEBRIDGE_TEMPORAL_SERVER"), SQLToolPath: os.Getenv("DTEBRIDGE_TEMPORAL_SQL_TOOL")})
	if err != nil {
		return nil, err
	}
	defer tcl.Stop()
	tc, err := client.Dial(client.Options{HostPort: tcl.Address(), Logger: quiet})
	if err != nil {
		return nil, err
	}
	defer tc.Close()
	if _, err := shadow.EnsureNamespace(ctx, tc, "default", 24*time.Hour); err != nil {
		return nil, err
	}
	o.Topology, o.TopologyName = "pg", "Temporal "+localtemporal.ServerVersion+" on PostgreSQL, 4 service processes"
	pg, err := bench.MirrorBench(ctx, c, tc, o)
	if err != nil {
		return nil, err
	}
	rows = append(rows, pg...)
	dev, prod := bench.Value(rows, "mirror.drain"), bench.Value(rows, "mirror.pg.drain")
	rows = append(rows, bench.Row{Group: pg[0].Group, Name: "drain, PostgreSQL topology against the dev server", Figure: fmt.Sprintf("%.2f×", prod/dev),
		Versus: fmt.Sprintf("%.0f against %.0f changes/s", prod, dev), Key: "mirror.pg.drain_vs_dev", Value: prod / dev, Unit: "ratio", Ratio: prod / dev})
	return rows, nil
}

// consoleBench measures the console's pages over the reconcile data set
// with 100,000 open divergences.
func consoleBench(ctx context.Context, quick bool, log *slog.Logger) ([]bench.Row, error) {
	reports, divergences, rounds := 100000, 100000, 7
	if quick {
		reports, divergences, rounds = 2000, 2000, 3
	}
	c, err := localpg.Start(ctx, nil)
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
	log.Info("console benchmark: generating data", "reports", reports, "divergences", divergences)
	url, err := bench.ReconcileData(ctx, c, "bench_console", reports)
	if err != nil {
		return nil, err
	}
	return bench.ConsolePages(ctx, url, tc, ts.Address(), divergences, rounds, slog.New(slog.DiscardHandler))
}

// reconcileChild runs in its own process, so its peak RSS is the
// reconcile's alone.
func reconcileChild(url string, spill int, record bool) error {
	r, err := bench.TimeReconcile(context.Background(), url, spill, record)
	if err != nil {
		return err
	}
	// The peak RSS of this process's own memory: getrusage's maxrss starts
	// at the parent's size at fork, VmHWM at exec.
	hwm, err := peakRSSKB()
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"result": r, "maxrss_kb": hwm})
}

// peakRSSKB reads VmHWM from /proc/self/status.
func peakRSSKB() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, err
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// reconcileBench generates 100,000 reports × 9 phases in SQL and times
// reconcile over them, all consistent and then with 1% divergent, each in a
// child process, against a plain scan of both tables as the baseline.
func reconcileBench(ctx context.Context, quick bool, log *slog.Logger) ([]bench.Row, error) {
	reports := 100000
	if quick {
		reports = 2000
	}
	c, err := localpg.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	log.Info("reconcile benchmark: generating data", "reports", reports)
	url, err := bench.ReconcileData(ctx, c, "bench_reconcile", reports)
	if err != nil {
		return nil, err
	}
	scan, err := bench.ScanBaseline(ctx, url)
	if err != nil {
		return nil, err
	}
	group := fmt.Sprintf("reconcile: %d reports × 9 phases, generated in SQL (unrecorded sweeps: median of 3 runs)", reports)
	rows := []bench.Row{{Group: group, Name: "plain scan of legacy and shadow tables (baseline)", Figure: fmt.Sprintf("%.2fs", scan.Seconds()), Versus: "baseline",
		Key: "reconcile.scan", Value: scan.Seconds(), Unit: "s", Ratio: 1}}
	var consistent float64
	for _, tc := range []struct {
		key, name string
		share     float64
	}{{"consistent", "all consistent", 0}, {"divergent_1pct", "1% divergent", 0.01}, {"divergent_100k", "about 100,000 divergences", 0.125}} {
		if tc.share > 0 {
			if _, err := bench.DivergeShadow(ctx, url, tc.share); err != nil {
				return nil, err
			}
		}
		log.Info("reconcile benchmark", "case", tc.name)
		res, err := fullSweep(ctx, url, 0, false)
		if err != nil {
			return nil, err
		}
		secs := res.Result.Elapsed.Seconds()
		rows = append(rows, bench.Row{Group: group, Name: "full sweep, " + tc.name,
			Figure: fmt.Sprintf("%.2fs, %.0f rows/s, peak RSS %d MB, %d unexpected", secs, float64(res.Result.Rows)/secs, res.MaxRSSKB/1024, res.Result.Unexpected),
			Versus: fmt.Sprintf("%.1f× the scan", secs/scan.Seconds()),
			Key:    "reconcile." + tc.key, Value: secs, Unit: "s", Ratio: secs / scan.Seconds()})
		if tc.share > 0.1 {
			// Memory with many divergences, on the path a user takes
			// (recorded, the JSON report written): spilled to disk (the
			// default), and held in memory, in the same run.
			for _, m := range []struct {
				key, name string
				spill     int
			}{{"spilled", "spilled to disk (default)", 0}, {"in_memory", "held in memory (Spill unlimited)", 1 << 30}} {
				// Each records its divergences as new, as the first
				// recorded run does.
				if err := bench.ForgetRuns(ctx, url); err != nil {
					return nil, err
				}
				res, err := fullSweep(ctx, url, m.spill, true)
				if err != nil {
					return nil, err
				}
				rows = append(rows, bench.Row{Group: group, Name: "  recorded and rendered as JSON, divergences " + m.name,
					Figure: fmt.Sprintf("%.2fs, peak RSS %d MB, %d unexpected", res.Result.Elapsed.Seconds(), res.MaxRSSKB/1024, res.Result.Unexpected),
					Key:    "reconcile.divergent_100k.rss." + m.key, Value: float64(res.MaxRSSKB) / 1024, Unit: "MB"})
			}
		}
		if tc.share > 0 {
			continue
		}
		consistent = secs
		// Incremental runs after the consistent full sweep, which is their
		// base, before any divergence is made.
		for _, n := range []int{1000, 10000} {
			if quick {
				n /= 100
			}
			log.Info("reconcile benchmark: incremental", "reports written", n)
			inc, err := bench.TimeIncremental(ctx, url, n)
			if err != nil {
				return nil, err
			}
			if inc.Kind != "incremental" {
				return nil, fmt.Errorf("the incremental run was %s", inc.Kind)
			}
			isecs := inc.Elapsed.Seconds()
			rows = append(rows, bench.Row{Group: group, Name: fmt.Sprintf("incremental, %d reports written on both sides", n),
				Figure: fmt.Sprintf("%.0f ms, %d reports looked at, %d unexpected", isecs*1000, inc.Touched, inc.Unexpected),
				Versus: fmt.Sprintf("%.3f× the full sweep", isecs/consistent),
				Key:    fmt.Sprintf("reconcile.incremental.%d", n), Value: isecs, Unit: "s", Ratio: isecs / consistent})
		}
	}
	return rows, nil
}

type sweepResult struct {
	Result   bench.ReconcileResult `json:"result"`
	MaxRSSKB int64                 `json:"maxrss_kb"`
}

// fullSweep times a full reconcile of url in a child process, for its
// peak RSS: unrecorded, or recorded with its JSON report written. An
// unrecorded sweep runs three times (each in a process of its own), and
// gives the median time and the highest peak RSS: one run on this shared
// machine varied by a tenth. A recorded one runs once, as it records.
func fullSweep(ctx context.Context, url string, spill int, record bool) (*sweepResult, error) {
	runs := 3
	if record {
		runs = 1
	}
	var all []sweepResult
	for range runs {
		out, err := exec.CommandContext(ctx, os.Args[0], "-reconcile-child", url, "-reconcile-spill", strconv.Itoa(spill),
			"-reconcile-record="+strconv.FormatBool(record)).Output()
		if err != nil {
			return nil, fmt.Errorf("reconcile child: %w", err)
		}
		var res sweepResult
		if err := json.Unmarshal(out, &res); err != nil {
			return nil, err
		}
		all = append(all, res)
	}
	slices.SortFunc(all, func(a, b sweepResult) int { return cmp.Compare(a.Result.Elapsed, b.Result.Elapsed) })
	med := all[len(all)/2]
	for _, r := range all {
		med.MaxRSSKB = max(med.MaxRSSKB, r.MaxRSSKB)
	}
	return &med, nil
}

// growthBench times the full sweep (all consistent) at 10,000, 100,000
// and 1,000,000 reports × 9 phases, each generated once in a database of
// its own, and gives the exponent of time against rows.
func growthBench(ctx context.Context, quick bool, log *slog.Logger) ([]bench.Row, error) {
	sizes := []int{10000, 100000, 1000000}
	if quick {
		sizes = []int{200, 2000, 20000}
	}
	c, err := localpg.Start(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	group := "reconcile growth: the full sweep, all consistent, at three sizes (median of 3 runs)"
	var rows []bench.Row
	var first *sweepResult
	for i, n := range sizes {
		log.Info("reconcile growth: generating data", "reports", n)
		name := fmt.Sprintf("bench_growth_%d", i)
		url, err := bench.ReconcileData(ctx, c, name, n)
		if err != nil {
			return nil, err
		}
		res, err := fullSweep(ctx, url, 0, false)
		if err != nil {
			return nil, err
		}
		if err := c.DropDatabase(ctx, name); err != nil {
			return nil, err
		}
		secs := res.Result.Elapsed.Seconds()
		perRow := secs / float64(res.Result.Rows) * 1e9
		row := bench.Row{Group: group, Name: fmt.Sprintf("%d rows", res.Result.Rows),
			Figure: fmt.Sprintf("%.2fs, %.0f ns/row, peak RSS %d MB", secs, perRow, res.MaxRSSKB/1024), Versus: "baseline",
			Key: fmt.Sprintf("reconcile.growth.%d", res.Result.Rows), Value: secs, Unit: "s", Ratio: 1}
		if first == nil {
			first = res
		} else {
			exp := math.Log(secs/first.Result.Elapsed.Seconds()) / math.Log(float64(res.Result.Rows)/float64(first.Result.Rows))
			row.Ratio = perRow / (first.Result.Elapsed.Seconds() / float64(first.Result.Rows) * 1e9)
			row.Versus = fmt.Sprintf("%.2f× the time per row at %d rows; time ∝ rows^%.2f", row.Ratio, first.Result.Rows, exp)
		}
		rows = append(rows, row)
	}
	return rows, nil
}
