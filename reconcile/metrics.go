package reconcile

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/telemetry"
	"github.com/synapsedte/dtebridge/store"
)

var (
	runsDesc         = prometheus.NewDesc("dtebridge_reconcile_runs_total", "Reconcile runs recorded (scheduled and on demand).", nil, nil)
	lastDurationDesc = prometheus.NewDesc("dtebridge_reconcile_last_duration_seconds", "Duration of the last recorded reconcile run.", nil, nil)
	lastSuccessDesc  = prometheus.NewDesc("dtebridge_reconcile_last_success_timestamp_seconds", "Unix time the last recorded reconcile run finished.", nil, nil)
	comparedDesc     = prometheus.NewDesc("dtebridge_reconcile_rows_compared_total", "Legacy keys compared by recorded reconcile runs, in all.", nil, nil)
	lastComparedDesc = prometheus.NewDesc("dtebridge_reconcile_last_rows_compared", "Legacy keys the last recorded reconcile run compared.", nil, nil)
	newDesc          = prometheus.NewDesc("dtebridge_reconcile_new_divergences_total", "Divergences first seen by a recorded run, in all.", nil, nil)
	resolvedDesc     = prometheus.NewDesc("dtebridge_reconcile_resolved_divergences_total", "Divergences a recorded run no longer found, in all.", nil, nil)
	consistencyDesc  = prometheus.NewDesc("dtebridge_reconcile_consistency_ratio", "Consistent keys over compared keys per phase, from the last recorded run that covered the phase (the cutover gate's figure).",
		[]string{"phase"}, nil)
	divergencesDesc = prometheus.NewDesc("dtebridge_reconcile_divergences", "Open divergences (as the last run that saw them left them, plus authority conflicts), by phase, kind, and whether a reconcile.expected rule accepts them.",
		[]string{"phase", "kind", "expected"}, nil)
)

// NewCollector returns the reconcile figures the bridge schema records,
// whichever process wrote them (scheduled runs and dtebridge reconcile
// alike), read at scrape time, for the phases of the active definition.
func NewCollector(st *store.Store, phases []dtetype.Phase, log *slog.Logger) prometheus.Collector {
	return &telemetry.Cached{Logger: log,
		Descs: []*prometheus.Desc{runsDesc, lastDurationDesc, lastSuccessDesc, comparedDesc, lastComparedDesc, newDesc, resolvedDesc, consistencyDesc, divergencesDesc},
		Read: func(ctx context.Context) ([]prometheus.Metric, error) {
			var out []prometheus.Metric
			gauge := func(d *prometheus.Desc, v float64, labels ...string) {
				out = append(out, prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...))
			}
			counter := func(d *prometheus.Desc, v float64) {
				out = append(out, prometheus.MustNewConstMetric(d, prometheus.CounterValue, v))
			}
			totals, err := st.ReconcileTotals(ctx)
			if err != nil {
				return nil, err
			}
			counter(runsDesc, float64(totals.Runs))
			counter(comparedDesc, float64(totals.Compared))
			counter(newDesc, float64(totals.New))
			counter(resolvedDesc, float64(totals.Resolved))
			recent, err := GateRuns(ctx, st, 50)
			if err != nil {
				return nil, err
			}
			if len(recent) > 0 {
				last := recent[0]
				gauge(lastDurationDesc, last.Duration.Seconds())
				gauge(lastSuccessDesc, float64(last.FinishedAt.UnixNano())/1e9)
				gauge(lastComparedDesc, float64(last.Compared))
			}
			for _, p := range phases {
			runs:
				for _, r := range recent {
					if !r.FullOf(p) {
						continue // the gate's figure comes from full runs
					}
					for _, pr := range r.Phases {
						if pr.Phase == p && pr.Compared > 0 {
							gauge(consistencyDesc, pr.Consistency, string(p))
							break runs
						}
					}
				}
			}
			// Every phase and kind is exported, zero included, so a divergence
			// appearing is a change of value, not a new series.
			open := map[[3]string]float64{}
			for _, p := range phases {
				for _, k := range dtetype.Kinds() {
					open[[3]string{string(p), k, "false"}] = 0
				}
			}
			counts, err := st.OpenDivergenceCounts(ctx)
			if err != nil {
				return nil, err
			}
			for _, c := range counts {
				open[[3]string{string(c.Phase), c.Kind, strconv.FormatBool(c.Expected)}] = float64(c.N)
			}
			for k, v := range open {
				gauge(divergencesDesc, v, k[0], k[1], k[2])
			}
			return out, nil
		}}
}
