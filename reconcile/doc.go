// Package reconcile compares legacy rows with the shadow projection, key by
// key, classifies every divergence, reports consistency per phase, and
// repairs divergent keys by re-driving them from legacy truth (through
// adapter.Redrive, the one re-drive path). It builds the legacy side of the
// comparison from the configured table; the store owns the bridge side.
//
// It must treat keys whose changes are still in flight as in flight, not as
// divergences, and it must keep memory bounded whatever the table size.
package reconcile
