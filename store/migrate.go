package store

import (
	"context"
	"embed"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is the outcome of Migrate.
type Migration struct {
	// From and To are the schema versions before and after.
	From, To int32
	// SQL is every statement run (or, on a dry run, to run), in order.
	SQL []string
}

// Migrate creates or upgrades the bridge schema named schema with the
// embedded, numbered migrations (tern), on conn. With dryRun it changes
// nothing and returns the SQL it would run.
func Migrate(ctx context.Context, conn *pgx.Conn, schema string, dryRun bool) (*Migration, error) {
	quoted := pgx.Identifier{schema}.Sanitize()
	versionTable := quoted + ".schema_version"
	res := &Migration{}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&exists); err != nil {
		return nil, fmt.Errorf("error inspecting %s: %w", versionTable, err)
	}
	if exists {
		if err := conn.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&res.From); err != nil {
			return nil, fmt.Errorf("error reading %s: %w", versionTable, err)
		}
	}
	// Loading needs no connection; running does.
	var mconn *pgx.Conn
	create := "CREATE SCHEMA IF NOT EXISTS " + quoted
	if !dryRun {
		mconn = conn
		if _, err := conn.Exec(ctx, create); err != nil {
			return nil, fmt.Errorf("error creating schema %s: %w", schema, err)
		}
	}
	res.SQL = append(res.SQL, create+";")
	m, err := migrate.NewMigratorEx(ctx, mconn, versionTable, &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("error preparing migrations: %w", err)
	}
	m.Data["Schema"] = quoted
	sub, _ := fs.Sub(migrationFiles, "migrations")
	if err := m.LoadMigrations(sub); err != nil {
		return nil, fmt.Errorf("error loading migrations: %w", err)
	}
	for _, mig := range m.Migrations {
		if mig.Sequence > res.From {
			res.SQL = append(res.SQL, fmt.Sprintf("-- migration %d: %s\n%s", mig.Sequence, mig.Name, mig.UpSQL))
		}
	}
	res.To = int32(len(m.Migrations))
	if dryRun {
		return res, nil
	}
	if err := m.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("error migrating schema %s: %w", schema, err)
	}
	return res, nil
}

// Version returns the installed schema version, 0 when the bridge is not
// installed.
func (s *Store) Version(ctx context.Context) (int32, error) {
	var v int32
	err := s.db.QueryRow(ctx, `SELECT coalesce((SELECT version FROM `+s.quoted+`.schema_version), 0)`).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("error reading the bridge schema version (is the bridge installed? run dtebridge install): %w", err)
	}
	return v, nil
}

// CaptureSQL renders the statements that attach capture to the legacy
// table (the capture functions in the bridge schema and the triggers on
// the table) and, with detach, the statements that remove the bridge.
type CaptureSQL struct {
	// Table is the legacy table, quoted.
	Table string
	// Channel is the NOTIFY channel, as a quoted literal.
	Channel string
	// KeyOf and KeyJoin render the key columns for the statement triggers.
	KeyOf   func(alias string) string
	KeyJoin func(a, b string) string
	// Create and DropTriggers say which triggers to create and drop.
	Create       func(name string) bool
	DropTriggers []string
}

// Attach renders the attach statements.
func (s *Store) Attach(c CaptureSQL) (string, error) {
	return s.render("attach", map[string]any{"Table": c.Table, "Channel": c.Channel, "KeyOf": c.KeyOf, "KeyJoin": c.KeyJoin,
		"Create": c.Create, "DropTriggers": c.DropTriggers})
}

// Detach renders the statements that remove capture and the bridge schema.
func (s *Store) Detach() (string, error) { return s.render("detach", nil) }
