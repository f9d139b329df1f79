package legacy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// ColumnType is a column's type as the catalog describes it.
type ColumnType struct {
	// Name is the type as format_type gives it, modifiers included: what
	// a cast to it names.
	Name string
	// Category is pg_type.typcategory: N numeric, S string, D date and
	// time, E enum, and so on.
	Category string
	// IsEnum says the type is an enum; Enum lists its labels in order.
	IsEnum bool
	Enum   []string
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// TableColumns reads the columns of table (schema-qualified or not) and
// their types, by name: none when the table does not exist or this role
// cannot see it. The bridge's every look at a legacy table's shape goes
// through it.
func TableColumns(ctx context.Context, db Querier, table string) (map[string]ColumnType, error) {
	rows, err := db.Query(ctx, `SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typcategory::text, t.typtype = 'e',
			coalesce((SELECT array_agg(enumlabel::text ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = a.atttypid), '{}')
		FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
		WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, Ident(table))
	if err != nil {
		return nil, fmt.Errorf("error inspecting table %s: %w", table, err)
	}
	defer rows.Close()
	out := map[string]ColumnType{}
	for rows.Next() {
		var name string
		var c ColumnType
		if err := rows.Scan(&name, &c.Name, &c.Category, &c.IsEnum, &c.Enum); err != nil {
			return nil, fmt.Errorf("error inspecting table %s: %w", table, err)
		}
		if !c.IsEnum {
			c.Enum = nil
		}
		out[name] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error inspecting table %s: %w", table, err)
	}
	return out, nil
}
