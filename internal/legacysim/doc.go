// Package legacysim models the legacy SynapseDTE application for the demo,
// tests and benchmarks: its schema in the two label profiles found in the
// field, the way its orchestrator writes workflow_phases rows, and a traffic
// simulator that drives that model.
//
// The model exists so that the rest of the bridge can be tested against rows
// written exactly as production writes them, quirks included (see LEGACY.md):
// overrides that leave the base state alone, four forms of reopen, a
// status-only complete, a schedule-status rule that calls the last 24 hours
// before a deadline on schedule, and only two enforced gates. It is the
// independent oracle the production writer (package legacy) is checked
// against.
//
// It must never be used against a real SynapseDTE database: it writes rows.
// The bridge proper reads and writes legacy data only through package legacy
// and the configured mapping, never through these Go profiles.
package legacysim
