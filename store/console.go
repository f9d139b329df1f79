package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// DivergenceRow is one recorded divergence.
type DivergenceRow struct {
	ID     int64         `json:"id"`
	Key    dtetype.Key   `json:"key"`
	Phase  dtetype.Phase `json:"phase"`
	Kind   string        `json:"kind"`
	Legacy string        `json:"legacy"`
	Shadow string        `json:"shadow"`
	Detail string        `json:"detail"`
	// Rule is the expected rule that accepts it, if one does.
	Rule       string     `json:"rule"`
	FirstSeen  time.Time  `json:"first_seen"`
	LastSeen   time.Time  `json:"last_seen"`
	ResolvedAt *time.Time `json:"resolved_at"`
}

// DivergenceFilter selects open divergences. Empty fields select all.
type DivergenceFilter struct {
	Phase    dtetype.Phase
	Kind     string
	Expected *bool
	Since    *time.Time
	// After is the last row of the previous page.
	After *DivergenceRow
	Limit int
}

func (f DivergenceFilter) args() []any {
	var after *time.Time
	var afterID int64
	if f.After != nil {
		after, afterID = &f.After.FirstSeen, f.After.ID
	}
	return []any{nullable(string(f.Phase)), nullable(f.Kind), f.Expected, f.Since, after, afterID}
}

// ListDivergences returns a page of open divergences, newest first, and
// how many match the filter in all.
func (s *Store) ListDivergences(ctx context.Context, f DivergenceFilter) ([]DivergenceRow, int64, error) {
	var total int64
	a := f.args()
	if err := s.db.QueryRow(ctx, s.sql("CountDivergences"), a[:4]...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("error counting divergences: %w", err)
	}
	rows, err := s.db.Query(ctx, s.sql("ListDivergences"), append(a, f.Limit)...)
	if err != nil {
		return nil, 0, fmt.Errorf("error listing divergences: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DivergenceRow, error) {
		var d DivergenceRow
		return d, r.Scan(&d.ID, &d.Key.CycleID, &d.Key.ReportID, &d.Phase, &d.Kind, &d.Legacy, &d.Shadow, &d.Detail, &d.Rule, &d.FirstSeen, &d.LastSeen)
	})
	return out, total, err
}

// ReportDivergences returns report k's divergences, open and resolved,
// newest first.
func (s *Store) ReportDivergences(ctx context.Context, k dtetype.Key) ([]DivergenceRow, error) {
	rows, err := s.db.Query(ctx, s.sql("ReportDivergences"), k.CycleID, k.ReportID)
	if err != nil {
		return nil, fmt.Errorf("error reading the divergences of %s: %w", k, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DivergenceRow, error) {
		var d DivergenceRow
		return d, r.Scan(&d.ID, &d.Key.CycleID, &d.Key.ReportID, &d.Phase, &d.Kind, &d.Legacy, &d.Shadow, &d.Detail, &d.Rule, &d.FirstSeen, &d.LastSeen, &d.ResolvedAt)
	})
}

// ReportQuarantined is one quarantined change of a report.
type ReportQuarantined struct {
	EventID       string    `json:"event_id"`
	Reason        string    `json:"reason"`
	Detail        string    `json:"detail"`
	QuarantinedAt time.Time `json:"quarantined_at"`
	Delivered     bool      `json:"delivered"`
}

// ReportQuarantine returns report k's quarantined changes, in order.
func (s *Store) ReportQuarantine(ctx context.Context, k dtetype.Key) ([]ReportQuarantined, error) {
	rows, err := s.db.Query(ctx, s.sql("ReportQuarantine"), k.CycleID, k.ReportID)
	if err != nil {
		return nil, fmt.Errorf("error reading the quarantine of %s: %w", k, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReportQuarantined, error) {
		var q ReportQuarantined
		return q, r.Scan(&q.EventID, &q.Reason, &q.Detail, &q.QuarantinedAt, &q.Delivered)
	})
}

// ReportShadow returns the definition (id@version) and attributes of
// report k's shadow; an empty definition when the shadow has none.
func (s *Store) ReportShadow(ctx context.Context, k dtetype.Key) (string, map[string]string, error) {
	var def string
	var attrs map[string]string
	err := s.db.QueryRow(ctx, s.sql("ReportShadow"), k.CycleID, k.ReportID).Scan(&def, &attrs)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("error reading the shadow of %s: %w", k, err)
	}
	return def, attrs, nil
}
