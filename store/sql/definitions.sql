-- Definition migrations: moving running shadows to another definition
-- version, audited with each report's findings before and after.

-- name: ProjectedDefinitions
SELECT cycle_id, report_id, definition_id || '@' || definition_version FROM {{.Schema}}.shadow_keys;

-- name: ReportFindings
-- Each report's findings: historical ones, then the live window.
SELECT k.cycle_id, k.report_id, 'historical', v->>'phase', v->>'rule', coalesce(v->>'detail', '')
FROM {{.Schema}}.shadow_keys k, jsonb_array_elements(k.historical) v
WHERE (k.cycle_id, k.report_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
UNION ALL
SELECT k.cycle_id, k.report_id, 'live', v->>'phase', v->>'rule', coalesce(v->>'detail', '')
FROM {{.Schema}}.shadow_keys k, jsonb_array_elements(k.recent_violations) v
WHERE (k.cycle_id, k.report_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]));

-- name: PhasesInProgress
SELECT cycle_id, report_id, phase FROM {{.Schema}}.shadow_phases
WHERE state = 'in_progress' AND (cycle_id, report_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
ORDER BY 1, 2, 3;

-- name: StartMigration
INSERT INTO {{.Schema}}.definition_migrations (actor, reason, target, phase_safe, skipped)
VALUES ($1, $2, $3, $4, $5) RETURNING migration_id, started_at;

-- name: MigrationReport
INSERT INTO {{.Schema}}.definition_migration_reports (migration_id, cycle_id, report_id, from_definition, redrive_id, before)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: MigrationRequested
UPDATE {{.Schema}}.definition_migrations SET requested = requested + $2 WHERE migration_id = $1;

-- name: MigrationOutcome
UPDATE {{.Schema}}.definition_migration_reports SET after = $4, outcome = $5
WHERE migration_id = $1 AND cycle_id = $2 AND report_id = $3;

-- name: FinishMigration
UPDATE {{.Schema}}.definition_migrations SET finished_at = now() WHERE migration_id = $1;

-- name: Migrations
SELECT m.migration_id, m.started_at, m.finished_at, m.actor, m.reason, m.target, m.phase_safe, m.requested,
       count(r.*) FILTER (WHERE r.outcome = 'migrated'), count(r.*) FILTER (WHERE r.outcome NOT IN ('migrated', 'requested'))
FROM {{.Schema}}.definition_migrations m LEFT JOIN {{.Schema}}.definition_migration_reports r USING (migration_id)
GROUP BY m.migration_id ORDER BY m.migration_id DESC LIMIT $1;
