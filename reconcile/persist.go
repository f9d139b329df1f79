package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
)

// persist records the run and tracks divergences across runs: one still
// found keeps its first_seen, one no longer found in the run's scope gets
// resolved_at, and the run counts both.
func persist(ctx context.Context, db *pgxpool.Pool, schema string, r *Report) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		scope, _ := json.Marshal(r.Scope)
		counts, _ := json.Marshal(r.Counts)
		phases, _ := json.Marshal(r.Phases)
		now := time.Now()
		if err := tx.QueryRow(ctx, `INSERT INTO `+schema+`.reconcile_runs (started_at, finished_at, scope, compared, consistent,
				in_flight, unexpected, expected, new, resolved, counts, phases)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10) RETURNING run_id`,
			r.StartedAt, now, scope, r.Compared, r.Consistent, r.InFlight, r.Unexpected, r.Expected, counts, phases).Scan(&r.RunID); err != nil {
			return fmt.Errorf("error recording the run: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE found (cycle_id bigint, report_id bigint, phase text, kind text,
			legacy_value text, shadow_value text, detail text, rule text) ON COMMIT DROP`); err != nil {
			return err
		}
		rows := make([][]any, 0, len(r.Divergences))
		for _, d := range r.Divergences {
			rows = append(rows, []any{d.Key.CycleID, d.Key.ReportID, string(d.Phase), d.Kind, d.Legacy, d.Shadow, d.Detail, nilIfEmpty(d.Rule)})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"found"}, []string{"cycle_id", "report_id", "phase", "kind", "legacy_value",
			"shadow_value", "detail", "rule"}, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("error recording divergences: %w", err)
		}
		// Still open: refresh. New: insert.
		if _, err := tx.Exec(ctx, `UPDATE `+schema+`.divergences d SET last_seen = $1, last_run = $2, legacy_value = f.legacy_value,
				shadow_value = f.shadow_value, detail = f.detail, rule = f.rule
			FROM found f WHERE d.resolved_at IS NULL AND (d.cycle_id, d.report_id, d.phase, d.kind) = (f.cycle_id, f.report_id, f.phase, f.kind)`,
			now, r.RunID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO `+schema+`.divergences (cycle_id, report_id, phase, kind, legacy_value, shadow_value, detail, rule,
				first_seen, last_seen, last_run)
			SELECT f.cycle_id, f.report_id, f.phase, f.kind, f.legacy_value, f.shadow_value, f.detail, f.rule, $1, $1, $2 FROM found f
			WHERE NOT EXISTS (SELECT 1 FROM `+schema+`.divergences d WHERE d.resolved_at IS NULL
				AND (d.cycle_id, d.report_id, d.phase, d.kind) = (f.cycle_id, f.report_id, f.phase, f.kind))`, now, r.RunID)
		if err != nil {
			return err
		}
		r.New = tag.RowsAffected()
		// Open divergences in scope that this run did not find are resolved,
		// unless their report is in flight (not looked at this time).
		scopeC, scopeR := split(r.Scope.Keys, true)
		flightC, flightR := split(r.inFlightReports, false)
		tag, err = tx.Exec(ctx, `UPDATE `+schema+`.divergences d SET resolved_at = $1
			WHERE d.resolved_at IS NULL AND d.last_run <> $2 AND d.kind <> 'authority_conflict' 
			  AND ($3::bigint IS NULL OR d.cycle_id = $3)
			  AND ($4::text IS NULL OR d.phase = $4)
			  AND ($5::bigint[] IS NULL OR (d.cycle_id, d.report_id) IN (SELECT * FROM unnest($5::bigint[], $6::bigint[])))
			  AND NOT ((d.cycle_id, d.report_id) IN (SELECT * FROM unnest($7::bigint[], $8::bigint[])))`,
			now, r.RunID, r.Scope.Cycle, nilIfEmpty(string(r.Scope.Phase)), scopeC, scopeR, flightC, flightR)
		if err != nil {
			return err
		}
		r.Resolved = tag.RowsAffected()
		// first_seen of what was found, for the report.
		fs, err := tx.Query(ctx, `SELECT cycle_id, report_id, phase, kind, first_seen FROM `+schema+`.divergences WHERE last_run = $1`, r.RunID)
		if err != nil {
			return err
		}
		first := map[divKey]time.Time{}
		for fs.Next() {
			var k divKey
			var t time.Time
			if err := fs.Scan(&k.k3.k.CycleID, &k.k3.k.ReportID, &k.k3.p, &k.kind, &t); err != nil {
				fs.Close()
				return err
			}
			first[k] = t
		}
		if err := fs.Err(); err != nil {
			return err
		}
		for i := range r.Divergences {
			d := &r.Divergences[i]
			if t, ok := first[divKey{key3{d.Key, d.Phase}, d.Kind}]; ok {
				d.FirstSeen = &t
			}
		}
		_, err = tx.Exec(ctx, `UPDATE `+schema+`.reconcile_runs SET new = $2, resolved = $3, finished_at = $4 WHERE run_id = $1`,
			r.RunID, r.New, r.Resolved, time.Now())
		return err
	})
}

// split returns the cycles and reports of keys as two arrays; with orNil, no
// keys gives nil arrays, which the SQL reads as "no limit".
func split(keys []dtetype.Key, orNil bool) (cycles, reports []int64) {
	if len(keys) == 0 && orNil {
		return nil, nil
	}
	cycles, reports = make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		cycles[i], reports[i] = k.CycleID, k.ReportID
	}
	return cycles, reports
}

// RunSummary is a recorded run, as status and the cutover gates read it.
type RunSummary struct {
	RunID       int64         `json:"run_id"`
	FinishedAt  time.Time     `json:"finished_at"`
	Scope       Scope         `json:"scope"`
	Compared    int64         `json:"compared"`
	Consistent  int64         `json:"consistent"`
	Unexpected  int64         `json:"unexpected"`
	Expected    int64         `json:"expected"`
	New         int64         `json:"new"`
	Resolved    int64         `json:"resolved"`
	Phases      []PhaseReport `json:"phases"`
	Consistency float64       `json:"consistency"`
}

// Runs returns the most recent recorded runs, newest first.
func Runs(ctx context.Context, db *pgxpool.Pool, schemaName string, limit int) ([]RunSummary, error) {
	schema := pgx.Identifier{orDefault(schemaName, "dtebridge")}.Sanitize()
	rows, err := db.Query(ctx, `SELECT run_id, finished_at, scope, compared, consistent, unexpected, expected, new, resolved, phases
		FROM `+schema+`.reconcile_runs ORDER BY run_id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("error reading reconcile runs: %w", err)
	}
	defer rows.Close()
	var out []RunSummary
	for rows.Next() {
		var s RunSummary
		var scope, phases []byte
		if err := rows.Scan(&s.RunID, &s.FinishedAt, &scope, &s.Compared, &s.Consistent, &s.Unexpected, &s.Expected, &s.New, &s.Resolved, &phases); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(scope, &s.Scope); err != nil {
			return nil, err
		}
		if err := json.Unmarshal(phases, &s.Phases); err != nil {
			return nil, err
		}
		s.Consistency = ratio(s.Consistent, s.Compared)
		out = append(out, s)
	}
	return out, rows.Err()
}
