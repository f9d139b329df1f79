-- The quarantine: changes the bridge could not translate, with their raw
-- values, and the later changes of the same report held behind them.

-- name: QuarantineInsert
INSERT INTO {{.Schema}}.quarantine (event_id, change_id, cycle_id, report_id, reason, detail, raw, seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING;

-- name: HeldKeys
SELECT DISTINCT cycle_id, report_id FROM {{.Schema}}.quarantine
WHERE delivered_at IS NULL AND cycle_id IS NOT NULL AND report_id IS NOT NULL;

-- name: QuarantineList
SELECT event_id, change_id, cycle_id, report_id, reason, detail, raw, quarantined_at, retried_at, released_at, delivered_at
FROM {{.Schema}}.quarantine WHERE $1 OR delivered_at IS NULL ORDER BY seq;

-- name: QuarantineLockPending
SELECT event_id, cycle_id, report_id, raw, released_at IS NOT NULL, reason FROM {{.Schema}}.quarantine
WHERE delivered_at IS NULL ORDER BY cycle_id, report_id, seq FOR UPDATE;

-- name: QuarantineSkip
UPDATE {{.Schema}}.quarantine SET retried_at = now(), released_at = now(), delivered_at = now() WHERE event_id = $1;

-- name: QuarantineStillFails
UPDATE {{.Schema}}.quarantine SET retried_at = now(), reason = $2, detail = $3 WHERE event_id = $1;

-- name: QuarantineRelease
UPDATE {{.Schema}}.quarantine SET retried_at = now(), released_at = now(), translated = $2 WHERE event_id = $1;

-- name: QuarantineReleased
-- The pending entries of every report that has released ones, in order.
SELECT q.event_id, q.cycle_id, q.report_id, q.raw, q.translated FROM {{.Schema}}.quarantine q
WHERE q.delivered_at IS NULL AND (q.released_at IS NOT NULL OR EXISTS (
    SELECT 1 FROM {{.Schema}}.quarantine r WHERE r.delivered_at IS NULL AND r.released_at IS NOT NULL
    AND r.cycle_id = q.cycle_id AND r.report_id = q.report_id))
ORDER BY q.cycle_id, q.report_id, q.seq;

-- name: QuarantineSetReason
UPDATE {{.Schema}}.quarantine SET reason = $2, detail = $3 WHERE event_id = $1;

-- name: QuarantineDelivered
UPDATE {{.Schema}}.quarantine SET delivered_at = now() WHERE event_id = ANY($1);

-- name: QuarantinedReports
SELECT cycle_id, report_id, string_agg(DISTINCT reason, ', ') FROM {{.Schema}}.quarantine
WHERE delivered_at IS NULL AND cycle_id IS NOT NULL AND report_id IS NOT NULL GROUP BY 1, 2;

-- name: QuarantinePendingByReason
SELECT reason, count(*) FROM {{.Schema}}.quarantine WHERE delivered_at IS NULL GROUP BY 1;

-- name: QuarantineRefused
-- A released entry the shadow refused for good goes back to pending, with
-- its reason: retrying cannot help, resolving it can.
UPDATE {{.Schema}}.quarantine SET reason = $2, detail = $3, released_at = NULL, translated = NULL WHERE event_id = $1;
