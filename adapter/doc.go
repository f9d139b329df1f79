// Package adapter connects the legacy database to the bridge. It captures
// every change to the legacy workflow_phases table through a trigger into the
// bridge's own schema, reads the changes gap-free and in per-report order,
// translates legacy labels to canonical values through the configured
// profile mapping, and mirrors the resulting phase changes into Temporal.
//
// It must never lose or silently drop a change: data it does not understand
// goes to quarantine with its raw row. It must never write to legacy tables;
// write-back belongs to cutover.
package adapter
