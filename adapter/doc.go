// Package adapter connects the legacy database to the shadow. It attaches
// change capture to the legacy table (install), reads the captured changes
// gap-free and in per-report order with one leader and hot standbys
// (reader.go explains how), translates them through the configured mapping
// (package legacy), puts what it cannot translate in quarantine with its
// raw row, mirrors the rest into Temporal, and serves re-drives: the one
// way to rebuild a report's shadow from legacy truth (redrive.go).
//
// It must never lose or silently drop a change: data it does not understand
// goes to quarantine with its raw row. It must never write to legacy tables;
// writing legacy rows belongs to package legacy, and only cutover asks it to.
package adapter
