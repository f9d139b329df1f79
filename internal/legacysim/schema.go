package legacysim

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ErrSchemaExists means the database already has a workflow_phases table.
var ErrSchemaExists = errors.New("legacy schema already present (table workflow_phases exists)")

// Init applies the profile's legacy schema to db in one transaction. It
// refuses a database that already has workflow_phases.
func Init(ctx context.Context, db DB, p *Profile) error {
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT to_regclass('workflow_phases') IS NOT NULL`).Scan(&exists); err != nil {
			return fmt.Errorf("error inspecting database: %w", err)
		}
		if exists {
			return ErrSchemaExists
		}
		if _, err := tx.Exec(ctx, p.Schema); err != nil {
			return fmt.Errorf("error applying %s schema: %w", p.Name, err)
		}
		return nil
	})
}
