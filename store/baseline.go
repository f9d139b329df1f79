package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// BaselineRow is one phase that held several legacy rows at install.
type BaselineRow struct {
	Key   dtetype.Key
	Phase dtetype.Phase
	Rows  int
}

// RecordBaseline records legacy's duplicate rows as they stand, once: it
// returns false, recording nothing, when a baseline was taken before. Run
// it in the transaction that attaches capture, so the baseline and the
// captured stream meet exactly.
func (s *Store) RecordBaseline(ctx context.Context, read func() ([]BaselineRow, error)) (bool, error) {
	var at time.Time
	if err := s.db.QueryRow(ctx, s.sql("TakeBaseline")).Scan(&at); errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("error taking the legacy baseline: %w", err)
	}
	rows, err := read()
	if err != nil {
		return false, err
	}
	cy, rp, ph, n := make([]int64, len(rows)), make([]int64, len(rows)), make([]string, len(rows)), make([]int32, len(rows))
	for i, r := range rows {
		cy[i], rp[i], ph[i], n[i] = r.Key.CycleID, r.Key.ReportID, string(r.Phase), int32(r.Rows)
	}
	if _, err := s.db.Exec(ctx, s.sql("RecordBaseline"), cy, rp, ph, n); err != nil {
		return false, fmt.Errorf("error recording the legacy baseline: %w", err)
	}
	return true, nil
}

// Baseline returns how many rows each phase that had duplicates held at
// install, and when the baseline was taken (nil: never).
func (s *Store) Baseline(ctx context.Context) (map[dtetype.Key]map[dtetype.Phase]int, *time.Time, error) {
	var at time.Time
	if err := s.db.QueryRow(ctx, s.sql("BaselineTakenAt")).Scan(&at); errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, nil
	} else if err != nil {
		return nil, nil, fmt.Errorf("error reading the legacy baseline: %w", err)
	}
	rows, err := s.db.Query(ctx, s.sql("Baseline"))
	if err != nil {
		return nil, nil, fmt.Errorf("error reading the legacy baseline: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key]map[dtetype.Phase]int{}
	for rows.Next() {
		var r BaselineRow
		if err := rows.Scan(&r.Key.CycleID, &r.Key.ReportID, &r.Phase, &r.Rows); err != nil {
			return nil, nil, err
		}
		if out[r.Key] == nil {
			out[r.Key] = map[dtetype.Phase]int{}
		}
		out[r.Key][r.Phase] = r.Rows
	}
	return out, &at, rows.Err()
}
