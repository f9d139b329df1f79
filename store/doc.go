// Package store owns the bridge's own schema (dtebridge.* by default): its
// numbered migrations (migrations/*.sql, applied with tern), and every query
// against it, as named SQL in sql/*.sql beside the typed Go methods that run
// them, the shape of river's driver package. Every other package reads and
// writes bridge tables through a Store; none embeds SQL against them.
//
// The schema name comes from the configuration and is rendered into the
// queries once. Values always travel as arguments; the only text spliced
// into SQL is the quoted schema name and, for the few queries whose shape
// follows the legacy table (the capture triggers and reconcile's legacy
// side), fragments built from quoted configured identifiers.
//
// It must never read or write legacy rows: it knows the legacy table only
// as a name to attach capture to, and as the fragments reconcile hands it.
package store
