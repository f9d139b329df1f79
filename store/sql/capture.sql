-- The change log, consumer checkpoints and reader wake-ups. The visibility
-- test of the change log (a change is in a consumer's backlog when its
-- transaction is not visible in the acknowledged snapshot) lives here and
-- nowhere else; adapter/reader.go explains why it is exact.

-- name: TryLeaderLock
SELECT pg_try_advisory_lock(hashtext('dtebridge.capture'), hashtext($1));

-- name: LeaderAlive
SELECT EXISTS (SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = hashtext('dtebridge.capture')::oid AND objid = hashtext($1)::oid);

-- name: SetWaiting
INSERT INTO {{.Schema}}.readers (consumer, waiting_until) VALUES ($1, $2)
ON CONFLICT (consumer) DO UPDATE SET waiting_until = excluded.waiting_until;

-- name: CreateCheckpoint
INSERT INTO {{.Schema}}.checkpoints (consumer) VALUES ($1) ON CONFLICT (consumer) DO NOTHING;

-- name: TakeCheckpoint
UPDATE {{.Schema}}.checkpoints SET leader_epoch = leader_epoch + 1, leader = $2, updated_at = now()
WHERE consumer = $1
RETURNING acked_snapshot::text, epoch_snapshot::text, epoch_last_id, seq, leader_epoch, backfill_requested_at IS NOT NULL;

-- name: Requests
SELECT c.backfill_requested_at IS NOT NULL,
       EXISTS (SELECT 1 FROM {{.Schema}}.redrives r WHERE r.consumer = c.consumer AND r.done_at IS NULL)
FROM {{.Schema}}.checkpoints c WHERE c.consumer = $1;

-- name: SaveCheckpoint
UPDATE {{.Schema}}.checkpoints SET acked_snapshot = $2::pg_snapshot, epoch_snapshot = $3::pg_snapshot,
    epoch_last_id = $4, seq = $5, updated_at = now()
WHERE consumer = $1 AND leader_epoch = $6;

-- name: SaveBackfillCheckpoint
UPDATE {{.Schema}}.checkpoints SET acked_snapshot = $2::pg_snapshot, epoch_snapshot = $3::pg_snapshot,
    epoch_last_id = $4, seq = $5, updated_at = now(), backfill_requested_at = NULL, backfilled_at = now()
WHERE consumer = $1 AND leader_epoch = $6;

-- name: EpochSnapshot
-- The snapshot bounding a new epoch, whether re-drives are pending, and,
-- under log-based capture, how far the change log holds legacy's
-- transactions as of that snapshot (one statement, so one snapshot).
SELECT pg_current_snapshot()::text,
       EXISTS (SELECT 1 FROM {{.Schema}}.redrives WHERE consumer = $1 AND done_at IS NULL),
       (SELECT max(lsn)::text FROM {{.Schema}}.logical_positions),
       pg_current_wal_insert_lsn()::text;

-- name: DeclareEpoch
DECLARE epoch NO SCROLL CURSOR FOR
SELECT id, op, source, old_row, new_row, origin, tx_time, captured_at, coalesce(source_xid, xid)::text, source_xid IS NOT NULL
FROM {{.Schema}}.changes
WHERE (xid >= pg_snapshot_xmax($1::pg_snapshot) OR xid IN (SELECT pg_snapshot_xip($1::pg_snapshot)))
  AND pg_visible_in_snapshot(xid, $2::pg_snapshot)
  AND id > $3
ORDER BY id;

-- name: RequestBackfill
INSERT INTO {{.Schema}}.checkpoints AS c (consumer, backfill_requested_at) VALUES ($1, now())
ON CONFLICT (consumer) DO UPDATE SET backfill_requested_at = now();

-- name: Backlog
WITH cp AS (SELECT acked_snapshot s FROM {{.Schema}}.checkpoints WHERE consumer = $1)
SELECT count(*), coalesce(extract(epoch FROM now() - min(captured_at)), 0)::float8 FROM {{.Schema}}.changes
WHERE (SELECT s FROM cp) IS NULL
   OR xid >= pg_snapshot_xmax((SELECT s FROM cp)) OR xid IN (SELECT pg_snapshot_xip((SELECT s FROM cp)));

-- name: PendingByReport
-- Per report, the oldest change a consumer has not acknowledged. The
-- report's columns are read from the raw row by name ($2, $3); a value that
-- is not an integer has no report, and quarantine deals with it.
SELECT * FROM (
    SELECT CASE WHEN (coalesce(c.new_row, c.old_row)->>$2) ~ '^-?[0-9]{1,18}$' THEN (coalesce(c.new_row, c.old_row)->>$2)::bigint END AS cycle_id,
           CASE WHEN (coalesce(c.new_row, c.old_row)->>$3) ~ '^-?[0-9]{1,18}$' THEN (coalesce(c.new_row, c.old_row)->>$3)::bigint END AS report_id,
           min(c.captured_at)
    FROM {{.Schema}}.changes c LEFT JOIN {{.Schema}}.checkpoints cp ON cp.consumer = $1
    WHERE cp.acked_snapshot IS NULL OR c.xid >= pg_snapshot_xmax(cp.acked_snapshot) OR c.xid IN (SELECT pg_snapshot_xip(cp.acked_snapshot))
    GROUP BY 1, 2) p
WHERE cycle_id IS NOT NULL AND report_id IS NOT NULL;

-- name: Prune
-- Changes every live consumer has acknowledged, older than retention ($1).
-- A consumer other than the mirror that has not renewed its checkpoint for
-- $2 seconds (a crashed capture tail --keep) no longer holds pruning back;
-- the mirror's checkpoint never expires.
WITH live AS (SELECT acked_snapshot FROM {{.Schema}}.checkpoints
    WHERE consumer = 'mirror' OR updated_at > now() - make_interval(secs => $2))
DELETE FROM {{.Schema}}.changes WHERE id IN (
    SELECT id FROM {{.Schema}}.changes
    WHERE xid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM live)
      AND NOT EXISTS (SELECT 1 FROM live WHERE acked_snapshot IS NULL)
      AND captured_at < now() - make_interval(secs => $1)
    LIMIT 10000);

-- name: TouchCheckpoint
UPDATE {{.Schema}}.checkpoints SET updated_at = now() WHERE consumer = $1 AND leader_epoch = $2;

-- name: Checkpoints
SELECT consumer, coalesce(leader, ''), coalesce(acked_snapshot::text, ''), seq,
       backfill_requested_at IS NOT NULL, backfilled_at, updated_at,
       consumer <> 'mirror' AND updated_at <= now() - make_interval(secs => $1)
FROM {{.Schema}}.checkpoints ORDER BY consumer;

-- name: DropCheckpoint
DELETE FROM {{.Schema}}.checkpoints WHERE consumer = $1;

-- name: ChangeCount
SELECT count(*) FROM {{.Schema}}.changes;

-- name: Now
SELECT clock_timestamp();

-- name: WakeCapture
-- Wakes an idle capture leader (the channel the capture trigger notifies).
SELECT pg_notify($1, '');

-- name: ReportChanges
-- A report's captured changes among the log's latest 20,000, newest
-- first, for diagnosis; $3 and $4 name the legacy columns holding the
-- report's key.
SELECT id, op, origin, captured_at FROM {{.Schema}}.changes
WHERE id > (SELECT coalesce(max(id), 0) - 20000 FROM {{.Schema}}.changes)
  AND ((new_row->>$3) = $1::text AND (new_row->>$4) = $2::text
   OR (old_row->>$3) = $1::text AND (old_row->>$4) = $2::text)
ORDER BY id DESC LIMIT 100;

-- name: TxPhaseLabels
-- The phase labels (before and after) of report ($4, $5)'s rows that legacy
-- transaction $1 changed; $2, $3 and $6 name the legacy columns holding the
-- cycle, the report and the phase.
SELECT DISTINCT r.row_image->>$6 FROM {{.Schema}}.changes c,
    LATERAL (VALUES (c.new_row), (c.old_row)) AS r(row_image)
WHERE (c.xid = $1::xid8 AND c.source_xid IS NULL OR c.source_xid = $1::xid8) AND r.row_image IS NOT NULL
  AND (r.row_image->>$2) = $4::text AND (r.row_image->>$3) = $5::text AND r.row_image->>$6 IS NOT NULL;
