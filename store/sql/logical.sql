-- Log-based capture: the change log's writer, its position per slot, the
-- bridge's write marks and the capture floors (migration 014 explains
-- each).

-- name: WriteLogged
-- Changes decoded from the slot, in commit order. Arrays keep it one round
-- trip per batch; values travel as text and are cast here. A change is
-- captured when legacy commits it (tx_time, the commit's time): the
-- moment a trigger-captured change becomes visible too, so capture lag
-- means the same in both modes.
INSERT INTO {{.Schema}}.changes (op, source, old_row, new_row, origin, tx_time, captured_at, source_xid, source_lsn)
SELECT op, source, old_row, new_row, origin, tx_time, tx_time, source_xid, source_lsn
FROM unnest($1::text[], $2::text[], $3::text[]::jsonb[], $4::text[]::jsonb[], $5::text[],
    $6::timestamptz[], $7::text[]::xid8[], $8::text[]::pg_lsn[]) AS c(op, source, old_row, new_row, origin, tx_time, source_xid, source_lsn);

-- name: CurrentXid
SELECT pg_current_xact_id()::text;

-- name: LoggedPosition
SELECT lsn::text FROM {{.Schema}}.logical_positions WHERE slot = $1;

-- name: SetLoggedPosition
INSERT INTO {{.Schema}}.logical_positions (slot, lsn) VALUES ($1, $2::pg_lsn)
ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, updated_at = now()
WHERE {{.Schema}}.logical_positions.lsn < excluded.lsn;

-- name: ResetLoggedPositions
-- A new slot starts at its consistent point; positions of former slots
-- (before a failover, say) mean nothing for it.
WITH gone AS (DELETE FROM {{.Schema}}.logical_positions WHERE slot <> $1)
INSERT INTO {{.Schema}}.logical_positions (slot, lsn) VALUES ($1, $2::pg_lsn)
ON CONFLICT (slot) DO UPDATE SET lsn = excluded.lsn, created_at = now(), updated_at = now();

-- name: MarkBridgeWrite
-- Marks the transaction as the bridge's write-back, for both capture
-- modes: the capture trigger reads the setting, the decoder sees the row.
INSERT INTO {{.Schema}}.write_marks (at)
SELECT now() FROM (SELECT set_config('dtebridge.origin', $1, true)) s
ON CONFLICT (xid) DO NOTHING;

-- name: PruneWriteMarks
DELETE FROM {{.Schema}}.write_marks WHERE at < now() - make_interval(secs => $1);

-- name: AddFloors
-- $2 and $3 are the re-driven reports' keys; empty arrays make one floor
-- for every report (a backfill).
INSERT INTO {{.Schema}}.capture_floors (consumer, cycle_id, report_id, snapshot, lsn)
SELECT $1, k.c, k.r, $4::pg_snapshot, $5::pg_lsn FROM unnest($2::bigint[], $3::bigint[]) AS k(c, r)
UNION ALL
SELECT $1, NULL, NULL, $4::pg_snapshot, $5::pg_lsn WHERE cardinality($2::bigint[]) = 0;

-- name: Floors
SELECT cycle_id, report_id, snapshot::text, lsn::text FROM {{.Schema}}.capture_floors WHERE consumer = $1 ORDER BY id;

-- name: DropFloors
DELETE FROM {{.Schema}}.capture_floors WHERE consumer = $1 AND lsn <= $2::pg_lsn;

-- name: NotifyReaders
-- Wakes idle readers (the capture trigger does the same).
SELECT pg_notify($1, '') WHERE EXISTS (SELECT 1 FROM {{.Schema}}.readers WHERE waiting_until > now());
