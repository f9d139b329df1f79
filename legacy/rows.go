package legacy

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// SnapshotSQL is the query that reads legacy rows as they stand, each as
// its JSON image, its key as text and the transaction's time: every row in
// key order, or (byReport) the rows of the reports whose cycles and
// reports are $1 and $2, report by report. Backfills and re-drives read
// legacy truth with it, in the snapshot they join the stream at.
func (t *Table) SnapshotSQL(byReport bool) string {
	q := "SELECT to_jsonb(t), " + t.KeyExpr("t") + ", now() FROM " + t.Ident() + " t"
	if !byReport {
		return q + " ORDER BY " + t.KeyOrder("t")
	}
	cy, rp := Col("t", t.Columns.Cycle), Col("t", t.Columns.Report)
	return q + " WHERE (" + cy + ", " + rp + ") IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))" +
		" ORDER BY " + cy + ", " + rp + ", " + t.KeyOrder("t")
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
