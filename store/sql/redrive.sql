-- Re-drives: requests to rebuild reports' shadows from legacy truth, served
-- by the capture leader at an epoch boundary (see adapter/redrive.go).

-- name: RequestRedrive
-- The ids come back in the order of the keys given.
INSERT INTO {{.Schema}}.redrives (consumer, cycle_id, report_id, reason, requested_by, definition)
SELECT $1, c, r, $4, $5, $6 FROM unnest($2::bigint[], $3::bigint[]) WITH ORDINALITY AS u(c, r, n) ORDER BY n
RETURNING redrive_id;

-- name: PendingRedrives
SELECT redrive_id, cycle_id, report_id, reason, coalesce(definition, '') FROM {{.Schema}}.redrives
WHERE consumer = $1 AND done_at IS NULL ORDER BY redrive_id LIMIT $2;

-- name: FinishRedrive
UPDATE {{.Schema}}.redrives SET done_at = now(), seq = $2, rows = $3, error = $4 WHERE redrive_id = ANY($1) AND done_at IS NULL;

-- name: RedriveProgress
-- Per request: done, and whether the shadow has applied it.
SELECT r.redrive_id, r.cycle_id, r.report_id, r.done_at IS NOT NULL, coalesce(r.error, ''),
       r.done_at IS NOT NULL AND r.error IS NULL AND coalesce(s.applied_seq, -1) >= r.seq
FROM {{.Schema}}.redrives r LEFT JOIN {{.Schema}}.shadow_keys s USING (cycle_id, report_id)
WHERE r.redrive_id = ANY($1);
