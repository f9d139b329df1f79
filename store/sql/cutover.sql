-- Cutover: modes per phase, reports pinned to the new engine, the audit
-- log, and the engine commands written back to legacy.

-- name: Modes
SELECT phase, mode, percent, updated_at, updated_by FROM {{.Schema}}.cutover_modes;

-- name: ModeForUpdate
SELECT mode, percent, updated_at, updated_by FROM {{.Schema}}.cutover_modes WHERE phase = $1;

-- name: Owned
SELECT coalesce((SELECT mode FROM {{.Schema}}.cutover_modes WHERE phase = $1), 'shadow'),
       coalesce((SELECT percent FROM {{.Schema}}.cutover_modes WHERE phase = $1), 0),
       EXISTS (SELECT 1 FROM {{.Schema}}.cutover_promoted WHERE phase = $1 AND cycle_id = $2 AND report_id = $3);

-- name: Promoted
SELECT phase, cycle_id, report_id FROM {{.Schema}}.cutover_promoted;

-- name: CutoverLock
SELECT pg_advisory_xact_lock(hashtext('dtebridge.cutover'), hashtext($1));

-- name: Pin
INSERT INTO {{.Schema}}.cutover_promoted (cycle_id, report_id, phase)
SELECT c, r, $3 FROM unnest($1::bigint[], $2::bigint[]) AS u(c, r) ON CONFLICT DO NOTHING;

-- name: ReleaseAll
DELETE FROM {{.Schema}}.cutover_promoted WHERE phase = $1 RETURNING cycle_id, report_id;

-- name: ResolveConflicts
-- Legacy is authoritative again: its writes are no longer conflicts.
UPDATE {{.Schema}}.divergences SET resolved_at = now()
WHERE phase = $1 AND kind = 'authority_conflict' AND resolved_at IS NULL;

-- name: SetMode
INSERT INTO {{.Schema}}.cutover_modes (phase, mode, percent, updated_at, updated_by) VALUES ($1, $2, $3, now(), $4)
ON CONFLICT (phase) DO UPDATE SET mode = excluded.mode, percent = excluded.percent, updated_at = now(), updated_by = excluded.updated_by
RETURNING updated_at;

-- name: LogMode
INSERT INTO {{.Schema}}.cutover_log (actor, phase, from_mode, to_mode, from_percent, to_percent, reason, forced, gate)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING log_id;

-- name: History
SELECT log_id, at, actor, phase, from_mode, to_mode, from_percent, to_percent, reason, forced, gate
FROM {{.Schema}}.cutover_log WHERE $1 = '' OR phase = $1 ORDER BY log_id DESC LIMIT $2;

-- name: RecordConflict
-- A redelivered change is recorded once: the detail names the change.
INSERT INTO {{.Schema}}.divergences (cycle_id, report_id, phase, kind, legacy_value, shadow_value, detail, first_seen, last_seen, last_run)
VALUES ($1, $2, $3, 'authority_conflict', $4, 'engine is authoritative', $5, now(), now(), 0)
ON CONFLICT (cycle_id, report_id, phase, kind) WHERE resolved_at IS NULL
DO UPDATE SET last_seen = now(), legacy_value = excluded.legacy_value, detail = excluded.detail
WHERE divergences.detail IS DISTINCT FROM excluded.detail
RETURNING divergence_id;

-- name: ResolveConflict
-- A conflict undone by a revert is resolved, saying so.
UPDATE {{.Schema}}.divergences SET resolved_at = now(), detail = detail || '; ' || $4
WHERE cycle_id = $1 AND report_id = $2 AND phase = $3 AND kind = 'authority_conflict' AND resolved_at IS NULL;

-- name: OpenConflicts
SELECT cycle_id, report_id, phase, coalesce(legacy_value, ''), coalesce(detail, '') FROM {{.Schema}}.divergences
WHERE kind = 'authority_conflict' AND resolved_at IS NULL;

-- name: ClaimCommand
INSERT INTO {{.Schema}}.commands (command_id, cycle_id, report_id, phase, action, actor, role, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (command_id) DO NOTHING;

-- name: SameCommand
SELECT cycle_id = $2 AND report_id = $3 AND phase = $4 AND action = $5 FROM {{.Schema}}.commands WHERE command_id = $1;

-- name: CommandRows
UPDATE {{.Schema}}.commands SET row_keys = $2 WHERE command_id = $1;

-- name: CommandWritten
SELECT row_keys FROM {{.Schema}}.commands WHERE command_id = $1;

-- name: Commands
SELECT command_id, cycle_id, report_id, phase, action, actor, role, reason, row_keys, applied_at
FROM {{.Schema}}.commands WHERE ($1::bigint IS NULL OR (cycle_id = $1 AND report_id = $2)) ORDER BY applied_at DESC LIMIT $3;

-- name: RecordRefusal
INSERT INTO {{.Schema}}.command_refusals (command_id, cycle_id, report_id, phase, action, actor, role, reason, rule, message)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10);

-- name: Refusals
SELECT command_id, cycle_id, report_id, phase, action, actor, role, reason, rule, message, refused_at
FROM {{.Schema}}.command_refusals WHERE ($1::bigint IS NULL OR (cycle_id = $1 AND report_id = $2)) ORDER BY refusal_id DESC LIMIT $3;
