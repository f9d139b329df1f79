package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSDKMetricsExport(t *testing.T) {
	m := NewSDKMetrics()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	h := m.Handler().WithTags(map[string]string{"namespace": "default"})
	h.Counter("temporal_request").Inc(2)
	h.WithTags(map[string]string{"operation": "SignalWithStartWorkflowExecution"}).Counter("temporal_request").Inc(3)
	h.Gauge("temporal_num_pollers").Update(4)
	h.Timer("temporal_request_latency").Record(30 * time.Millisecond)
	h.WithTags(map[string]string{"phase": "planning"}).Timer("dtebridge_shadow_phase_duration_seconds").Record(36 * time.Hour)
	want := `
# HELP dtebridge_temporal_request_total Temporal SDK metric temporal_request_total, from the SDK's metrics handler.
# TYPE dtebridge_temporal_request_total counter
dtebridge_temporal_request_total{namespace="default",operation=""} 2
dtebridge_temporal_request_total{namespace="default",operation="SignalWithStartWorkflowExecution"} 3
# HELP dtebridge_temporal_num_pollers Temporal SDK metric temporal_num_pollers, from the SDK's metrics handler.
# TYPE dtebridge_temporal_num_pollers gauge
dtebridge_temporal_num_pollers{namespace="default"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "dtebridge_temporal_request_total", "dtebridge_temporal_num_pollers"); err != nil {
		t.Error(err)
	}
	n, err := testutil.GatherAndCount(reg, "dtebridge_temporal_request_latency_seconds", "dtebridge_shadow_phase_duration_seconds")
	if err != nil || n != 2 {
		t.Errorf("histograms: %d, %v", n, err)
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP dtebridge_shadow_phase_duration_seconds Time phases spent in progress as the shadow observed it (start to completion), by phase.
# TYPE dtebridge_shadow_phase_duration_seconds histogram
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="3600"} 0
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="21600"} 0
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="86400"} 0
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="172800"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="259200"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="432000"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="604800"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="864000"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="1.2096e+06"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="1.8144e+06"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="2.592e+06"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="5.184e+06"} 1
dtebridge_shadow_phase_duration_seconds_bucket{namespace="default",phase="planning",le="+Inf"} 1
dtebridge_shadow_phase_duration_seconds_sum{namespace="default",phase="planning"} 129600
dtebridge_shadow_phase_duration_seconds_count{namespace="default",phase="planning"} 1
`), "dtebridge_shadow_phase_duration_seconds"); err != nil {
		t.Error(err)
	}
}
