-- The shadow projection (what each shadow workflow last projected) and the
-- mirror's per-report delivery watermark.

-- name: ProjectKey
INSERT INTO {{.Schema}}.shadow_keys AS k (cycle_id, report_id, definition_id, definition_version,
    version, applied_seq, applied, violations, violation_counts, recent_violations, historical, attributes, divergent, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now())
ON CONFLICT (cycle_id, report_id) DO UPDATE SET definition_id = excluded.definition_id,
    definition_version = excluded.definition_version, version = excluded.version,
    applied_seq = excluded.applied_seq, applied = excluded.applied, violations = excluded.violations,
    violation_counts = excluded.violation_counts, recent_violations = excluded.recent_violations,
    historical = excluded.historical, attributes = excluded.attributes, divergent = excluded.divergent, updated_at = now()
WHERE k.version < excluded.version
RETURNING true;

-- name: ProjectPhase
INSERT INTO {{.Schema}}.shadow_phases AS s (cycle_id, report_id, phase, row_id, rows, state, base_state,
    legacy_status, status, override, planned_start, planned_end, actual_start, actual_end, started_by,
    completed_by, status_column, last_event_id, last_seq, tx_time, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
ON CONFLICT (cycle_id, report_id, phase) DO UPDATE SET row_id = excluded.row_id, rows = excluded.rows,
    state = excluded.state, base_state = excluded.base_state, legacy_status = excluded.legacy_status,
    status = excluded.status, override = excluded.override, planned_start = excluded.planned_start,
    planned_end = excluded.planned_end, actual_start = excluded.actual_start, actual_end = excluded.actual_end,
    started_by = excluded.started_by, completed_by = excluded.completed_by, status_column = excluded.status_column,
    last_event_id = excluded.last_event_id, last_seq = excluded.last_seq, tx_time = excluded.tx_time,
    version = excluded.version
WHERE s.version < excluded.version;

-- name: ProjectDropStale
DELETE FROM {{.Schema}}.shadow_phases WHERE cycle_id = $1 AND report_id = $2 AND version < $3;

-- name: ProjectCaughtUp
-- Caught up with what the mirror handed over: nothing is pending.
UPDATE {{.Schema}}.mirror_keys SET pending_since = NULL
WHERE cycle_id = $1 AND report_id = $2 AND delivered_seq <= $3 AND pending_since IS NOT NULL;

-- name: ProjectionVersion
SELECT coalesce((SELECT version FROM {{.Schema}}.shadow_keys WHERE cycle_id = $1 AND report_id = $2), 0);

-- name: ProjectedPhases
SELECT phase, row_id, rows, state, base_state, legacy_status, status, override, planned_start, planned_end,
       actual_start, actual_end, coalesce(started_by, ''), coalesce(completed_by, ''), coalesce(status_column, ''),
       last_event_id, last_seq, tx_time
FROM {{.Schema}}.shadow_phases WHERE cycle_id = $1 AND report_id = $2 ORDER BY phase;

-- name: ProjectedKeys
SELECT cycle_id, report_id FROM {{.Schema}}.shadow_keys
WHERE ($1::bigint IS NULL OR cycle_id = $1) ORDER BY cycle_id, report_id LIMIT $2;

-- name: AllProjectedKeys
SELECT cycle_id, report_id FROM {{.Schema}}.shadow_keys ORDER BY 1, 2;

-- name: ShadowSummary
SELECT (SELECT count(*) FROM {{.Schema}}.shadow_keys),
       coalesce((SELECT jsonb_object_agg(key, n) FROM (SELECT key, sum(value::int) n
           FROM {{.Schema}}.shadow_keys, jsonb_each_text(violation_counts) GROUP BY key) r), '{}'::jsonb);

-- name: ShadowPhaseStates
SELECT cycle_id, report_id, phase, state, legacy_status, rows FROM {{.Schema}}.shadow_phases;

-- name: Watermark
INSERT INTO {{.Schema}}.mirror_keys AS k (cycle_id, report_id, delivered_seq, delivered_at, pending_since)
SELECT c, r, s, now(), now() FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(c, r, s)
ON CONFLICT (cycle_id, report_id) DO UPDATE SET delivered_seq = greatest(k.delivered_seq, excluded.delivered_seq),
    delivered_at = now(), pending_since = coalesce(k.pending_since, now());

-- name: ReportsBehind
SELECT count(*) FROM {{.Schema}}.mirror_keys m LEFT JOIN {{.Schema}}.shadow_keys s USING (cycle_id, report_id)
WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq;

-- name: BehindReports
-- Per report the shadow has not caught up with, what the mirror handed
-- over and since when it has been pending.
SELECT m.cycle_id, m.report_id, coalesce(m.pending_since, m.delivered_at), m.delivered_seq, m.delivered_at,
       s.applied_seq, s.version, s.updated_at
FROM {{.Schema}}.mirror_keys m LEFT JOIN {{.Schema}}.shadow_keys s USING (cycle_id, report_id)
WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq;

-- name: Findings
-- The shadow's findings per origin (historical: judged from the legacy
-- history a backfill delivered; live: violations of live changes, in each
-- report's recent window), phase and rule, with the number of findings and
-- reports, and the first $2 reports involved (all with $2 = 0).
WITH f AS (
    SELECT true AS historical, k.cycle_id, k.report_id, v->>'phase' AS phase, v->>'rule' AS rule
    FROM {{.Schema}}.shadow_keys k, jsonb_array_elements(k.historical) v
    UNION ALL
    SELECT false, k.cycle_id, k.report_id, v->>'phase', v->>'rule'
    FROM {{.Schema}}.shadow_keys k, jsonb_array_elements(k.recent_violations) v WHERE k.violations > 0
), g AS (
    SELECT historical, phase, rule, count(*) AS findings,
           array_agg(DISTINCT ARRAY[cycle_id, report_id]) AS reports
    FROM f WHERE ($1::text IS NULL OR phase = $1) GROUP BY 1, 2, 3
)
SELECT historical, phase, rule, findings, cardinality(reports) / 2,
       ARRAY(SELECT reports[i][1] FROM generate_subscripts(reports, 1) i WHERE $2 = 0 OR i <= $2),
       ARRAY(SELECT reports[i][2] FROM generate_subscripts(reports, 1) i WHERE $2 = 0 OR i <= $2)
FROM g ORDER BY historical DESC, phase, rule;

-- name: HistoricalReports
SELECT count(*) FROM {{.Schema}}.shadow_keys k
WHERE EXISTS (SELECT 1 FROM jsonb_array_elements(k.historical) v WHERE $1::text IS NULL OR v->>'phase' = $1);

-- name: ShadowAttributes
SELECT cycle_id, report_id, attributes FROM {{.Schema}}.shadow_keys WHERE attributes <> '{}'::jsonb;

-- name: DivergentFlags
-- The reports whose shadow holds them divergent.
SELECT cycle_id, report_id FROM {{.Schema}}.shadow_keys WHERE divergent;
