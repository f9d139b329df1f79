package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// RetryResult counts what a retry did.
type RetryResult struct {
	// Released changes translate now; the leader delivers them in order.
	Released int `json:"released"`
	// Remaining changes still fail, by reason, or wait behind one that does.
	Remaining map[string]int `json:"remaining"`
}

// RetryQuarantine re-translates pending quarantined changes with tr, for
// example after the mapping was extended. Per report it releases changes in
// order up to the first that still fails, so a report's changes are never
// delivered out of order. The running leader delivers released changes.
func RetryQuarantine(ctx context.Context, st *store.Store, tr *legacy.Translator) (*RetryResult, error) {
	res := &RetryResult{Remaining: map[string]int{}}
	err := st.InTx(ctx, func(tx *store.Store) error {
		pending, err := tx.LockPendingQuarantine(ctx)
		if err != nil {
			return err
		}
		blocked := map[dtetype.Key]bool{}
		for _, e := range pending {
			if e.Released {
				continue
			}
			if e.Key != nil && blocked[*e.Key] {
				res.Remaining[e.Reason]++
				continue
			}
			var raw legacy.RawChange
			if err := json.Unmarshal(e.Raw, &raw); err != nil {
				return fmt.Errorf("quarantined change %s has an unreadable raw value: %w", e.EventID, err)
			}
			t := tr.Translate(&raw)
			switch {
			case t.Ignored:
				// The mapping now ignores this phase: nothing to deliver.
				if err := tx.SkipQuarantined(ctx, e.EventID); err != nil {
					return err
				}
			case t.Err != nil:
				if err := tx.StillQuarantined(ctx, e.EventID, t.Err.Reason, t.Err.Detail); err != nil {
					return err
				}
				res.Remaining[t.Err.Reason]++
				if e.Key != nil {
					blocked[*e.Key] = true
				}
			default:
				pc := t.Change
				pc.EventID = e.EventID
				translated, err := json.Marshal(pc)
				if err != nil {
					return err
				}
				if err := tx.ReleaseQuarantined(ctx, e.EventID, translated); err != nil {
					return err
				}
				res.Released++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res.Released > 0 {
		// The running leader delivers them at once rather than at its next poll.
		if err := st.WakeCapture(ctx); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// deliverReleased delivers, in order, the quarantined changes of every
// report that has released ones: the released changes, then the held ones
// behind them that now translate, up to the first that does not.
func (l *leader) deliverReleased(ctx context.Context) error {
	if !l.ownsQuarantine() {
		return nil
	}
	pending, err := l.st.ReleasedQuarantine(ctx)
	if err != nil || len(pending) == 0 {
		return err
	}
	var out []dtetype.PhaseChange
	var ids []string
	blocked := map[dtetype.Key]bool{}
	// A report the mirror delivered changes of after its entries were
	// quarantined would go back in time if they were delivered now: its
	// entries are superseded, and the report re-driven from legacy instead.
	stale := map[dtetype.Key][]string{}
	for _, e := range pending {
		if e.Key != nil && e.DeliveredSeq > e.Seq {
			stale[*e.Key] = append(stale[*e.Key], e.EventID)
		}
	}
	if len(stale) > 0 {
		var keys []dtetype.Key
		for k, ids := range stale {
			if _, err := l.st.SupersedeQuarantined(ctx, ids, store.ResolveResync, "dtebridge",
				"the report's later changes were delivered meanwhile; re-driven from legacy instead"); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		if _, err := l.st.RequestRedrives(ctx, store.RedriveRequest{Keys: keys, Reason: store.RedriveQuarantine, RequestedBy: "quarantine release"}); err != nil {
			return err
		}
		l.redrives = true
		if l.held, err = l.st.HeldKeys(ctx); err != nil {
			return err
		}
	}
	seq := l.cp.Seq
	for _, e := range pending {
		var key dtetype.Key
		if e.Key != nil {
			key = *e.Key
		}
		if blocked[key] || len(stale[key]) > 0 {
			continue
		}
		var pc dtetype.PhaseChange
		if e.Translated != nil {
			if err := json.Unmarshal(e.Translated, &pc); err != nil {
				return fmt.Errorf("released change %s is unreadable: %w", e.EventID, err)
			}
		} else {
			var raw legacy.RawChange
			if err := json.Unmarshal(e.Raw, &raw); err != nil {
				return fmt.Errorf("quarantined change %s is unreadable: %w", e.EventID, err)
			}
			t := l.tr.Load().Translate(&raw)
			if t.Err != nil || t.Ignored {
				blocked[key] = true
				if t.Err != nil {
					if err := l.st.SetQuarantineReason(ctx, e.EventID, t.Err.Reason, t.Err.Detail); err != nil {
						return err
					}
				}
				continue
			}
			pc = *t.Change
			pc.EventID = e.EventID
		}
		seq++
		pc.Seq = seq
		out = append(out, pc)
		ids = append(ids, e.EventID)
	}
	if len(out) == 0 {
		return nil
	}
	if err := l.c.Deliver(ctx, Batch{Changes: out}); err != nil {
		var pe *PoisonError
		if !errors.As(err, &pe) {
			return &consumerError{err}
		}
		// The refused entries stay in quarantine, now for their size, and
		// their reports' later entries behind them.
		var refused []dtetype.PhaseChange
		out, refused, _ = splitPoisoned(out, pe)
		for _, p := range pe.Poisoned {
			if err := l.st.RefuseQuarantined(ctx, p.EventID, p.Reason, "Temporal refuses this change for good: "+p.Detail); err != nil {
				return err
			}
		}
		skip := map[string]bool{}
		for _, c := range refused {
			skip[c.EventID] = true
		}
		ids = slices.DeleteFunc(ids, func(id string) bool { return skip[id] })
	}
	if err := l.st.QuarantineDelivered(ctx, ids); err != nil {
		return err
	}
	l.m.Delivered.Add(float64(len(out)))
	l.cp.Seq = seq
	if err := l.save(ctx, false); err != nil {
		return err
	}
	l.log.Info("released quarantined changes delivered", "changes", len(out))
	l.held, err = l.st.HeldKeys(ctx)
	return err
}

// Resolution is what resolving a quarantined change did.
type Resolution struct {
	// Resolved are the entries resolved (the report's pending ones, for a
	// resync).
	Resolved []string `json:"resolved"`
	// Retry is what the retry that follows a skip released.
	Retry *RetryResult `json:"retry,omitempty"`
	// Redrive is the outcome of a resync's re-drive.
	Redrive *RedriveResult `json:"redrive,omitempty"`
}

// ResolveQuarantine resolves a pending quarantined change as an operator
// asks, audited with who and why. store.ResolveSkip drops it and releases
// the report's changes held behind it that now translate (with tr);
// store.ResolveResync drops the report's pending changes and re-drives the
// report from its legacy rows as they stand, waiting up to wait for the
// shadow to apply it (without a running serve the re-drive waits for one).
func ResolveQuarantine(ctx context.Context, st *store.Store, tr *legacy.Translator, eventID, action, by, reason string, wait time.Duration) (*Resolution, error) {
	if strings.TrimSpace(by) == "" || strings.TrimSpace(reason) == "" {
		return nil, errors.New("resolving a quarantined change needs an actor and a reason (they are recorded)")
	}
	ids, key, err := st.ResolveQuarantined(ctx, eventID, action, by, reason)
	if err != nil {
		return nil, err
	}
	res := &Resolution{Resolved: ids}
	switch action {
	case store.ResolveSkip:
		res.Retry, err = RetryQuarantine(ctx, st, tr)
		return res, err
	case store.ResolveResync:
		if key == nil {
			return res, nil // nothing to re-drive: the change had no report
		}
		rids, err := st.RequestRedrives(ctx, store.RedriveRequest{Keys: []dtetype.Key{*key}, Reason: store.RedriveQuarantine, RequestedBy: by})
		if err != nil {
			return nil, err
		}
		alive, err := st.LeaderAlive(ctx, store.MirrorConsumer)
		if err != nil || !alive {
			return res, err
		}
		res.Redrive, err = AwaitRedrives(ctx, st, rids, wait)
		return res, err
	}
	return res, nil
}
