-- The quarantine: changes the bridge could not translate, with their raw
-- values, and the later changes of the same report held behind them.

-- name: QuarantineInsert
INSERT INTO {{.Schema}}.quarantine (event_id, change_id, cycle_id, report_id, reason, detail, raw, seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING;

-- name: HeldKeys
SELECT DISTINCT cycle_id, report_id FROM {{.Schema}}.quarantine
WHERE delivered_at IS NULL AND cycle_id IS NOT NULL AND report_id IS NOT NULL;

-- name: QuarantineList
SELECT event_id, change_id, cycle_id, report_id, reason, detail, raw, quarantined_at, retried_at, released_at, delivered_at,
       coalesce(resolution, ''), coalesce(resolved_by, ''), coalesce(resolved_reason, '')
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
SELECT q.event_id, q.cycle_id, q.report_id, q.raw, q.translated, q.seq,
       coalesce((SELECT m.delivered_seq FROM {{.Schema}}.mirror_keys m WHERE m.cycle_id = q.cycle_id AND m.report_id = q.report_id), 0)
FROM {{.Schema}}.quarantine q
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

-- name: QuarantineSuperseded
-- Entries a re-drive from legacy truth replaces: they are resolved, not
-- delivered.
UPDATE {{.Schema}}.quarantine SET delivered_at = now(), resolution = $2, resolved_by = $3, resolved_reason = $4
WHERE event_id = ANY($1) AND delivered_at IS NULL;

-- name: QuarantineResolve
-- Resolves a pending entry ($1) as an operator asks: skip drops it alone;
-- resync ($5) drops every pending entry of its report, which is then
-- re-driven from legacy.
UPDATE {{.Schema}}.quarantine q SET delivered_at = now(), resolution = $2, resolved_by = $3, resolved_reason = $4
WHERE q.delivered_at IS NULL AND (q.event_id = $1 OR ($5 AND (q.cycle_id, q.report_id) =
    (SELECT e.cycle_id, e.report_id FROM {{.Schema}}.quarantine e WHERE e.event_id = $1)))
RETURNING q.event_id, q.cycle_id, q.report_id;

-- name: QuarantineReleasedUndelivered
SELECT count(*) FROM {{.Schema}}.quarantine WHERE released_at IS NOT NULL AND delivered_at IS NULL;
