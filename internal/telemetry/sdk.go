// Package telemetry carries the Temporal SDK's metrics into the bridge's
// Prometheus registry, and gives the parts that export figures read from
// the bridge schema at scrape time one cached collector (Cached).
//
// The SDK emits counters, gauges and timers through a client.MetricsHandler
// with free-form tags. SDKMetrics is such a handler and, at the same time, a
// prometheus.Collector: every name becomes a dtebridge_-prefixed family
// (counters get _total, timers become histograms in seconds), and every tag
// a label. Workflow code reaches the same handler through
// workflow.GetMetricsHandler, which stays silent during replay, so the
// shadow's own metrics (rule violations, phase durations) are counted once.
package telemetry

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// Prefix starts every family the bridge exports.
const Prefix = "dtebridge_"

type kind int

const (
	counter kind = iota
	gauge
	timer
)

// latencyBuckets suit the SDK's request and task latencies, in seconds.
var latencyBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// phaseBuckets suit phase durations: an hour to two months.
var phaseBuckets = []float64{3600, 6 * 3600, 86400, 2 * 86400, 3 * 86400, 5 * 86400, 7 * 86400, 10 * 86400, 14 * 86400,
	21 * 86400, 30 * 86400, 60 * 86400}

// help gives the bridge's own SDK-emitted families their help text.
var help = map[string]string{
	"dtebridge_shadow_rule_violations_total":  "Changes the shadow judged against the definition and found breaking a rule, by phase and rule.",
	"dtebridge_shadow_phase_duration_seconds": "Time phases spent in progress as the shadow observed it (start to completion), by phase.",
}

// SDKMetrics is a client.MetricsHandler that a Prometheus registry collects.
type SDKMetrics struct {
	mu       sync.Mutex
	families map[string]*family
}

type family struct {
	name   string
	kind   kind
	series map[string]*series
}

type series struct {
	mu      sync.Mutex
	labels  map[string]string
	value   float64
	buckets []float64
	counts  []uint64
	sum     float64
	count   uint64
}

// NewSDKMetrics returns an empty handler and collector.
func NewSDKMetrics() *SDKMetrics { return &SDKMetrics{families: map[string]*family{}} }

// Handler returns the root client.MetricsHandler.
func (m *SDKMetrics) Handler() client.MetricsHandler { return &handler{m: m} }

type handler struct {
	m    *SDKMetrics
	tags map[string]string
}

func (h *handler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := maps.Clone(h.tags)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, tags)
	return &handler{m: h.m, tags: merged}
}

func (h *handler) Counter(name string) client.MetricsCounter {
	s := h.m.series(familyName(name, counter), counter, h.tags)
	return counterFunc(func(d int64) {
		s.mu.Lock()
		s.value += float64(d)
		s.mu.Unlock()
	})
}

func (h *handler) Gauge(name string) client.MetricsGauge {
	s := h.m.series(familyName(name, gauge), gauge, h.tags)
	return gaugeFunc(func(v float64) {
		s.mu.Lock()
		s.value = v
		s.mu.Unlock()
	})
}

func (h *handler) Timer(name string) client.MetricsTimer {
	s := h.m.series(familyName(name, timer), timer, h.tags)
	return timerFunc(func(d time.Duration) {
		v := d.Seconds()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sum += v
		s.count++
		for i, b := range s.buckets {
			if v <= b {
				s.counts[i]++
			}
		}
	})
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// familyName maps an SDK name to the exported family name.
func familyName(name string, k kind) string {
	name = strings.ReplaceAll(name, ".", "_")
	if !strings.HasPrefix(name, Prefix) {
		name = Prefix + name
	}
	switch {
	case k == counter && !strings.HasSuffix(name, "_total"):
		name += "_total"
	case k == timer && !strings.HasSuffix(name, "_seconds"):
		name += "_seconds"
	}
	return name
}

func (m *SDKMetrics) series(name string, k kind, tags map[string]string) *series {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.families[name]
	if f == nil {
		f = &family{name: name, kind: k, series: map[string]*series{}}
		m.families[name] = f
	}
	key := labelKey(tags)
	s := f.series[key]
	if s == nil {
		s = &series{labels: maps.Clone(tags)}
		if k == timer {
			s.buckets = latencyBuckets
			if strings.Contains(name, "phase_duration") {
				s.buckets = phaseBuckets
			}
			s.counts = make([]uint64, len(s.buckets))
		}
		f.series[key] = s
	}
	return s
}

func labelKey(tags map[string]string) string {
	keys := slices.Sorted(maps.Keys(tags))
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(tags[k])
		b.WriteByte(0)
	}
	return b.String()
}

// Names returns the families emitted so far, sorted.
func (m *SDKMetrics) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.families))
}

// Describe sends nothing: the families appear as the SDK emits them, so
// this is an unchecked collector.
func (m *SDKMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect exports every series. Within a family every series carries the
// union of the family's label names (missing ones empty), as Prometheus
// requires.
func (m *SDKMetrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	fams := make([]*family, 0, len(m.families))
	for _, f := range m.families {
		fams = append(fams, f)
	}
	m.mu.Unlock()
	for _, f := range fams {
		m.mu.Lock()
		all := make([]*series, 0, len(f.series))
		names := map[string]bool{}
		for _, s := range f.series {
			all = append(all, s)
			for k := range s.labels {
				names[k] = true
			}
		}
		m.mu.Unlock()
		labelNames := slices.Sorted(maps.Keys(names))
		h := help[f.name]
		if h == "" {
			h = "Temporal SDK metric " + strings.TrimPrefix(f.name, Prefix) + ", from the SDK's metrics handler."
		}
		desc := prometheus.NewDesc(f.name, h, labelNames, nil)
		for _, s := range all {
			values := make([]string, len(labelNames))
			for i, n := range labelNames {
				values[i] = s.labels[n]
			}
			s.mu.Lock()
			switch f.kind {
			case counter:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, s.value, values...)
			case gauge:
				ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, s.value, values...)
			case timer:
				b := make(map[float64]uint64, len(s.buckets))
				for i, ub := range s.buckets {
					b[ub] = s.counts[i]
				}
				ch <- prometheus.MustNewConstHistogram(desc, s.count, s.sum, b, values...)
			}
			s.mu.Unlock()
		}
	}
}
