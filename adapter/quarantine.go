package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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
	return res, nil
}

// deliverReleased delivers, in order, the quarantined changes of every
// report that has released ones: the released changes, then the held ones
// behind them that now translate, up to the first that does not.
func (l *leader) deliverReleased(ctx context.Context) error {
	pending, err := l.st.ReleasedQuarantine(ctx)
	if err != nil || len(pending) == 0 {
		return err
	}
	var out []dtetype.PhaseChange
	var ids []string
	blocked := map[dtetype.Key]bool{}
	seq := l.cp.Seq
	for _, e := range pending {
		var key dtetype.Key
		if e.Key != nil {
			key = *e.Key
		}
		if blocked[key] {
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
			t := l.tr.Translate(&raw)
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
