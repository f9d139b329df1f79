-- Reconcile runs and the divergences they track across runs.

-- name: InsertRun
INSERT INTO {{.Schema}}.reconcile_runs (started_at, finished_at, scope, compared, consistent,
    in_flight, unexpected, expected, new, resolved, counts, phases)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10) RETURNING run_id;

-- name: CreateFound
CREATE TEMP TABLE found (cycle_id bigint, report_id bigint, phase text, kind text,
    legacy_value text, shadow_value text, detail text, rule text) ON COMMIT DROP;

-- name: RefreshOpen
UPDATE {{.Schema}}.divergences d SET last_seen = $1, last_run = $2, legacy_value = f.legacy_value,
    shadow_value = f.shadow_value, detail = f.detail, rule = f.rule
FROM found f WHERE d.resolved_at IS NULL AND (d.cycle_id, d.report_id, d.phase, d.kind) = (f.cycle_id, f.report_id, f.phase, f.kind);

-- name: InsertNew
INSERT INTO {{.Schema}}.divergences (cycle_id, report_id, phase, kind, legacy_value, shadow_value, detail, rule,
    first_seen, last_seen, last_run)
SELECT f.cycle_id, f.report_id, f.phase, f.kind, f.legacy_value, f.shadow_value, f.detail, f.rule, $1, $1, $2 FROM found f
WHERE NOT EXISTS (SELECT 1 FROM {{.Schema}}.divergences d WHERE d.resolved_at IS NULL
    AND (d.cycle_id, d.report_id, d.phase, d.kind) = (f.cycle_id, f.report_id, f.phase, f.kind));

-- name: ResolveGone
-- Open divergences in scope that this run did not find are resolved, unless
-- their report is in flight, or their phase excluded (in legacy mode), so
-- not looked at this time: those keep their history.
UPDATE {{.Schema}}.divergences d SET resolved_at = $1
WHERE d.resolved_at IS NULL AND d.last_run <> $2 AND d.kind <> 'authority_conflict'
  AND ($3::bigint IS NULL OR d.cycle_id = $3)
  AND ($4::text IS NULL OR d.phase = $4)
  AND ($5::bigint[] IS NULL OR (d.cycle_id, d.report_id) IN (SELECT * FROM unnest($5::bigint[], $6::bigint[])))
  AND NOT ((d.cycle_id, d.report_id) IN (SELECT * FROM unnest($7::bigint[], $8::bigint[])))
  AND NOT (d.phase = ANY($9::text[]));

-- name: FirstSeen
SELECT cycle_id, report_id, phase, kind, first_seen FROM {{.Schema}}.divergences WHERE last_run = $1;

-- name: FinishRun
UPDATE {{.Schema}}.reconcile_runs SET new = $2, resolved = $3, finished_at = $4 WHERE run_id = $1;

-- name: Runs
SELECT run_id, started_at, finished_at, scope, compared, consistent, unexpected, expected, new, resolved, phases
FROM {{.Schema}}.reconcile_runs ORDER BY run_id DESC LIMIT $1;

-- name: RunTotals
SELECT count(*), coalesce(sum(compared), 0)::bigint, coalesce(sum(new), 0)::bigint, coalesce(sum(resolved), 0)::bigint
FROM {{.Schema}}.reconcile_runs;

-- name: OpenDivergenceCounts
SELECT phase, kind, coalesce(rule, '') <> '', count(*) FROM {{.Schema}}.divergences WHERE resolved_at IS NULL GROUP BY 1, 2, 3;
