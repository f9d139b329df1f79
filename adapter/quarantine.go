package adapter

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
)

// QuarantineEntry is one quarantined change.
type QuarantineEntry struct {
	EventID       string          `json:"event_id"`
	ChangeID      *int64          `json:"change_id,omitempty"`
	Key           *dtetype.Key    `json:"key,omitempty"`
	Reason        string          `json:"reason"`
	Detail        string          `json:"detail"`
	Raw           json.RawMessage `json:"raw"`
	QuarantinedAt time.Time       `json:"quarantined_at"`
	RetriedAt     *time.Time      `json:"retried_at,omitempty"`
	ReleasedAt    *time.Time      `json:"released_at,omitempty"`
	DeliveredAt   *time.Time      `json:"delivered_at,omitempty"`
}

// Status is pending, released (translated by a retry, waiting for the
// leader to deliver it) or delivered.
func (e *QuarantineEntry) Status() string {
	switch {
	case e.DeliveredAt != nil:
		return "delivered"
	case e.ReleasedAt != nil:
		return "released"
	}
	return "pending"
}

// ListQuarantine returns the quarantined changes not yet delivered (all of
// them with all), oldest first.
func ListQuarantine(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, all bool) ([]QuarantineEntry, error) {
	cfg = cfg.withDefaults()
	q := `SELECT event_id, change_id, cycle_id, report_id, reason, detail, raw, quarantined_at, retried_at, released_at, delivered_at
		FROM ` + pgx.Identifier{cfg.Schema}.Sanitize() + `.quarantine WHERE $1 OR delivered_at IS NULL ORDER BY seq`
	rows, err := db.Query(ctx, q, all)
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	defer rows.Close()
	var out []QuarantineEntry
	for rows.Next() {
		var e QuarantineEntry
		var cycle, report *int64
		var raw []byte
		if err := rows.Scan(&e.EventID, &e.ChangeID, &cycle, &report, &e.Reason, &e.Detail, &raw, &e.QuarantinedAt,
			&e.RetriedAt, &e.ReleasedAt, &e.DeliveredAt); err != nil {
			return nil, err
		}
		e.Raw = raw
		if cycle != nil && report != nil {
			e.Key = &dtetype.Key{CycleID: *cycle, ReportID: *report}
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

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
func RetryQuarantine(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, tr *Translator) (*RetryResult, error) {
	cfg = cfg.withDefaults()
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	res := &RetryResult{Remaining: map[string]int{}}
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT event_id, cycle_id, report_id, raw, released_at IS NOT NULL, reason FROM `+schema+`.quarantine
			WHERE delivered_at IS NULL ORDER BY cycle_id, report_id, seq FOR UPDATE`)
		if err != nil {
			return fmt.Errorf("error reading quarantine: %w", err)
		}
		type row struct {
			eventID       string
			cycle, report *int64
			raw           []byte
			released      bool
			reason        string
		}
		var all []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.eventID, &r.cycle, &r.report, &r.raw, &r.released, &r.reason); err != nil {
				rows.Close()
				return err
			}
			all = append(all, r)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		blocked := map[dtetype.Key]bool{}
		for _, r := range all {
			var key dtetype.Key
			hasKey := r.cycle != nil && r.report != nil
			if hasKey {
				key = dtetype.Key{CycleID: *r.cycle, ReportID: *r.report}
			}
			if r.released {
				continue
			}
			if hasKey && blocked[key] {
				res.Remaining[r.reason]++
				continue
			}
			var raw RawChange
			if err := json.Unmarshal(r.raw, &raw); err != nil {
				return fmt.Errorf("quarantined change %s has an unreadable raw value: %w", r.eventID, err)
			}
			t := tr.Translate(&raw)
			if t.Ignored {
				// The mapping now ignores this phase: nothing to deliver.
				if _, err := tx.Exec(ctx, `UPDATE `+schema+`.quarantine SET retried_at = now(), released_at = now(), delivered_at = now()
					WHERE event_id = $1`, r.eventID); err != nil {
					return err
				}
				continue
			}
			if t.Err != nil {
				if _, err := tx.Exec(ctx, `UPDATE `+schema+`.quarantine SET retried_at = now(), reason = $2, detail = $3
					WHERE event_id = $1`, r.eventID, t.Err.Reason, t.Err.Detail); err != nil {
					return err
				}
				res.Remaining[t.Err.Reason]++
				if hasKey {
					blocked[key] = true
				}
				continue
			}
			pc := t.Change
			pc.EventID = r.eventID
			translated, err := json.Marshal(pc)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE `+schema+`.quarantine SET retried_at = now(), released_at = now(), translated = $2
				WHERE event_id = $1`, r.eventID, translated); err != nil {
				return err
			}
			res.Released++
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
	rows, err := l.pool.Query(ctx, `SELECT q.event_id, q.cycle_id, q.report_id, q.raw, q.translated FROM `+l.schema+`.quarantine q
		WHERE q.delivered_at IS NULL AND (q.released_at IS NOT NULL OR EXISTS (
			SELECT 1 FROM `+l.schema+`.quarantine r WHERE r.delivered_at IS NULL AND r.released_at IS NOT NULL
			AND r.cycle_id = q.cycle_id AND r.report_id = q.report_id))
		ORDER BY q.cycle_id, q.report_id, q.seq`)
	if err != nil {
		return fmt.Errorf("error reading released changes: %w", err)
	}
	type row struct {
		eventID         string
		cycle, report   *int64
		raw, translated []byte
	}
	var pending []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.eventID, &r.cycle, &r.report, &r.raw, &r.translated); err != nil {
			rows.Close()
			return err
		}
		pending = append(pending, r)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(pending) == 0 {
		return nil
	}
	var out []dtetype.PhaseChange
	var ids []string
	blocked := map[dtetype.Key]bool{}
	seq := l.cp.seq
	for _, r := range pending {
		var key dtetype.Key
		if r.cycle != nil && r.report != nil {
			key = dtetype.Key{CycleID: *r.cycle, ReportID: *r.report}
		}
		if blocked[key] {
			continue
		}
		var pc dtetype.PhaseChange
		if r.translated != nil {
			if err := json.Unmarshal(r.translated, &pc); err != nil {
				return fmt.Errorf("released change %s is unreadable: %w", r.eventID, err)
			}
		} else {
			var raw RawChange
			if err := json.Unmarshal(r.raw, &raw); err != nil {
				return fmt.Errorf("quarantined change %s is unreadable: %w", r.eventID, err)
			}
			t := l.tr.Translate(&raw)
			if t.Err != nil || t.Ignored {
				blocked[key] = true
				if t.Err != nil {
					if _, err := l.pool.Exec(ctx, `UPDATE `+l.schema+`.quarantine SET reason = $2, detail = $3 WHERE event_id = $1`,
						r.eventID, t.Err.Reason, t.Err.Detail); err != nil {
						return err
					}
				}
				continue
			}
			pc = *t.Change
			pc.EventID = r.eventID
		}
		seq++
		pc.Seq = seq
		out = append(out, pc)
		ids = append(ids, r.eventID)
	}
	if len(out) == 0 {
		return nil
	}
	if err := l.c.Deliver(ctx, Batch{Changes: out}); err != nil {
		return &consumerError{err}
	}
	if _, err := l.pool.Exec(ctx, `UPDATE `+l.schema+`.quarantine SET delivered_at = now() WHERE event_id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("error marking released changes delivered: %w", err)
	}
	l.m.Delivered.Add(float64(len(out)))
	l.cp.seq = seq
	if err := l.save(ctx, ""); err != nil {
		return err
	}
	l.log.Info("released quarantined changes delivered", "changes", len(out))
	return l.loadHeld(ctx)
}
