// Package shadow holds the config-driven workflow definitions (YAML) and the
// shadow workflow that runs them on Temporal: one workflow per (cycle,
// report) that follows legacy, judges each change against the definition's
// rules, computes its own schedule status, and projects its state into the
// bridge schema.
//
// Workflow code here must stay deterministic: no I/O, no wall clock, no map
// iteration where order matters. While a phase is in shadow mode the shadow
// only observes; it never writes to legacy.
package shadow
