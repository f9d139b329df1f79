package cutover

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Metrics are cutover's metrics in a serving process.
type Metrics struct {
	// Conflicts counts authority conflicts by phase.
	Conflicts *prometheus.CounterVec
	// Commands counts engine commands by phase and outcome.
	Commands                 *prometheus.CounterVec
	minConsistency, gateRuns prometheus.Gauge
}

// NewMetrics creates cutover's metrics for the phases of the active
// definition and registers them on reg: conflicts, commands, each phase's
// mode and percentage as a read from a (at scrape time), and the gate's
// settings.
func NewMetrics(reg prometheus.Registerer, a *Authority, phases []dtetype.Phase, gate GateConfig) *Metrics {
	m := &Metrics{
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_cutover_authority_conflicts_total",
			Help: "Legacy writes to a phase and report the new engine owns, by phase."}, []string{"phase"}),
		Commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_cutover_commands_total",
			Help: "Engine commands by phase and outcome (accepted, rejected, failed)."}, []string{"phase", "outcome"}),
	}
	for _, p := range phases {
		m.Conflicts.WithLabelValues(string(p))
		for _, o := range []string{"accepted", "rejected", "failed"} {
			m.Commands.WithLabelValues(string(p), o)
		}
	}
	minConsistency := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_cutover_gate_min_consistency",
		Help: "The promotion gate's consistency threshold (cutover.gate.min_consistency), for dashboards and alerts."})
	gateRuns := prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_cutover_gate_runs",
		Help: "Reconcile runs the promotion gate needs (cutover.gate.runs)."})
	m.minConsistency, m.gateRuns = minConsistency, gateRuns
	m.SetGate(gate)
	reg.MustRegister(m.Conflicts, m.Commands, &modeCollector{a: a, phases: phases}, minConsistency, gateRuns)
	return m
}

// SetGate exports the gate's settings (again, after a reload).
func (m *Metrics) SetGate(gate GateConfig) {
	m.minConsistency.Set(gate.MinConsistency)
	m.gateRuns.Set(float64(gate.Runs))
}

// modeCollector exports each phase's cutover mode and percentage as they
// are when scraped, for every phase of the active definition.
type modeCollector struct {
	a      *Authority
	phases []dtetype.Phase
}

var (
	modeDesc = prometheus.NewDesc("dtebridge_cutover_mode", "1 for the mode each phase is in (legacy, shadow or new), 0 for the others; phases never set are in shadow.",
		[]string{"phase", "mode"}, nil)
	percentDesc = prometheus.NewDesc("dtebridge_cutover_percent", "Percentage of reports on the new engine, per phase (0 unless the phase is in mode new).",
		[]string{"phase"}, nil)
)

func (c *modeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- modeDesc
	ch <- percentDesc
}

func (c *modeCollector) Collect(ch chan<- prometheus.Metric) {
	modes := c.a.Modes()
	for _, p := range c.phases {
		m := dtetype.ModeOf(modes, p)
		for _, mode := range dtetype.Modes() {
			v := 0.0
			if m.Mode == mode {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(modeDesc, prometheus.GaugeValue, v, string(p), mode)
		}
		pct := 0.0
		if m.Mode == dtetype.ModeNew {
			pct = float64(m.Percent)
		}
		ch <- prometheus.MustNewConstMetric(percentDesc, prometheus.GaugeValue, pct, string(p))
	}
}
