package shadow

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Projection is a shadow workflow's state as written to the bridge schema.
type Projection struct {
	Key               dtetype.Key    `json:"key"`
	DefinitionID      string         `json:"definition_id"`
	DefinitionVersion string         `json:"definition_version"`
	Version           int64          `json:"version"`
	AppliedSeq        int64          `json:"applied_seq"`
	Applied           int64          `json:"applied"`
	ViolationCounts   map[string]int `json:"violation_counts"`
	Violations        []Violation    `json:"violations"`
	Phases            []PhaseState   `json:"phases"`
}

func projectionOf(s *State) Projection {
	p := Projection{Key: s.Key, DefinitionID: s.DefinitionID, DefinitionVersion: s.DefinitionVersion,
		Version: s.ProjectionVersion, AppliedSeq: s.AppliedSeq, Applied: s.Applied,
		ViolationCounts: s.ViolationCounts, Violations: s.Violations}
	for _, ps := range s.Phases {
		p.Phases = append(p.Phases, *ps)
	}
	return p
}

// Activities are the shadow workflow's activities. They hold the bridge
// database; the workflow calls them with a nil receiver and the worker runs
// the registered instance.
type Activities struct {
	Pool *pgxpool.Pool
	// Schema is the bridge schema. Default: dtebridge.
	Schema string
}

// Project upserts a workflow's projection. It is idempotent: a write whose
// version is not newer than the stored one changes nothing.
func (a *Activities) Project(ctx context.Context, p Projection) error {
	schema := pgx.Identifier{orDefault(a.Schema, "dtebridge")}.Sanitize()
	counts, _ := json.Marshal(orEmptyMap(p.ViolationCounts))
	recent, _ := json.Marshal(orEmptySlice(p.Violations))
	total := 0
	for _, n := range p.ViolationCounts {
		total += n
	}
	return pgx.BeginFunc(ctx, a.Pool, func(tx pgx.Tx) error {
		var fresh bool
		err := tx.QueryRow(ctx, `INSERT INTO `+schema+`.shadow_keys AS k (cycle_id, report_id, definition_id, definition_version,
				version, applied_seq, applied, violations, violation_counts, recent_violations, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now())
			ON CONFLICT (cycle_id, report_id) DO UPDATE SET definition_id = excluded.definition_id,
				definition_version = excluded.definition_version, version = excluded.version,
				applied_seq = excluded.applied_seq, applied = excluded.applied, violations = excluded.violations,
				violation_counts = excluded.violation_counts, recent_violations = excluded.recent_violations, updated_at = now()
			WHERE k.version < excluded.version
			RETURNING true`, p.Key.CycleID, p.Key.ReportID, p.DefinitionID, p.DefinitionVersion, p.Version,
			p.AppliedSeq, p.Applied, total, counts, recent).Scan(&fresh)
		if err == pgx.ErrNoRows {
			return nil // a newer projection is already there
		}
		if err != nil {
			return fmt.Errorf("error projecting %s: %w", p.Key, err)
		}
		b := &pgx.Batch{}
		for _, ps := range p.Phases {
			var override []byte
			if ps.Override != nil {
				override, _ = json.Marshal(ps.Override)
			}
			b.Queue(`INSERT INTO `+schema+`.shadow_phases AS s (cycle_id, report_id, phase, row_id, rows, state, base_state,
					legacy_status, status, override, planned_start, planned_end, actual_start, actual_end, started_by,
					completed_by, status_column, last_event_id, last_seq, tx_time, version)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
				ON CONFLICT (cycle_id, report_id, phase) DO UPDATE SET row_id = excluded.row_id, rows = excluded.rows,
					state = excluded.state, base_state = excluded.base_state, legacy_status = excluded.legacy_status,
					status = excluded.status, override = excluded.override, planned_start = excluded.planned_start,
					planned_end = excluded.planned_end, actual_start = excluded.actual_start, actual_end = excluded.actual_end,
					started_by = excluded.started_by, completed_by = excluded.completed_by, status_column = excluded.status_column,
					last_event_id = excluded.last_event_id, last_seq = excluded.last_seq, tx_time = excluded.tx_time,
					version = excluded.version
				WHERE s.version < excluded.version`,
				p.Key.CycleID, p.Key.ReportID, string(ps.Phase), ps.RowID, ps.Rows, string(ps.State), string(ps.BaseState),
				string(ps.LegacyStatus), string(ps.Status), override, ps.PlannedStart, ps.PlannedEnd, ps.ActualStart, ps.ActualEnd,
				nullable(ps.StartedBy), nullable(ps.CompletedBy), nullable(ps.LegacyStatusColumn), ps.LastEventID, ps.LastSeq,
				nullableTime(ps.UpdatedAt), p.Version)
		}
		b.Queue(`DELETE FROM `+schema+`.shadow_phases WHERE cycle_id = $1 AND report_id = $2 AND version < $3`,
			p.Key.CycleID, p.Key.ReportID, p.Version)
		// Caught up with what the mirror handed over: nothing is pending.
		b.Queue(`UPDATE `+schema+`.mirror_keys SET pending_since = NULL
			WHERE cycle_id = $1 AND report_id = $2 AND delivered_seq <= $3 AND pending_since IS NOT NULL`,
			p.Key.CycleID, p.Key.ReportID, p.AppliedSeq)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("error projecting %s: %w", p.Key, err)
		}
		return nil
	})
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orEmptyMap(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

func orEmptySlice(v []Violation) []Violation {
	if v == nil {
		return []Violation{}
	}
	return v
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullableTime(t interface{ IsZero() bool }) any {
	if t.IsZero() {
		return nil
	}
	return t
}
