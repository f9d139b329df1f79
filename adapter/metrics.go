package adapter

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/synapsedte/dtebridge/internal/telemetry"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// Metrics are the capture reader's Prometheus metrics.
type Metrics struct {
	Read        prometheus.Counter
	Delivered   prometheus.Counter
	Quarantined *prometheus.CounterVec
	Ignored     prometheus.Counter
	Backlog     prometheus.Gauge
	BacklogAge  prometheus.Gauge
	Lag         prometheus.Histogram
	Leader      prometheus.Gauge
	Backfills   prometheus.Counter
	// AttributeRedrives counts reports re-driven because legacy changed
	// one of their attributes.
	AttributeRedrives prometheus.Counter
	Pruned            prometheus.Counter
	Errors            *prometheus.CounterVec
	// DeliveryFailing is how long deliveries to the consumer have been
	// failing, 0 while they work.
	DeliveryFailing prometheus.Gauge
	// DeliveryGrace is capture.delivery_grace, for alerts.
	DeliveryGrace prometheus.Gauge
	// LogicalRead counts row changes decoded from the replication slot,
	// LogicalWritten those written to the change log (log-based capture),
	// and LogicalWriteSeconds times the change log's transactions.
	LogicalRead prometheus.Counter
	// Covered counts logged changes skipped because a backfill or re-drive
	// had already delivered the rows they made (capture floors).
	Covered             prometheus.Counter
	LogicalWritten      prometheus.Counter
	LogicalWriteSeconds prometheus.Histogram
}

// NewMetrics creates the capture metrics and registers them on reg (nil:
// not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Read: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_changes_read_total",
			Help: "Captured legacy changes read from the change table (including redeliveries)."}),
		Delivered: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_changes_delivered_total",
			Help: "Translated changes acknowledged by the downstream consumer."}),
		Quarantined: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_capture_quarantined_total",
			Help: "Changes sent to quarantine, by reason."}, []string{"reason"}),
		Ignored: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_ignored_total",
			Help: "Changes skipped because their phase label is in legacy.ignore_phases."}),
		Backlog: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_capture_backlog_changes",
			Help: "Committed changes not yet acknowledged by the consumer."}),
		BacklogAge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_capture_backlog_age_seconds",
			Help: "Age of the oldest committed change not yet acknowledged (0 when the backlog is empty)."}),
		Lag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_capture_lag_seconds",
			Help:    "Time from the capture trigger recording a change to the consumer acknowledging it.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}}),
		Leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_capture_leader",
			Help: "1 while this process holds capture leadership, else 0."}),
		Backfills: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_backfills_total",
			Help: "Completed backfills (consistent snapshots of the legacy table)."}),
		AttributeRedrives: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_attribute_redrives_total",
			Help: "Reports re-driven because legacy changed one of their attributes (legacy.attributes)."}),
		Pruned: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_pruned_total",
			Help: "Acknowledged changes deleted by retention."}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_capture_errors_total",
			Help: "Errors the capture reader recovered from, by stage: consumer (a batch the consumer refused, redelivered) or reader (leadership lost or a database error; the reader steps down and campaigns again)."},
			[]string{"stage"}),
	}
	m.DeliveryFailing = prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_capture_delivery_failing_seconds",
		Help: "How long deliveries to the shadow have been failing without a success, 0 while they work; past capture.delivery_grace /readyz fails."})
	m.DeliveryGrace = prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_capture_delivery_grace_seconds",
		Help: "How long deliveries may fail before the process is unready (capture.delivery_grace), for alerts."})
	m.LogicalRead = prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_logical_decoded_total",
		Help: "Legacy row changes decoded from the replication slot (capture.mode: logical), including those already in the change log after a restart."})
	m.Covered = prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_covered_total",
		Help: "Changes written by log-based capture after a backfill or re-drive had delivered the rows they made, and so skipped."})
	m.LogicalWritten = prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_capture_logical_written_total",
		Help: "Legacy row changes log-based capture wrote to the change log."})
	m.LogicalWriteSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_capture_logical_write_seconds",
		Help:    "Time to write one group of decoded legacy transactions to the change log.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}})
	m.Errors.WithLabelValues("consumer")
	m.Errors.WithLabelValues("reader")
	for _, r := range legacy.Reasons() {
		m.Quarantined.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Read, m.Delivered, m.Quarantined, m.Ignored, m.Backlog, m.BacklogAge, m.Lag, m.Leader, m.Backfills, m.AttributeRedrives, m.Pruned, m.Errors,
			m.DeliveryFailing, m.DeliveryGrace, m.LogicalRead, m.Covered, m.LogicalWritten, m.LogicalWriteSeconds)
	}
	return m
}

var quarantineDesc = prometheus.NewDesc("dtebridge_capture_quarantine_pending", "Quarantined changes not yet delivered, by reason.", []string{"reason"}, nil)

// NewQuarantineCollector returns the pending quarantine by reason, read
// from the bridge schema at scrape time; every reason is exported, zero
// included.
func NewQuarantineCollector(st *store.Store, log *slog.Logger) prometheus.Collector {
	return &telemetry.Cached{Logger: log, Descs: []*prometheus.Desc{quarantineDesc},
		Read: func(ctx context.Context) ([]prometheus.Metric, error) {
			pending, err := st.QuarantinePendingByReason(ctx)
			if err != nil {
				return nil, err
			}
			var out []prometheus.Metric
			for _, r := range legacy.Reasons() {
				out = append(out, prometheus.MustNewConstMetric(quarantineDesc, prometheus.GaugeValue, float64(pending[r]), r))
				delete(pending, r)
			}
			for r, n := range pending {
				out = append(out, prometheus.MustNewConstMetric(quarantineDesc, prometheus.GaugeValue, float64(n), r))
			}
			return out, nil
		}}
}

var (
	slotExistsDesc   = prometheus.NewDesc("dtebridge_capture_slot_exists", "1 when log-based capture's replication slot exists.", nil, nil)
	slotActiveDesc   = prometheus.NewDesc("dtebridge_capture_slot_active", "1 while a capture leader reads the replication slot.", nil, nil)
	slotRetainedDesc = prometheus.NewDesc("dtebridge_capture_slot_retained_wal_bytes", "WAL the replication slot keeps the server from recycling (from its restart_lsn).", nil, nil)
	slotLagDesc      = prometheus.NewDesc("dtebridge_capture_slot_flush_lag_bytes", "How far the slot's confirmed position trails the server's WAL: what log-based capture has not yet written to the change log.", nil, nil)
)

// NewSlotCollector returns the replication slot's status, read at scrape
// time by every process (a standby too, so an inactive slot shows when no
// leader reads it).
func NewSlotCollector(st *store.Store, lc *Logical, log *slog.Logger) prometheus.Collector {
	return &telemetry.Cached{Logger: log, Descs: []*prometheus.Desc{slotExistsDesc, slotActiveDesc, slotRetainedDesc, slotLagDesc},
		Read: func(ctx context.Context) ([]prometheus.Metric, error) {
			name, err := lc.SlotName(ctx, st.Pool(), st.Schema())
			if err != nil {
				return nil, err
			}
			s, err := Slot(ctx, st.Pool(), name)
			if err != nil {
				return nil, err
			}
			b := func(v bool) float64 {
				if v {
					return 1
				}
				return 0
			}
			return []prometheus.Metric{
				prometheus.MustNewConstMetric(slotExistsDesc, prometheus.GaugeValue, b(s.Exists)),
				prometheus.MustNewConstMetric(slotActiveDesc, prometheus.GaugeValue, b(s.Active)),
				prometheus.MustNewConstMetric(slotRetainedDesc, prometheus.GaugeValue, float64(s.RetainedBytes)),
				prometheus.MustNewConstMetric(slotLagDesc, prometheus.GaugeValue, float64(s.FlushLagBytes)),
			}, nil
		}}
}
