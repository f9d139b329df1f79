// Package legacy models the legacy SynapseDTE application: its schema, in the
// two label profiles found in the field, the way its orchestrator writes
// workflow_phases rows, and a traffic simulator that drives that model.
//
// The model exists so that the rest of the bridge can be tested against rows
// written exactly as production writes them, quirks included (see LEGACY.md):
// overrides that leave the base state alone, four forms of reopen, a
// status-only complete, a schedule-status rule that calls the last 24 hours
// before a deadline on schedule, and only two enforced gates.
//
// It must never be used against a real SynapseDTE database: it writes rows.
// The bridge proper reads legacy data only through the adapter and its
// configured label mapping, never through this package's Go profiles.
package legacy
