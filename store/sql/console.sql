-- What the console reads: open divergences a page at a time, a report's
-- history, and figures by phase.

-- name: ListDivergences
-- Open divergences, newest first, filtered ($1 phase, $2 kind, $3 expected,
-- $4 first seen since), after the row ($5 first_seen, $6 id) of the last
-- page, $7 of them.
SELECT divergence_id, cycle_id, report_id, phase, kind, coalesce(legacy_value, ''), coalesce(shadow_value, ''), coalesce(detail, ''),
       coalesce(rule, ''), first_seen, last_seen
FROM {{.Schema}}.divergences
WHERE resolved_at IS NULL
  AND ($1::text IS NULL OR phase = $1) AND ($2::text IS NULL OR kind = $2)
  AND ($3::boolean IS NULL OR (rule IS NOT NULL) = $3) AND ($4::timestamptz IS NULL OR first_seen >= $4)
  AND ($5::timestamptz IS NULL OR (first_seen, divergence_id) < ($5, $6))
ORDER BY first_seen DESC, divergence_id DESC
LIMIT $7;

-- name: CountDivergences
SELECT count(*) FROM {{.Schema}}.divergences
WHERE resolved_at IS NULL
  AND ($1::text IS NULL OR phase = $1) AND ($2::text IS NULL OR kind = $2)
  AND ($3::boolean IS NULL OR (rule IS NOT NULL) = $3) AND ($4::timestamptz IS NULL OR first_seen >= $4);

-- name: ReportDivergences
-- A report's divergences, open and resolved, newest first.
SELECT divergence_id, cycle_id, report_id, phase, kind, coalesce(legacy_value, ''), coalesce(shadow_value, ''), coalesce(detail, ''),
       coalesce(rule, ''), first_seen, last_seen, resolved_at
FROM {{.Schema}}.divergences WHERE cycle_id = $1 AND report_id = $2
ORDER BY first_seen DESC, divergence_id DESC LIMIT 200;

-- name: ReportQuarantine
SELECT event_id, reason, detail, quarantined_at, delivered_at IS NOT NULL FROM {{.Schema}}.quarantine
WHERE cycle_id = $1 AND report_id = $2 ORDER BY seq;

-- name: ReportShadow
-- One report's shadow: its definition and attributes.
SELECT definition_id || '@' || definition_version, attributes FROM {{.Schema}}.shadow_keys WHERE cycle_id = $1 AND report_id = $2;
