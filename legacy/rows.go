package legacy

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// SnapshotSQL is the query that reads legacy rows as they stand, each as
// its JSON image, its key as text and the transaction's time, report by
// report (each report's rows together, in key order): every row, or
// (byReport) the rows of the reports whose cycles and reports are $1 and
// $2. Backfills and re-drives read legacy truth with it, in the snapshot
// they join the stream at; a backfill knows a report's rows are complete
// when the next report's begin.
func (t *Table) SnapshotSQL(byReport bool) string {
	q := "SELECT to_jsonb(t), " + t.KeyExpr("t") + ", now() FROM " + t.Ident() + " t"
	cy, rp := Col("t", t.Columns.Cycle), Col("t", t.Columns.Report)
	order := " ORDER BY " + cy + ", " + rp + ", " + t.KeyOrder("t")
	if !byReport {
		return q + order
	}
	return q + " WHERE (" + cy + ", " + rp + ") IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))" + order
}

// ScanSnapshot reads one row of SnapshotSQL as a snapshot change.
func (t *Table) ScanSnapshot(rows pgx.Rows) (*RawChange, error) {
	var row []byte
	var key string
	var at time.Time
	if err := rows.Scan(&row, &key, &at); err != nil {
		return nil, err
	}
	return &RawChange{Op: "S", Source: t.Name, RowKey: key, New: row, Origin: dtetype.OriginLegacy, TxTime: at, CapturedAt: at}, nil
}

// DuplicatesSQL is the query, with its arguments, that finds the phases
// holding more than one row: cycle, report, phase (the canonical id, or "?"
// and the label for a label no mapping knows) and the number of rows.
// Labels that map to one phase count together; ignored phases are skipped.
func (t *Table) DuplicatesSQL() (string, []any) {
	var labels, ids []string
	for l, v := range t.Phases.All() {
		labels, ids = append(labels, l), append(ids, string(v))
	}
	c := t.Columns
	phase := "coalesce(mp.phase, '?' || " + Col("w", c.Phase) + "::text)"
	return `WITH mp(label, phase) AS (SELECT * FROM unnest($1::text[], $2::text[]))
		SELECT ` + Col("w", c.Cycle) + `::bigint, ` + Col("w", c.Report) + `::bigint, ` + phase + `, count(*)
		FROM ` + t.Ident() + ` w LEFT JOIN mp ON mp.label = ` + Col("w", c.Phase) + `::text
		WHERE NOT (` + Col("w", c.Phase) + `::text = ANY($3::text[]))
		GROUP BY 1, 2, 3 HAVING count(*) > 1`, []any{labels, ids, append([]string{}, t.IgnorePhases...)}
}
