-- The legacy baseline: duplicate rows as they stood at install.

-- name: TakeBaseline
-- Claims the baseline; no row back means it was taken before.
INSERT INTO {{.Schema}}.baseline_taken (taken_at) VALUES (now()) ON CONFLICT DO NOTHING RETURNING taken_at;

-- name: RecordBaseline
INSERT INTO {{.Schema}}.legacy_baseline (cycle_id, report_id, phase, rows)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::int[]);

-- name: Baseline
SELECT cycle_id, report_id, phase, rows FROM {{.Schema}}.legacy_baseline;

-- name: BaselineTakenAt
SELECT taken_at FROM {{.Schema}}.baseline_taken;
