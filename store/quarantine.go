package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Quarantined is a change to put in quarantine.
type Quarantined struct {
	EventID  string
	ChangeID *int64
	Key      *dtetype.Key
	Reason   string
	Detail   string
	// Raw is the change as captured (JSON).
	Raw []byte
	Seq int64
}

// Quarantine records changes with their raw values. Recording is
// idempotent, so a redelivered batch does not duplicate them.
func (s *Store) Quarantine(ctx context.Context, q []Quarantined) error {
	if len(q) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for _, e := range q {
		var cycle, report *int64
		if e.Key != nil {
			cycle, report = &e.Key.CycleID, &e.Key.ReportID
		}
		b.Queue(s.sql("QuarantineInsert"), e.EventID, e.ChangeID, cycle, report, e.Reason, e.Detail, e.Raw, e.Seq)
	}
	if err := s.db.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("error writing quarantine: %w", err)
	}
	return nil
}

// HeldKeys returns the reports that have changes in quarantine; their later
// changes wait behind them.
func (s *Store) HeldKeys(ctx context.Context) (map[dtetype.Key]bool, error) {
	rows, err := s.db.Query(ctx, s.sql("HeldKeys"))
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key]bool{}
	for rows.Next() {
		var k dtetype.Key
		if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
			return nil, fmt.Errorf("error reading quarantine: %w", err)
		}
		out[k] = true
	}
	return out, rows.Err()
}

// QuarantineEntry is one quarantined change.
type QuarantineEntry struct {
	EventID       string          `json:"event_id"`
	ChangeID      *int64          `json:"change_id"`
	Key           *dtetype.Key    `json:"key"`
	Reason        string          `json:"reason"`
	Detail        string          `json:"detail"`
	Raw           json.RawMessage `json:"raw"`
	QuarantinedAt time.Time       `json:"quarantined_at"`
	RetriedAt     *time.Time      `json:"retried_at"`
	ReleasedAt    *time.Time      `json:"released_at"`
	DeliveredAt   *time.Time      `json:"delivered_at"`
	// Resolution is how an operator or a re-drive resolved the entry
	// (skip or resync), by whom and why; empty if it was delivered.
	Resolution     string `json:"resolution,omitempty"`
	ResolvedBy     string `json:"resolved_by,omitempty"`
	ResolvedReason string `json:"resolved_reason,omitempty"`
}

// Status is pending, released (translated by a retry, waiting for the
// leader to deliver it), delivered, or resolved (skip or resync).
func (e *QuarantineEntry) Status() string {
	switch {
	case e.Resolution != "":
		return "resolved (" + e.Resolution + ")"
	case e.DeliveredAt != nil:
		return "delivered"
	case e.ReleasedAt != nil:
		return "released"
	}
	return "pending"
}

// ListQuarantine returns the quarantined changes not yet delivered (all of
// them with all), oldest first.
func (s *Store) ListQuarantine(ctx context.Context, all bool) ([]QuarantineEntry, error) {
	rows, err := s.db.Query(ctx, s.sql("QuarantineList"), all)
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading quarantine: %w", err)}
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (QuarantineEntry, error) {
		var e QuarantineEntry
		var cycle, report *int64
		var raw []byte
		err := r.Scan(&e.EventID, &e.ChangeID, &cycle, &report, &e.Reason, &e.Detail, &raw, &e.QuarantinedAt, &e.RetriedAt, &e.ReleasedAt, &e.DeliveredAt,
			&e.Resolution, &e.ResolvedBy, &e.ResolvedReason)
		e.Raw = raw
		if cycle != nil && report != nil {
			e.Key = &dtetype.Key{CycleID: *cycle, ReportID: *report}
		}
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	if out == nil {
		out = []QuarantineEntry{}
	}
	return out, nil
}

// PendingEntry is a quarantined change not yet delivered, as a retry or the
// leader's release reads it.
type PendingEntry struct {
	EventID  string
	Key      *dtetype.Key
	Raw      []byte
	Released bool
	Reason   string
	// Translated is the change a retry translated it to, if released.
	Translated []byte
	// Seq is where the entry stood in the stream, and DeliveredSeq how far
	// the mirror has delivered its report since.
	Seq, DeliveredSeq int64
}

func keyOf(cycle, report *int64) *dtetype.Key {
	if cycle == nil || report == nil {
		return nil
	}
	return &dtetype.Key{CycleID: *cycle, ReportID: *report}
}

// LockPendingQuarantine reads and locks every pending entry, by report and
// in order; run it in a transaction (InTx).
func (s *Store) LockPendingQuarantine(ctx context.Context) ([]PendingEntry, error) {
	rows, err := s.db.Query(ctx, s.sql("QuarantineLockPending"))
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingEntry, error) {
		var e PendingEntry
		var cycle, report *int64
		err := r.Scan(&e.EventID, &cycle, &report, &e.Raw, &e.Released, &e.Reason)
		e.Key = keyOf(cycle, report)
		return e, err
	})
}

// SkipQuarantined marks an entry delivered without delivering it: the
// mapping now ignores it.
func (s *Store) SkipQuarantined(ctx context.Context, eventID string) error {
	_, err := s.db.Exec(ctx, s.sql("QuarantineSkip"), eventID)
	return err
}

// StillQuarantined records a retry that failed again, with its new reason.
func (s *Store) StillQuarantined(ctx context.Context, eventID, reason, detail string) error {
	_, err := s.db.Exec(ctx, s.sql("QuarantineStillFails"), eventID, reason, detail)
	return err
}

// ReleaseQuarantined records a retry that translated the entry; the leader
// delivers it.
func (s *Store) ReleaseQuarantined(ctx context.Context, eventID string, translated []byte) error {
	_, err := s.db.Exec(ctx, s.sql("QuarantineRelease"), eventID, translated)
	return err
}

// ReleasedQuarantine returns the pending entries of every report that has
// released ones, by report and in order.
func (s *Store) ReleasedQuarantine(ctx context.Context) ([]PendingEntry, error) {
	rows, err := s.db.Query(ctx, s.sql("QuarantineReleased"))
	if err != nil {
		return nil, fmt.Errorf("error reading released changes: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingEntry, error) {
		var e PendingEntry
		var cycle, report *int64
		err := r.Scan(&e.EventID, &cycle, &report, &e.Raw, &e.Translated, &e.Seq, &e.DeliveredSeq)
		e.Key = keyOf(cycle, report)
		e.Released = e.Translated != nil
		return e, err
	})
}

// SetQuarantineReason updates why an entry is still quarantined.
func (s *Store) SetQuarantineReason(ctx context.Context, eventID, reason, detail string) error {
	_, err := s.db.Exec(ctx, s.sql("QuarantineSetReason"), eventID, reason, detail)
	return err
}

// QuarantineDelivered marks entries delivered.
func (s *Store) QuarantineDelivered(ctx context.Context, eventIDs []string) error {
	if _, err := s.db.Exec(ctx, s.sql("QuarantineDelivered"), eventIDs); err != nil {
		return fmt.Errorf("error marking released changes delivered: %w", err)
	}
	return nil
}

// QuarantinedReports returns the reports with pending quarantined changes
// and their reasons.
func (s *Store) QuarantinedReports(ctx context.Context) (map[dtetype.Key]string, error) {
	rows, err := s.db.Query(ctx, s.sql("QuarantinedReports"))
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key]string{}
	for rows.Next() {
		var k dtetype.Key
		var reasons string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &reasons); err != nil {
			return nil, err
		}
		out[k] = reasons
	}
	return out, rows.Err()
}

// QuarantinePendingByReason counts pending entries by reason.
func (s *Store) QuarantinePendingByReason(ctx context.Context) (map[string]int64, error) {
	rows, err := s.db.Query(ctx, s.sql("QuarantinePendingByReason"))
	if err != nil {
		return nil, fmt.Errorf("error reading quarantine: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var r string
		var n int64
		if err := rows.Scan(&r, &n); err != nil {
			return nil, err
		}
		out[r] = n
	}
	return out, rows.Err()
}

// RefuseQuarantined puts a released entry the shadow refused for good back
// to pending, with its reason.
func (s *Store) RefuseQuarantined(ctx context.Context, eventID, reason, detail string) error {
	_, err := s.db.Exec(ctx, s.sql("QuarantineRefused"), eventID, reason, detail)
	return err
}

// Resolutions of a quarantined entry.
const (
	// ResolveSkip drops the entry: the report's shadow goes on without it.
	ResolveSkip = "skip"
	// ResolveResync drops the entry and re-drives the report from its
	// legacy rows as they stand.
	ResolveResync = "resync"
)

// SupersedeQuarantined resolves entries without delivering them, recording
// how, by whom and why.
func (s *Store) SupersedeQuarantined(ctx context.Context, eventIDs []string, resolution, by, reason string) (int64, error) {
	tag, err := s.db.Exec(ctx, s.sql("QuarantineSuperseded"), eventIDs, resolution, by, reason)
	if err != nil {
		return 0, fmt.Errorf("error resolving quarantined changes: %w", err)
	}
	return tag.RowsAffected(), nil
}

// ErrNoSuchEntry means no pending quarantined change has that event id.
var ErrNoSuchEntry = errors.New("no pending quarantined change with that event id")

// ResolveQuarantined resolves pending entry eventID as an operator asks:
// ResolveSkip drops it alone, ResolveResync drops every pending entry of
// its report (the caller then re-drives the report). It returns the entries
// resolved and the report, if the entry has one.
func (s *Store) ResolveQuarantined(ctx context.Context, eventID, action, by, reason string) ([]string, *dtetype.Key, error) {
	if action != ResolveSkip && action != ResolveResync {
		return nil, nil, fmt.Errorf("unknown resolution %q: use skip or resync", action)
	}
	rows, err := s.db.Query(ctx, s.sql("QuarantineResolve"), eventID, action, by, reason, action == ResolveResync)
	if err != nil {
		return nil, nil, fmt.Errorf("error resolving %s: %w", eventID, err)
	}
	defer rows.Close()
	var ids []string
	var key *dtetype.Key
	for rows.Next() {
		var id string
		var cycle, report *int64
		if err := rows.Scan(&id, &cycle, &report); err != nil {
			return nil, nil, err
		}
		ids = append(ids, id)
		if k := keyOf(cycle, report); k != nil {
			key = k
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoSuchEntry, eventID)
	}
	return ids, key, nil
}

// ReleasedUndelivered counts released entries the leader has yet to
// deliver.
func (s *Store) ReleasedUndelivered(ctx context.Context) (int64, error) {
	var n int64
	err := s.db.QueryRow(ctx, s.sql("QuarantineReleasedUndelivered")).Scan(&n)
	return n, err
}
