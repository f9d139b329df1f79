// Package legacy is the legacy database as the configuration describes it:
// the phase table, its columns by role and what its labels mean (Table),
// reading its rows in canonical terms (Translator, SnapshotSQL), who its
// users are and what role they hold (Users), and writing its rows exactly
// as the legacy application does (Writer), which cutover's write-back and
// the revert conflict policy use.
//
// Everything here is driven by the configured table, never by the shipped
// label profiles: a legacy database with labels, enum types, key columns
// and users table of its own works without code changes. The profiles, the
// demo schemas and the traffic simulator live in internal/legacysim, for
// the demo, tests and benchmarks only.
//
// It must never write a row the legacy application would not write, and it
// writes only when cutover has made the new engine authoritative.
package legacy
