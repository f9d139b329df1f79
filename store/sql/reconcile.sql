-- Reconcile runs and the divergences they track across runs.

-- name: InsertRun
INSERT INTO {{.Schema}}.reconcile_runs (started_at, finished_at, scope, compared, consistent,
    in_flight, unexpected, expected, new, resolved, counts, phases, kind, snapshot, fingerprint, base_run, touched,
    in_flight_cycles, in_flight_reports)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9, $10, $11, $12::pg_snapshot, $13, $14, $15, $16, $17) RETURNING run_id;

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
SELECT run_id, started_at, finished_at, scope, compared, consistent, unexpected, expected, new, resolved, phases, kind
FROM {{.Schema}}.reconcile_runs ORDER BY run_id DESC LIMIT $1;

-- name: GateRuns
-- The runs the cutover gates judge by, newest first: the last $1 that are
-- not incremental, and every incremental run since the newest full run.
SELECT run_id, started_at, finished_at, scope, compared, consistent, unexpected, expected, new, resolved, phases, kind
FROM {{.Schema}}.reconcile_runs r
WHERE r.run_id IN (SELECT run_id FROM {{.Schema}}.reconcile_runs WHERE kind <> 'incremental' ORDER BY run_id DESC LIMIT $1)
   OR (r.kind = 'incremental' AND r.run_id > coalesce((SELECT max(run_id) FROM {{.Schema}}.reconcile_runs WHERE kind = 'full'), 0))
ORDER BY run_id DESC;

-- name: RunTotals
SELECT count(*), coalesce(sum(compared), 0)::bigint, coalesce(sum(new), 0)::bigint, coalesce(sum(resolved), 0)::bigint
FROM {{.Schema}}.reconcile_runs;

-- name: OpenDivergenceCounts
SELECT phase, kind, coalesce(rule, '') <> '', count(*) FROM {{.Schema}}.divergences WHERE resolved_at IS NULL GROUP BY 1, 2, 3;

-- name: IncrementalBase
-- The latest run an incremental run can build on: one that looked at every
-- report (a full run or an incremental one) and recorded its snapshot.
SELECT run_id, snapshot::text, coalesce(fingerprint, ''), started_at, coalesce(in_flight_cycles, '{}'), coalesce(in_flight_reports, '{}')
FROM {{.Schema}}.reconcile_runs
WHERE snapshot IS NOT NULL AND kind IN ('full', 'incremental') ORDER BY run_id DESC LIMIT 1;

-- name: ChangedRows
-- The captured changes a snapshot ($1) did not see, each image once: the
-- report's columns read by name ($2, $3), and for the attribute tables
-- ($4) the row itself. As the reader does, a change of any table that is
-- not an attribute table is a phase row's.
SELECT DISTINCT c.source, v.r->>$2, v.r->>$3, CASE WHEN c.source = ANY($4::text[]) THEN v.r END
FROM {{.Schema}}.changes c CROSS JOIN LATERAL (VALUES (c.old_row), (c.new_row)) v(r)
WHERE c.xid >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(c.xid, $1::pg_snapshot) AND v.r IS NOT NULL;

-- name: WrittenKeys
-- The reports whose shadow side a snapshot ($1) did not see written: the
-- projection, a phase row deleted, or the mirror's record of deliveries.
SELECT cycle_id, report_id FROM {{.Schema}}.shadow_keys
WHERE written >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(written, $1::pg_snapshot)
UNION SELECT cycle_id, report_id FROM {{.Schema}}.shadow_phases
WHERE written >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(written, $1::pg_snapshot)
UNION SELECT cycle_id, report_id FROM {{.Schema}}.mirror_keys
WHERE written >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(written, $1::pg_snapshot)
UNION SELECT cycle_id, report_id FROM {{.Schema}}.shadow_deletes
WHERE cycle_id IS NOT NULL AND written >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(written, $1::pg_snapshot);

-- name: ShadowTruncated
-- Whether a table of the shadow's side was truncated since snapshot $1.
SELECT EXISTS (SELECT 1 FROM {{.Schema}}.shadow_deletes
WHERE cycle_id IS NULL AND written >= pg_snapshot_xmin($1::pg_snapshot) AND NOT pg_visible_in_snapshot(written, $1::pg_snapshot));

-- name: PruneShadowDeletes
-- What a recorded snapshot ($1) saw is no longer needed.
DELETE FROM {{.Schema}}.shadow_deletes WHERE written < pg_snapshot_xmin($1::pg_snapshot);

-- name: OpenKeysOfKinds
-- The reports with open divergences of the kinds given ($1).
SELECT DISTINCT cycle_id, report_id FROM {{.Schema}}.divergences WHERE resolved_at IS NULL AND kind = ANY($1::text[]);

-- name: CutoverLogMark
-- What has changed modes so far: an incremental run whose base saw another
-- mark runs in full.
SELECT count(*) || ':' || coalesce(max(log_id), 0) FROM {{.Schema}}.cutover_log;

-- name: ShadowKeysOfReports
SELECT cycle_id, report_id FROM {{.Schema}}.shadow_keys WHERE report_id = ANY($1::bigint[]);
