// Package dashboards holds the bridge's Grafana dashboards, its Prometheus
// alert rules (with promtool unit tests) and the reference of every metric
// (README.md). The metrics themselves are defined next to the code that
// counts them; every one is named dtebridge_*, carries help text, uses
// low-cardinality labels only (never a report id), and is registered on the
// serving process's own registry, never the global one. The tests here prove
// the dashboards and rules against a real Prometheus.
package dashboards

import _ "embed"

// Alerts is alerts.yml, the Prometheus alerting rules, for processes that
// configure a Prometheus (dtebridge demo --with-prometheus).
//
//go:embed alerts.yml
var Alerts []byte
