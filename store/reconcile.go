package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// LegacySide is the legacy half of reconcile's comparison, built from the
// configuration by reconcile (see sql/reconcile.sql.tmpl).
type LegacySide struct {
	// Legacy defines the CTEs mp, ms, mt and lw, without WITH.
	Legacy string
	// LegacyGroups is Legacy with lw limited to the reports
	// @group_cycles, @group_reports, as a plain conjunct on the key
	// columns.
	LegacyGroups string
	// LegacyOrder lists lw's key columns, for the oldest row.
	LegacyOrder string
	// LegacyChanged selects the reports legacy changed since @since.
	LegacyChanged string
	// Scope renders the conditions that keep the rows of a bridge table
	// (alias "s." or "k.") in the run's scope.
	Scope func(alias string) string
}

// ReconcileSQL are reconcile's comparison queries.
type ReconcileSQL struct {
	PhaseRows, ReportSumsLegacy, ReportSumsLegacyKeyed, ReportSumsShadow, Compare, CompareGroups, Violations string
}

// ReconcileQueries renders the comparison queries around the legacy side.
func (s *Store) ReconcileQueries(l LegacySide) (*ReconcileSQL, error) {
	text, err := sqlFiles.ReadFile("sql/reconcile.sql.tmpl")
	if err != nil {
		return nil, err
	}
	t, err := template.New("reconcile").Funcs(template.FuncMap{
		// args passes the comparison its legacy side and the condition
		// that limits the shadow's.
		"args": func(q map[string]any, legacy, shadowGroups string) map[string]any {
			return map[string]any{"Q": q, "Legacy": legacy, "ShadowGroups": shadowGroups}
		},
	}).Parse(string(text))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, map[string]any{"Schema": s.quoted, "Legacy": l.Legacy, "LegacyGroups": l.LegacyGroups, "LegacyOrder": l.LegacyOrder,
		"LegacyChanged": l.LegacyChanged, "Scope": l.Scope}); err != nil {
		return nil, err
	}
	named := splitNamed(buf.String())
	out := &ReconcileSQL{PhaseRows: named["PhaseRows"], ReportSumsLegacyKeyed: named["ReportSumsLegacyKeyed"], Compare: named["Compare"],
		CompareGroups: named["CompareGroups"], Violations: named["Violations"], ReportSumsLegacy: named["ReportSumsLegacy"], ReportSumsShadow: named["ReportSumsShadow"]}
	if out.ReportSumsLegacy == "" || out.ReportSumsShadow == "" || out.PhaseRows == "" || out.ReportSumsLegacyKeyed == "" || out.Compare == "" || out.CompareGroups == "" || out.Violations == "" {
		return nil, fmt.Errorf("store: reconcile.sql.tmpl lacks a query")
	}
	return out, nil
}

// splitNamed splits rendered text into its "-- name: X" sections.
func splitNamed(text string) map[string]string {
	out := map[string]string{}
	var name string
	var body strings.Builder
	flush := func() {
		if name != "" {
			out[name] = strings.TrimRight(strings.TrimSpace(body.String()), ";")
		}
	}
	for _, line := range strings.SplitAfter(text, "\n") {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "-- name:"); ok {
			flush()
			name, body = strings.TrimSpace(n), strings.Builder{}
			continue
		}
		if name != "" {
			body.WriteString(line)
		}
	}
	flush()
	return out
}

// Run is a reconcile run as recorded.
type Run struct {
	StartedAt, FinishedAt time.Time
	// Scope, Counts and Phases are JSON.
	Scope, Counts, Phases []byte
	Compared, Consistent  int64
	InFlight              int64
	Unexpected, Expected  int64
	// Kind is full (every report), incremental (the reports written since
	// BaseRun's snapshot, Touched of them) or scoped (a cycle, a phase,
	// some reports).
	Kind    string
	BaseRun *int64
	Touched *int64
	// Snapshot is the snapshot the run compared in, and Fingerprint what
	// its verdicts depended on beyond the rows; a full or incremental run
	// records both, for the next incremental run to build on.
	Snapshot, Fingerprint *string
}

// Run kinds.
const (
	RunFull        = "full"
	RunIncremental = "incremental"
	RunScoped      = "scoped"
)

// RunScope is what a run looked at, for resolving divergences it no longer
// finds.
type RunScope struct {
	Cycle *int64
	Phase dtetype.Phase
	// Keys, if not nil, limits the run to these reports (none if empty).
	Keys []dtetype.Key
	// InFlight are reports the run did not look at.
	InFlight []dtetype.Key
	// Exclude are phases the run did not look at (in legacy mode).
	Exclude []dtetype.Phase
}

// Recorded is what recording a run did.
type Recorded struct {
	RunID         int64
	New, Resolved int64
	// FirstSeen is when each divergence found was first seen, when asked
	// for.
	FirstSeen map[DivergenceKey]time.Time
}

// DivergenceKey identifies an open divergence.
type DivergenceKey struct {
	Key   dtetype.Key
	Phase dtetype.Phase
	Kind  string
}

// RecordRun records a run and tracks divergences across runs, in one
// transaction: one still found keeps its first_seen, one no longer found
// in the run's scope gets resolved_at.
func (s *Store) RecordRun(ctx context.Context, run Run, scope RunScope, found iter.Seq2[dtetype.Divergence, error], firstSeen bool) (*Recorded, error) {
	rec := &Recorded{FirstSeen: map[DivergenceKey]time.Time{}}
	err := s.InTx(ctx, func(tx *Store) error {
		now := time.Now()
		if run.Kind == "" {
			run.Kind = RunScoped
		}
		flightC, flightR := splitKeys(scope.InFlight)
		if err := tx.db.QueryRow(ctx, tx.sql("InsertRun"), run.StartedAt, now, run.Scope, run.Compared, run.Consistent, run.InFlight,
			run.Unexpected, run.Expected, run.Counts, run.Phases, run.Kind, run.Snapshot, run.Fingerprint, run.BaseRun, run.Touched,
			flightC, flightR).Scan(&rec.RunID); err != nil {
			return &NotInstalledError{fmt.Errorf("error recording the run: %w", err)}
		}
		if _, err := tx.db.Exec(ctx, tx.sql("CreateFound")); err != nil {
			return err
		}
		// The divergences stream into the temporary table, one at a time.
		next, stop := iter.Pull2(found)
		defer stop()
		if _, err := tx.db.CopyFrom(ctx, pgx.Identifier{"found"}, []string{"cycle_id", "report_id", "phase", "kind", "legacy_value",
			"shadow_value", "detail", "rule"}, pgx.CopyFromFunc(func() ([]any, error) {
			d, err, ok := next()
			if !ok || err != nil {
				return nil, err
			}
			return []any{d.Key.CycleID, d.Key.ReportID, string(d.Phase), d.Kind, d.Legacy, d.Shadow, d.Detail, nullable(d.Rule)}, nil
		})); err != nil {
			return fmt.Errorf("error recording divergences: %w", err)
		}
		if _, err := tx.db.Exec(ctx, tx.sql("RefreshOpen"), now, rec.RunID); err != nil {
			return err
		}
		tag, err := tx.db.Exec(ctx, tx.sql("InsertNew"), now, rec.RunID)
		if err != nil {
			return err
		}
		rec.New = tag.RowsAffected()
		var scopeC, scopeR []int64
		if scope.Keys != nil {
			// An empty set of keys limits the run to no report at all.
			scopeC, scopeR = splitKeys(scope.Keys)
		}
		excluded := make([]string, len(scope.Exclude))
		for i, p := range scope.Exclude {
			excluded[i] = string(p)
		}
		tag, err = tx.db.Exec(ctx, tx.sql("ResolveGone"), now, rec.RunID, scope.Cycle, nullable(string(scope.Phase)), scopeC, scopeR, flightC, flightR, excluded)
		if err != nil {
			return err
		}
		rec.Resolved = tag.RowsAffected()
		if firstSeen {
			fs, err := tx.db.Query(ctx, tx.sql("FirstSeen"), rec.RunID)
			if err != nil {
				return err
			}
			defer fs.Close()
			for fs.Next() {
				var k DivergenceKey
				var t time.Time
				if err := fs.Scan(&k.Key.CycleID, &k.Key.ReportID, &k.Phase, &k.Kind, &t); err != nil {
					return err
				}
				rec.FirstSeen[k] = t
			}
			if err := fs.Err(); err != nil {
				return err
			}
		}
		if run.Snapshot != nil {
			// A delete recorded before this snapshot's oldest running
			// transaction is seen by it, and by any later base.
			if _, err := tx.db.Exec(ctx, tx.sql("PruneShadowDeletes"), *run.Snapshot); err != nil {
				return err
			}
		}
		_, err = tx.db.Exec(ctx, tx.sql("FinishRun"), rec.RunID, rec.New, rec.Resolved, time.Now())
		return err
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// RunRow is a recorded run as read back; Scope and Phases are JSON.
type RunRow struct {
	RunID                 int64
	StartedAt, FinishedAt time.Time
	Scope, Phases         []byte
	Compared, Consistent  int64
	Unexpected, Expected  int64
	New, Resolved         int64
	Kind                  string
}

// Runs returns the most recent recorded runs, newest first.
func (s *Store) Runs(ctx context.Context, limit int) ([]RunRow, error) {
	return s.runs(ctx, "Runs", limit)
}

// GateRuns returns the runs the cutover gates judge by, newest first: the
// last limit runs that are not incremental, and every incremental run
// since the newest full run.
func (s *Store) GateRuns(ctx context.Context, limit int) ([]RunRow, error) {
	return s.runs(ctx, "GateRuns", limit)
}

func (s *Store) runs(ctx context.Context, query string, limit int) ([]RunRow, error) {
	rows, err := s.db.Query(ctx, s.sql(query), limit)
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading reconcile runs: %w", err)}
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RunRow, error) {
		var x RunRow
		err := r.Scan(&x.RunID, &x.StartedAt, &x.FinishedAt, &x.Scope, &x.Compared, &x.Consistent, &x.Unexpected, &x.Expected, &x.New, &x.Resolved, &x.Phases, &x.Kind)
		return x, err
	})
}

// RunTotals sums every recorded run.
type RunTotals struct {
	Runs, Compared, New, Resolved int64
}

// ReconcileTotals sums every recorded run.
func (s *Store) ReconcileTotals(ctx context.Context) (RunTotals, error) {
	var t RunTotals
	err := s.db.QueryRow(ctx, s.sql("RunTotals")).Scan(&t.Runs, &t.Compared, &t.New, &t.Resolved)
	return t, err
}

// OpenCount is a number of open divergences of one phase, kind and
// expectedness.
type OpenCount struct {
	Phase    dtetype.Phase
	Kind     string
	Expected bool
	N        int64
}

// OpenDivergenceCounts counts open divergences by phase, kind and whether an
// expected rule accepts them.
func (s *Store) OpenDivergenceCounts(ctx context.Context) ([]OpenCount, error) {
	rows, err := s.db.Query(ctx, s.sql("OpenDivergenceCounts"))
	if err != nil {
		return nil, fmt.Errorf("error reading divergences: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenCount, error) {
		var c OpenCount
		err := r.Scan(&c.Phase, &c.Kind, &c.Expected, &c.N)
		return c, err
	})
}

// IncrementalBase is the run an incremental run builds on.
type IncrementalBase struct {
	RunID       int64
	Snapshot    string
	Fingerprint string
	StartedAt   time.Time
	// InFlight are the reports it found in flight and did not judge.
	InFlight []dtetype.Key
}

// LatestIncrementalBase returns the latest full or incremental run that
// recorded its snapshot, or nil.
func (s *Store) LatestIncrementalBase(ctx context.Context) (*IncrementalBase, error) {
	var b IncrementalBase
	var cycles, reports []int64
	err := s.db.QueryRow(ctx, s.sql("IncrementalBase")).Scan(&b.RunID, &b.Snapshot, &b.Fingerprint, &b.StartedAt, &cycles, &reports)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading reconcile runs: %w", err)}
	}
	for i := range min(len(cycles), len(reports)) {
		b.InFlight = append(b.InFlight, dtetype.Key{CycleID: cycles[i], ReportID: reports[i]})
	}
	return &b, nil
}

// ChangedRow is a captured row image a snapshot did not see: of the phase
// table, the report's key columns as text; of another table (a report
// attribute's), the row.
type ChangedRow struct {
	Source         string
	Cycle, Report  *string
	AttributeImage []byte
}

// ChangedSince returns the row images of the changes captured since
// snapshot: the phase table's report columns cycleCol and reportCol, and
// the rows of attributeTables (as capture names them, schema.table).
func (s *Store) ChangedSince(ctx context.Context, snapshot, cycleCol, reportCol string, attributeTables []string) ([]ChangedRow, error) {
	rows, err := s.db.Query(ctx, s.sql("ChangedRows"), snapshot, cycleCol, reportCol, append([]string{}, attributeTables...))
	if err != nil {
		return nil, fmt.Errorf("error reading the changes since the last run: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ChangedRow, error) {
		var c ChangedRow
		err := r.Scan(&c.Source, &c.Cycle, &c.Report, &c.AttributeImage)
		return c, err
	})
}

// WrittenSince returns the reports whose shadow side (projection, mirror
// record) was written since snapshot.
func (s *Store) WrittenSince(ctx context.Context, snapshot string) ([]dtetype.Key, error) {
	return s.keys(ctx, "WrittenKeys", snapshot)
}

// ShadowKeysOfReports returns the shadow's keys of the report ids given.
func (s *Store) ShadowKeysOfReports(ctx context.Context, reports []int64) ([]dtetype.Key, error) {
	return s.keys(ctx, "ShadowKeysOfReports", reports)
}

// OpenKeysOfKinds returns the reports with open divergences of kinds.
func (s *Store) OpenKeysOfKinds(ctx context.Context, kinds []string) ([]dtetype.Key, error) {
	return s.keys(ctx, "OpenKeysOfKinds", kinds)
}

func (s *Store) keys(ctx context.Context, query string, args ...any) ([]dtetype.Key, error) {
	rows, err := s.db.Query(ctx, s.sql(query), args...)
	if err != nil {
		return nil, fmt.Errorf("error reading reports (%s): %w", query, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (dtetype.Key, error) {
		var k dtetype.Key
		err := r.Scan(&k.CycleID, &k.ReportID)
		return k, err
	})
}

// ShadowTruncated reports whether a table of the shadow's side was
// truncated since snapshot.
func (s *Store) ShadowTruncated(ctx context.Context, snapshot string) (bool, error) {
	var t bool
	err := s.db.QueryRow(ctx, s.sql("ShadowTruncated"), snapshot).Scan(&t)
	return t, err
}

// CutoverLogMark identifies the mode changes made so far.
func (s *Store) CutoverLogMark(ctx context.Context) (string, error) {
	var m string
	err := s.db.QueryRow(ctx, s.sql("CutoverLogMark")).Scan(&m)
	return m, err
}

// CurrentSnapshot returns the snapshot of the transaction s runs in.
func (s *Store) CurrentSnapshot(ctx context.Context) (string, error) {
	var snap string
	err := s.db.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap)
	return snap, err
}
