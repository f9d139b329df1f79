// Package dtetype holds the canonical domain model of dtebridge: the key of a
// report's workflow, canonical phases, states and schedule statuses, and the
// pure rules that every other part shares.
//
// It is a leaf package. It performs no I/O and imports nothing from the rest of
// the module, so every other package can depend on it without cycles. Legacy
// labels never appear here: they reach these types only through a configured
// mapping.
package dtetype
