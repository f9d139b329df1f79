package legacy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// AttributeNames lists the configured attributes, sorted.
func (t *Table) AttributeNames() []string {
	return slices.Sorted(func(yield func(string) bool) {
		for n := range t.Attributes {
			if !yield(n) {
				return
			}
		}
	})
}

// AttributeTables lists the tables attributes come from, each once.
func (t *Table) AttributeTables() []string {
	var out []string
	for _, n := range t.AttributeNames() {
		if tb := t.Attributes[n].Table; !slices.Contains(out, tb) {
			out = append(out, tb)
		}
	}
	return out
}

// AttributeSources lists the tables attributes come from as capture
// names them in the change log: schema.table.
func (t *Table) AttributeSources() []string {
	var out []string
	for _, tb := range t.AttributeTables() {
		out = append(out, qualified(tb))
	}
	return out
}

func quoteText(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func ident(table string) string { return pgx.Identifier(strings.Split(table, ".")).Sanitize() }

// attributesFrom is the SQL of every configured attribute of the (cycle,
// report) pairs in keys (a relation with columns c and r): rows of cycle,
// report, attribute name and value as text; a report without a value has
// no row for it.
func (t *Table) attributesFrom(keys string) string {
	var parts []string
	for _, n := range t.AttributeNames() {
		a := t.Attributes[n]
		on := "a." + pgx.Identifier{a.Key}.Sanitize() + "::bigint = k.r"
		if a.Cycle != "" {
			on += " AND a." + pgx.Identifier{a.Cycle}.Sanitize() + "::bigint = k.c"
		}
		parts = append(parts, "SELECT k.c, k.r, "+quoteText(n)+", a."+pgx.Identifier{a.Column}.Sanitize()+"::text FROM "+keys+
			" JOIN "+ident(a.Table)+" a ON "+on+" WHERE a."+pgx.Identifier{a.Column}.Sanitize()+" IS NOT NULL")
	}
	return strings.Join(parts, "\nUNION ALL ")
}

// AttributesSQL is the query of the configured attributes of the reports
// whose cycles and reports are $1 and $2: cycle, report, name, value.
func (t *Table) AttributesSQL() string {
	return t.attributesFrom("unnest($1::bigint[], $2::bigint[]) AS k(c, r)")
}

// AllAttributesSQL is the query of the configured attributes of every
// report the phase table holds, one row per report: cycle, report and the
// attributes as a JSON object (empty without any).
func (t *Table) AllAttributesSQL() string {
	keys := "(SELECT DISTINCT " + Col("", t.Columns.Cycle) + "::bigint AS c, " + Col("", t.Columns.Report) + "::bigint AS r FROM " + t.Ident() + ") AS k"
	return "WITH v(c, r, name, value) AS (" + t.attributesFrom(keys) + ")\n" +
		"SELECT c, r, jsonb_object_agg(name, value) FROM v GROUP BY 1, 2"
}

// ReadAttributes reads the configured attributes of keys (nil without any
// configured): each report's map holds the attributes it has a value for.
func (t *Table) ReadAttributes(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, keys []dtetype.Key) (map[dtetype.Key]map[string]string, error) {
	if len(t.Attributes) == 0 || len(keys) == 0 {
		return nil, nil
	}
	cy, rp := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		cy[i], rp[i] = k.CycleID, k.ReportID
	}
	rows, err := db.Query(ctx, t.AttributesSQL(), cy, rp)
	if err != nil {
		return nil, fmt.Errorf("error reading report attributes (legacy.attributes): %w", err)
	}
	defer rows.Close()
	out := make(map[dtetype.Key]map[string]string, len(keys))
	for _, k := range keys {
		out[k] = map[string]string{}
	}
	for rows.Next() {
		var k dtetype.Key
		var name, value string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &name, &value); err != nil {
			return nil, err
		}
		out[k][name] = value
	}
	return out, rows.Err()
}

// KeysOfReportsSQL is the query of the (cycle, report) pairs the phase
// table holds for the report ids in $1.
func (t *Table) KeysOfReportsSQL() string {
	return "SELECT DISTINCT " + Col("", t.Columns.Cycle) + "::bigint, " + Col("", t.Columns.Report) + "::bigint FROM " + t.Ident() +
		" WHERE " + Col("", t.Columns.Report) + "::bigint = ANY($1::bigint[])"
}

// AttributeReport returns the report id (and the cycle, where the
// attribute is per cycle) that a captured row of attribute table source
// belongs to; ok is false when source holds no attribute or the row has no
// key.
func (t *Table) AttributeReport(source string, row []byte) (report int64, cycle *int64, ok bool) {
	m, err := decodeRow(row)
	if err != nil || m == nil {
		return 0, nil, false
	}
	for _, n := range t.AttributeNames() {
		a := t.Attributes[n]
		if !sameTable(a.Table, source) {
			continue
		}
		r, err := intValue(m, a.Key)
		if err != nil || r == nil {
			return 0, nil, false
		}
		if a.Cycle != "" {
			if c, err := intValue(m, a.Cycle); err == nil && c != nil {
				cycle = c
			}
		}
		return *r, cycle, true
	}
	return 0, nil, false
}

// sameTable compares a configured table name with a captured source
// (always schema.table); an unqualified name is in public.
func sameTable(configured, source string) bool { return qualified(configured) == source }
