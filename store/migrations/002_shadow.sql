-- The shadow projection: each shadow workflow upserts its state here after
-- every batch it applies, so reconcile can compare legacy with the shadow set
-- by set, without asking every workflow. version orders the writes of one
-- workflow; a write with an older version is ignored, so retries are safe.
CREATE TABLE {{.Schema}}.shadow_keys (
    cycle_id           bigint NOT NULL,
    report_id          bigint NOT NULL,
    definition_id      text NOT NULL,
    definition_version text NOT NULL,
    version            bigint NOT NULL,
    applied_seq        bigint NOT NULL,
    applied            bigint NOT NULL,
    violations         integer NOT NULL,
    violation_counts   jsonb NOT NULL,
    recent_violations  jsonb NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cycle_id, report_id)
);

CREATE TABLE {{.Schema}}.shadow_phases (
    cycle_id        bigint NOT NULL,
    report_id       bigint NOT NULL,
    phase           text NOT NULL,
    row_id          text NOT NULL,
    rows            integer NOT NULL,
    state           text NOT NULL,
    base_state      text NOT NULL,
    legacy_status   text NOT NULL,
    status          text NOT NULL,
    override        jsonb,
    planned_start   timestamptz,
    planned_end     timestamptz,
    actual_start    timestamptz,
    actual_end      timestamptz,
    started_by      text,
    completed_by    text,
    status_column   text,
    last_event_id   text NOT NULL,
    last_seq        bigint NOT NULL,
    tx_time         timestamptz,
    version         bigint NOT NULL,
    PRIMARY KEY (cycle_id, report_id, phase)
);

-- What the mirror has handed to Temporal, per report: reconcile compares it
-- with shadow_keys.applied_seq to tell a change in flight from a divergence.
CREATE TABLE {{.Schema}}.mirror_keys (
    cycle_id      bigint NOT NULL,
    report_id     bigint NOT NULL,
    delivered_seq bigint NOT NULL,
    delivered_at  timestamptz NOT NULL,
    -- pending_since is when the oldest delivery the shadow has not yet
    -- applied was made; the projection clears it once it catches up.
    pending_since timestamptz,
    PRIMARY KEY (cycle_id, report_id)
);
