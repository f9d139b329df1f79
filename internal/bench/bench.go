// Package bench measures dtebridge against baselines taken in the same run,
// so that figures compare like with like on a shared, noisy machine. It
// reports figures; it never passes or fails on them. cmd/dtebench prints the
// table that make bench shows.
package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is one line of the results table.
type Row struct {
	// Group names the benchmark, e.g. "capture overhead, single-row UPDATE".
	Group string
	// Name is the variant measured, e.g. "row trigger".
	Name string
	// Figure is the measurement, with its unit.
	Figure string
	// Versus compares it with the group's baseline, e.g. "+8.1% time".
	Versus string
	// Key names the figure the same way in every run, for --json, e.g.
	// "capture.overhead.durable.single_row.logical".
	Key string
	// Value is the figure as a number, in Unit.
	Value float64
	Unit  string
	// Ratio is the figure over its baseline's (time over time, or rate
	// over rate, as Versus says); 0 when it has none.
	Ratio float64
}

// JSONRow is a row as dtebench --json writes it: stable keys first.
type JSONRow struct {
	Key    string  `json:"key"`
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	Ratio  float64 `json:"ratio,omitempty"`
	Group  string  `json:"group"`
	Name   string  `json:"name"`
	Figure string  `json:"figure"`
	Versus string  `json:"versus,omitempty"`
}

// JSON returns the rows as dtebench --json writes them.
func JSON(rows []Row) []JSONRow {
	out := make([]JSONRow, len(rows))
	for i, r := range rows {
		out[i] = JSONRow{Key: r.Key, Value: r.Value, Unit: r.Unit, Ratio: r.Ratio, Group: r.Group, Name: r.Name, Figure: r.Figure, Versus: r.Versus}
	}
	return out
}

// Write prints rows as a table, one block per group.
func Write(w io.Writer, rows []Row) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	group := ""
	for _, r := range rows {
		if r.Group != group {
			if group != "" {
				fmt.Fprintln(tw, "\t\t\t")
			}
			fmt.Fprintf(tw, "%s\t\t\t\n", r.Group)
			group = r.Group
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t\n", r.Name, r.Figure, r.Versus)
	}
	return tw.Flush()
}

// median returns the median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// percentile returns the p-th percentile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)))
	return sorted[min(i, len(sorted)-1)]
}

// pct renders a ratio as a signed percentage of extra time.
func pct(ratio float64) string {
	return fmt.Sprintf("%+.1f%% time", (ratio-1)*100)
}

func ms(d time.Duration) string {
	return strings.TrimSuffix(fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)), ".00") + " ms"
}

// Value returns the value of the row with key, or 0.
func Value(rows []Row, key string) float64 {
	for _, r := range rows {
		if r.Key == key {
			return r.Value
		}
	}
	return 0
}
