// Package cutover moves authority over each phase from legacy to the new
// engine and back: per-phase modes (legacy, shadow, new with a percentage of
// reports), promotions gated by reconcile figures, an audit log of every
// change, engine commands (their actor resolved through the legacy users
// table) and their write-back to legacy rows through the legacy writer.
//
// It must never promote a phase past a failing gate without a recorded,
// forced override, and a rollback must always be possible without data loss.
package cutover
