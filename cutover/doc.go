// Package cutover moves authority over each phase from legacy to the new
// engine and back: per-phase modes (legacy, shadow, new with a percentage of
// reports), promotions gated by reconcile figures, an audit log of every
// change, and write-back of engine commands to legacy rows.
//
// It must never promote a phase past a failing gate without a recorded,
// forced override, and a rollback must always be possible without data loss.
package cutover
