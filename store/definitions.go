package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// ProjectedDefinitions returns the definition (id@version) each shadow
// runs under, by report.
func (s *Store) ProjectedDefinitions(ctx context.Context) (map[dtetype.Key]string, error) {
	rows, err := s.db.Query(ctx, s.sql("ProjectedDefinitions"))
	if err != nil {
		return nil, fmt.Errorf("error reading the shadows' definitions: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key]string{}
	for rows.Next() {
		var k dtetype.Key
		var d string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &d); err != nil {
			return nil, err
		}
		out[k] = d
	}
	return out, rows.Err()
}

// ReportFinding is one finding of one report's shadow.
type ReportFinding struct {
	Origin string        `json:"origin"` // historical or live
	Phase  dtetype.Phase `json:"phase"`
	Rule   string        `json:"rule"`
	Detail string        `json:"detail"`
}

// ReportFindings returns the findings of keys' shadows, by report.
func (s *Store) ReportFindings(ctx context.Context, keys []dtetype.Key) (map[dtetype.Key][]ReportFinding, error) {
	cs, rs := splitKeys(keys)
	rows, err := s.db.Query(ctx, s.sql("ReportFindings"), cs, rs)
	if err != nil {
		return nil, fmt.Errorf("error reading reports' findings: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key][]ReportFinding{}
	for rows.Next() {
		var k dtetype.Key
		var f ReportFinding
		if err := rows.Scan(&k.CycleID, &k.ReportID, &f.Origin, &f.Phase, &f.Rule, &f.Detail); err != nil {
			return nil, err
		}
		out[k] = append(out[k], f)
	}
	return out, rows.Err()
}

// PhasesInProgress returns, by report, the phases keys' shadows hold in
// progress.
func (s *Store) PhasesInProgress(ctx context.Context, keys []dtetype.Key) (map[dtetype.Key][]dtetype.Phase, error) {
	cs, rs := splitKeys(keys)
	rows, err := s.db.Query(ctx, s.sql("PhasesInProgress"), cs, rs)
	if err != nil {
		return nil, fmt.Errorf("error reading phases in progress: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key][]dtetype.Phase{}
	for rows.Next() {
		var k dtetype.Key
		var p dtetype.Phase
		if err := rows.Scan(&k.CycleID, &k.ReportID, &p); err != nil {
			return nil, err
		}
		out[k] = append(out[k], p)
	}
	return out, rows.Err()
}

// DefinitionMigration is one definition migration as the audit records it.
type DefinitionMigration struct {
	ID         int64      `json:"migration_id"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Actor      string     `json:"actor"`
	Reason     string     `json:"reason"`
	Target     string     `json:"target"`
	PhaseSafe  bool       `json:"phase_safe"`
	Requested  int        `json:"requested"`
	Migrated   int        `json:"migrated"`
	Failed     int        `json:"failed"`
}

// StartMigration records a migration's start, with the reports it skips
// and why.
func (s *Store) StartMigration(ctx context.Context, m DefinitionMigration, skipped map[string]string) (*DefinitionMigration, error) {
	sk, _ := json.Marshal(skipped)
	if err := s.db.QueryRow(ctx, s.sql("StartMigration"), m.Actor, m.Reason, m.Target, m.PhaseSafe, sk).Scan(&m.ID, &m.StartedAt); err != nil {
		return nil, fmt.Errorf("error recording the migration: %w", err)
	}
	return &m, nil
}

// MigrationReport records that a migration re-drives report k from
// definition from (redrive its request), with its findings before.
func (s *Store) MigrationReport(ctx context.Context, id int64, k dtetype.Key, from string, redrive int64, before []ReportFinding) error {
	b, _ := json.Marshal(before)
	if _, err := s.db.Exec(ctx, s.sql("MigrationReport"), id, k.CycleID, k.ReportID, from, redrive, b); err != nil {
		return fmt.Errorf("error recording the migration of %s: %w", k, err)
	}
	if _, err := s.db.Exec(ctx, s.sql("MigrationRequested"), id, 1); err != nil {
		return fmt.Errorf("error recording the migration of %s: %w", k, err)
	}
	return nil
}

// MigrationOutcome records how report k's migration ended, with its
// findings after.
func (s *Store) MigrationOutcome(ctx context.Context, id int64, k dtetype.Key, outcome string, after []ReportFinding) error {
	var a []byte
	if after != nil {
		a, _ = json.Marshal(after)
	}
	if _, err := s.db.Exec(ctx, s.sql("MigrationOutcome"), id, k.CycleID, k.ReportID, a, outcome); err != nil {
		return fmt.Errorf("error recording the migration of %s: %w", k, err)
	}
	return nil
}

// FinishMigration records a migration's end.
func (s *Store) FinishMigration(ctx context.Context, id int64) error {
	if _, err := s.db.Exec(ctx, s.sql("FinishMigration"), id); err != nil {
		return fmt.Errorf("error recording the migration's end: %w", err)
	}
	return nil
}

// Migrations returns the latest definition migrations.
func (s *Store) Migrations(ctx context.Context, limit int) ([]DefinitionMigration, error) {
	rows, err := s.db.Query(ctx, s.sql("Migrations"), limit)
	if err != nil {
		return nil, fmt.Errorf("error reading definition migrations: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (DefinitionMigration, error) {
		var m DefinitionMigration
		return m, r.Scan(&m.ID, &m.StartedAt, &m.FinishedAt, &m.Actor, &m.Reason, &m.Target, &m.PhaseSafe, &m.Requested, &m.Migrated, &m.Failed)
	})
}
