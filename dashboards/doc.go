// Package dashboards holds the bridge's Grafana dashboards and Prometheus
// alert rules, and the metric definitions they rely on. Every metric is named
// dtebridge_*, carries help text, uses low-cardinality labels only (never a
// report id), and is registered on an injected registry, never the global one.
package dashboards

import _ "embed"

// Alerts is alerts.yml, the Prometheus alerting rules, for processes that
// configure a Prometheus (dtebridge demo --with-prometheus).
//
//go:embed alerts.yml
var Alerts []byte
