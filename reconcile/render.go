package reconcile

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
)

//go:embed report.schema.json
var reportSchema []byte

// ReportSchema returns the JSON Schema of a report's JSON form.
func ReportSchema() []byte { return reportSchema }

// WriteJSON writes the report as JSON, in the form ReportSchema documents.
// The divergences of a run that spilled them stream from its files.
func (r *Report) WriteJSON(w io.Writer) error {
	if !r.Spilled() {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	head := *r
	head.Divergences = []dtetype.Divergence{}
	out, err := json.MarshalIndent(&head, "", "  ")
	if err != nil {
		return err
	}
	const marker = "\n  \"divergences\": []"
	i := bytes.Index(out, []byte(marker))
	if i < 0 {
		return fmt.Errorf("reconcile: no divergences in the report's JSON")
	}
	bw := bufio.NewWriter(w)
	bw.Write(out[:i+len(marker)-1])
	first := true
	for d, err := range r.All() {
		if err != nil {
			return err
		}
		if !first {
			bw.WriteString(",")
		}
		first = false
		item, err := json.MarshalIndent(d, "    ", "  ")
		if err != nil {
			return err
		}
		bw.WriteString("\n    ")
		bw.Write(item)
	}
	bw.WriteString("\n  ]")
	bw.Write(out[i+len(marker):])
	bw.WriteString("\n")
	return bw.Flush()
}

// kindLine says what an incremental run looked at, or why a run asked to
// be incremental was full.
func (r *Report) kindLine() string {
	switch {
	case r.Kind == "incremental" && r.Touched != nil:
		return fmt.Sprintf("Incremental: the %d reports written since run %d, on either side.", *r.Touched, r.BaseRun)
	case r.FullBecause != "":
		return "Full, not incremental: " + r.FullBecause + "."
	}
	return ""
}

// HasUnexpected reports whether any divergence is not accepted by a rule.
func (r *Report) HasUnexpected() bool { return r.Unexpected > 0 }

func pct(x float64) string { return fmt.Sprintf("%.2f%%", x*100) }

// WriteText writes the report as readable tables: consistency per phase,
// divergences by kind, and the first listLimit divergences.
func (r *Report) WriteText(w io.Writer, listLimit int) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	run := "not recorded"
	if r.RunID > 0 {
		run = fmt.Sprintf("run %d", r.RunID)
	}
	fmt.Fprintf(w, "Reconcile (%s): %d keys compared in %s, %d in flight; consistency %s; %d unexpected and %d expected divergences",
		run, r.Compared, r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond), r.InFlight, pct(r.Consistency), r.Unexpected, r.Expected)
	if r.RunID > 0 {
		fmt.Fprintf(w, " (%d new, %d resolved)", r.New, r.Resolved)
	}
	fmt.Fprintln(w, ".")
	fmt.Fprintf(w, "Checksums: %d legacy rows read; %d reports differ, compared key by key.\n", r.RowsScanned, r.ChecksumsDiffer)
	if line := r.kindLine(); line != "" {
		fmt.Fprintln(w, line)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "PHASE\tCOMPARED\tCONSISTENT\tCONSISTENCY\tIN FLIGHT\tUNEXPECTED\tEXPECTED")
	for _, p := range r.Phases {
		var un int64
		for _, n := range p.Unexpected {
			un += n
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\n", p.Phase, p.Compared, p.Consistent, pct(p.Consistency), p.InFlight, un, p.Expected)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Counts)+len(r.ExpectedByRule) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "DIVERGENCE\tCOUNT")
		for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
			fmt.Fprintf(tw, "%s\t%d\n", k, r.Counts[k])
		}
		for _, k := range slices.Sorted(maps.Keys(r.ExpectedByRule)) {
			fmt.Fprintf(tw, "expected (%s)\t%d\n", k, r.ExpectedByRule[k])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	// Unexpected divergences (r.Unexpected, counting deep ones) as they
	// stream by, up to listLimit.
	n := int64(0)
	for d, err := range r.All() {
		if err != nil {
			return err
		}
		if d.Expected {
			continue
		}
		if n == 0 {
			fmt.Fprintln(w)
			fmt.Fprintln(tw, "REPORT\tPHASE\tKIND\tLEGACY\tSHADOW\tDETAIL")
		}
		if listLimit > 0 && n == int64(listLimit) {
			fmt.Fprintf(tw, "... %d more (--format json lists them all)\t\t\t\t\t\n", r.Unexpected-n)
			break
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Key, d.Phase, d.Kind, d.Legacy, d.Shadow, truncate(d.Detail, 100))
	}
	if n > 0 {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	r.writeExtras(w, "")
	return nil
}

func (r *Report) writeExtras(w io.Writer, bullet string) {
	if r.Repair != nil {
		fmt.Fprintf(w, "\n%sRepair: %d reports re-driven from legacy; %d of %d divergences repaired, %d remain.\n",
			bullet, r.Repair.Reports, r.Repair.Repaired, r.Repair.Attempted, len(r.Repair.Remaining))
		for _, d := range r.Repair.Remaining {
			why := "the re-drive from legacy left it: legacy and the workflow still disagree, so look at the workflow (--deep) and the change log"
			if f, ok := r.Repair.Failed[d.Key.String()]; ok {
				why = "the report could not be re-driven: " + f
			} else if slices.Contains(r.Repair.Pending, d.Key) {
				why = "the re-drive had not been applied when the check ran; the running bridge finishes it"
			}
			fmt.Fprintf(w, "%sRemains: %s %s %s: %s (%s).\n", bullet, d.Key, d.Phase, d.Kind, truncate(d.Detail, 160), why)
		}
		for k, f := range r.Repair.Failed {
			if !slices.ContainsFunc(r.Repair.Remaining, func(d dtetype.Divergence) bool { return d.Key.String() == k }) {
				fmt.Fprintf(w, "%sNot re-driven: %s: %s.\n", bullet, k, f)
			}
		}
		if len(r.Repair.NotRepairable) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Repair.NotRepairable)) {
				parts = append(parts, fmt.Sprintf("%d %s", r.Repair.NotRepairable[k], k))
			}
			fmt.Fprintf(w, "%sNot repairable (legacy's own data or findings; a re-drive cannot change them): %s.\n", bullet, strings.Join(parts, ", "))
		}
	}
	if r.Deep != nil {
		fmt.Fprintf(w, "\n%sDeep check: %d workflows queried, %d disagree with their projection.\n", bullet, r.Deep.Queried, r.Deep.Disagreed)
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// WriteMarkdown writes a report a team can paste into a change ticket.
func (r *Report) WriteMarkdown(w io.Writer, listLimit int) error {
	verdict := "No unexpected divergences."
	if r.HasUnexpected() {
		verdict = fmt.Sprintf("**%d unexpected divergences.**", r.Unexpected)
	}
	fmt.Fprintf(w, "## dtebridge reconcile, %s\n\n", r.StartedAt.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%s Consistency %s over %d keys (%d in flight, not counted).", verdict, pct(r.Consistency), r.Compared, r.InFlight)
	if r.RunID > 0 {
		fmt.Fprintf(w, " Run %d: %d new, %d resolved since the previous run.", r.RunID, r.New, r.Resolved)
	}
	fmt.Fprintf(w, "\n\n| Phase | Compared | Consistent | Consistency | In flight | Unexpected | Expected |\n|---|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Phases {
		var un int64
		for _, n := range p.Unexpected {
			un += n
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %d | %d |\n", p.Phase, p.Compared, p.Consistent, pct(p.Consistency), p.InFlight, un, p.Expected)
	}
	if len(r.Counts)+len(r.ExpectedByRule) > 0 {
		fmt.Fprintf(w, "\n| dtetype.Divergence | Count |\n|---|---:|\n")
		for _, k := range slices.Sorted(maps.Keys(r.Counts)) {
			fmt.Fprintf(w, "| %s | %d |\n", k, r.Counts[k])
		}
		for _, k := range slices.Sorted(maps.Keys(r.ExpectedByRule)) {
			fmt.Fprintf(w, "| expected: %s | %d |\n", k, r.ExpectedByRule[k])
		}
	}
	n := 0
	for d, err := range r.All() {
		if err != nil {
			return err
		}
		if d.Expected {
			continue
		}
		if n == 0 {
			fmt.Fprintf(w, "\n| Report | Phase | Kind | Legacy | Shadow | Detail |\n|---|---|---|---|---|---|\n")
		}
		if listLimit > 0 && n == listLimit {
			fmt.Fprintf(w, "\n_%d more not listed._\n", r.Unexpected-int64(listLimit))
			break
		}
		n++
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", d.Key, d.Phase, d.Kind, md(d.Legacy), md(d.Shadow), md(truncate(d.Detail, 160)))
	}
	r.writeExtras(w, "")
	return nil
}

func md(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "|", `\|`), "\n", " ") }

// Remaining counts the unexpected divergences left: after a repair, those
// it could not fix and those it does not try to.
func (r *Report) Remaining() int64 {
	if r.Repair == nil {
		return r.Unexpected
	}
	return r.Unexpected - int64(r.Repair.Repaired)
}
