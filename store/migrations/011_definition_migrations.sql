-- Definition migrations (dtebridge definitions migrate): who moved which
-- reports' running shadows to which definition version and why, and each
-- report's findings before and after.
CREATE TABLE {{.Schema}}.definition_migrations (
    migration_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    actor        text NOT NULL,
    reason       text NOT NULL,
    target       text NOT NULL,
    phase_safe   boolean NOT NULL,
    requested    integer NOT NULL DEFAULT 0,
    skipped      jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE {{.Schema}}.definition_migration_reports (
    migration_id bigint NOT NULL REFERENCES {{.Schema}}.definition_migrations ON DELETE CASCADE,
    cycle_id     bigint NOT NULL,
    report_id    bigint NOT NULL,
    from_definition text NOT NULL,
    redrive_id   bigint,
    before       jsonb NOT NULL,
    after        jsonb,
    outcome      text NOT NULL DEFAULT 'requested',
    PRIMARY KEY (migration_id, cycle_id, report_id)
);
