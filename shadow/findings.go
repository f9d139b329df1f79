package shadow

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/telemetry"
	"github.com/synapsedte/dtebridge/store"
)

// Finding is how often the shadow found one rule of the definition broken
// in one phase, and in which reports. Historical findings were judged from
// the legacy history a backfill delivered; live ones are violations of
// changes the shadow saw happen (each report's recent window).
type Finding struct {
	Origin   string        `json:"origin"`
	Phase    dtetype.Phase `json:"phase"`
	Rule     string        `json:"rule"`
	Findings int64         `json:"findings"`
	Reports  int64         `json:"reports"`
	// Keys are the reports involved (up to the limit asked for).
	Keys []dtetype.Key `json:"report_keys"`
}

// Finding origins.
const (
	OriginHistorical = "historical"
	OriginLive       = "live"
)

// FindingsReport is the findings of every report's shadow, by origin, then
// phase in the definition's order, then rule.
type FindingsReport struct {
	GeneratedAt time.Time `json:"generated_at"`
	Definition  string    `json:"definition"`
	// Phase is the phase asked for; empty for all.
	Phase dtetype.Phase `json:"phase,omitempty"`
	// Historical and Live total the findings (and Reports the reports
	// with any) of each origin.
	Historical        int64     `json:"historical"`
	HistoricalReports int64     `json:"historical_reports"`
	Live              int64     `json:"live"`
	Findings          []Finding `json:"findings"`
}

// Findings reads the findings of every report's shadow from the
// projection, of one phase if phase is set, naming up to limit reports per
// rule (all with 0).
func Findings(ctx context.Context, st *store.Store, d *dtetype.Definition, phase dtetype.Phase, limit int) (*FindingsReport, error) {
	counts, err := st.Findings(ctx, phase, limit)
	if err != nil {
		return nil, err
	}
	r := &FindingsReport{GeneratedAt: time.Now().UTC(), Definition: d.Key(), Phase: phase, Findings: []Finding{}}
	if r.HistoricalReports, err = st.HistoricalReports(ctx, phase); err != nil {
		return nil, err
	}
	for _, c := range counts {
		f := Finding{Origin: OriginLive, Phase: c.Phase, Rule: c.Rule, Findings: c.Findings, Reports: c.Reports, Keys: c.Keys}
		if f.Keys == nil {
			f.Keys = []dtetype.Key{}
		}
		if c.Historical {
			f.Origin = OriginHistorical
			r.Historical += c.Findings
		} else {
			r.Live += c.Findings
		}
		r.Findings = append(r.Findings, f)
	}
	order := func(p dtetype.Phase) int {
		if i := slices.IndexFunc(d.Phases, func(x dtetype.PhaseDef) bool { return x.ID == p }); i >= 0 {
			return i
		}
		return len(d.Phases)
	}
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if a.Origin != b.Origin {
			return strings.Compare(a.Origin, b.Origin) // historical first
		}
		if oa, ob := order(a.Phase), order(b.Phase); oa != ob {
			return oa - ob
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	return r, nil
}

func keyList(keys []dtetype.Key, total int64) string {
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k.String()
	}
	s := strings.Join(parts, " ")
	if int64(len(keys)) < total {
		s += fmt.Sprintf(" … (%d more)", total-int64(len(keys)))
	}
	return s
}

func (r *FindingsReport) summary() string {
	return fmt.Sprintf("%d historical findings in %d reports (judged from the legacy history the backfill delivered); %d live findings (recent changes legacy let through)",
		r.Historical, r.HistoricalReports, r.Live)
}

// WriteTable writes the report as a table.
func (r *FindingsReport) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "Findings under %s: %s.\n", r.Definition, r.summary())
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "No findings.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nORIGIN\tPHASE\tRULE\tFINDINGS\tREPORTS\tREPORT KEYS")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", f.Origin, f.Phase, f.Rule, f.Findings, f.Reports, keyList(f.Keys, f.Reports))
	}
	return tw.Flush()
}

// WriteMarkdown writes the report for a change ticket.
func (r *FindingsReport) WriteMarkdown(w io.Writer) error {
	fmt.Fprintf(w, "## Findings under %s\n\n%s.\n\n", r.Definition, r.summary())
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "No findings.")
		return err
	}
	fmt.Fprintln(w, "| Origin | Phase | Rule | Findings | Reports | Report keys |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---|")
	for _, f := range r.Findings {
		fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s |\n", f.Origin, f.Phase, f.Rule, f.Findings, f.Reports, keyList(f.Keys, f.Reports))
	}
	return nil
}

var findingsDesc = prometheus.NewDesc("dtebridge_shadow_findings", "The shadow's findings by origin (historical: judged from the legacy history a backfill delivered; live: violations of recent legacy changes), phase and rule.",
	[]string{"origin", "phase", "rule"}, nil)

var findingReportsDesc = prometheus.NewDesc("dtebridge_shadow_finding_reports", "Reports with findings, by origin, phase and rule.",
	[]string{"origin", "phase", "rule"}, nil)

// NewFindingsCollector exports the findings, read from the projection at
// scrape time (cached).
func NewFindingsCollector(st *store.Store, log *slog.Logger) prometheus.Collector {
	return &telemetry.Cached{Logger: log, Descs: []*prometheus.Desc{findingsDesc, findingReportsDesc}, CacheFor: 15 * time.Second,
		Read: func(ctx context.Context) ([]prometheus.Metric, error) {
			counts, err := st.Findings(ctx, "", 1)
			if err != nil {
				return nil, err
			}
			var out []prometheus.Metric
			for _, c := range counts {
				origin := OriginLive
				if c.Historical {
					origin = OriginHistorical
				}
				out = append(out,
					prometheus.MustNewConstMetric(findingsDesc, prometheus.GaugeValue, float64(c.Findings), origin, string(c.Phase), c.Rule),
					prometheus.MustNewConstMetric(findingReportsDesc, prometheus.GaugeValue, float64(c.Reports), origin, string(c.Phase), c.Rule))
			}
			return out, nil
		}}
}
