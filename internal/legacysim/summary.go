package legacysim

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/synapsedte/dtebridge/dtetype"
)

// WriteText renders the summary as plain-text tables: operations by kind,
// then rows by phase (in workflow order, aliases after their phase) and state.
func (s *Summary) WriteText(w io.Writer, p *Profile) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Simulated %d reports in %d cycles (profile %s, seed %d, concurrency %d) in %.1fs.\n\n",
		s.Reports, s.Cycles, s.Profile, s.Seed, s.Concurrency, s.ElapsedSecs)
	fmt.Fprintln(tw, "operation\tapplied\trejected by gate\t")
	kinds := make([]string, 0, len(s.Ops))
	for k := range s.Ops {
		kinds = append(kinds, k)
	}
	for k := range s.Rejected {
		if _, ok := s.Ops[k]; !ok {
			kinds = append(kinds, k)
		}
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", k, s.Ops[k], s.Rejected[k])
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t\n", s.TotalOps(), sumValues(s.Rejected))
	if err := tw.Flush(); err != nil {
		return err
	}
	if s.BulkRows > 0 {
		fmt.Fprintf(w, "(bulk operations updated %d rows in %d transactions)\n", s.BulkRows, s.Ops[OpBulkReschedule])
	}
	fmt.Fprintln(w)

	states := make([]string, 0, 3)
	for _, st := range dtetype.States() {
		states = append(states, p.State(st))
	}
	fmt.Fprintln(tw, "phase\t"+strings.Join(states, "\t")+"\ttotal\t")
	for _, ph := range p.Chain {
		for _, label := range ph.Labels() {
			counts, ok := s.Rows[label]
			if !ok {
				continue
			}
			var line strings.Builder
			line.WriteString(label)
			var total int64
			for _, st := range states {
				fmt.Fprintf(&line, "\t%d", counts[st])
				total += counts[st]
			}
			fmt.Fprintf(tw, "%s\t%d\t\n", line.String(), total)
		}
	}
	return tw.Flush()
}

func sumValues(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
