-- Reconcile results. Every run is recorded with its scope, counts by kind
-- and phase, and consistency per phase (the cutover gates read them). Every
-- divergence is tracked across runs: it keeps its first_seen while it
-- persists, and gets resolved_at when a run no longer finds it.
CREATE TABLE {{.Schema}}.reconcile_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    scope        jsonb NOT NULL,
    compared     bigint NOT NULL,
    consistent   bigint NOT NULL,
    in_flight    bigint NOT NULL,
    unexpected   bigint NOT NULL,
    expected     bigint NOT NULL,
    new          bigint NOT NULL,
    resolved     bigint NOT NULL,
    counts       jsonb NOT NULL,
    phases       jsonb NOT NULL,
    repaired     bigint NOT NULL DEFAULT 0
);

CREATE TABLE {{.Schema}}.divergences (
    divergence_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cycle_id      bigint NOT NULL,
    report_id     bigint NOT NULL,
    phase         text NOT NULL,
    kind          text NOT NULL,
    legacy_value  text,
    shadow_value  text,
    detail        text,
    rule          text,
    first_seen    timestamptz NOT NULL,
    last_seen     timestamptz NOT NULL,
    resolved_at   timestamptz,
    last_run      bigint NOT NULL
);
CREATE UNIQUE INDEX divergences_open ON {{.Schema}}.divergences (cycle_id, report_id, phase, kind) WHERE resolved_at IS NULL;
