-- Cutover: the mode of each phase, the reports promoted to the new engine,
-- and the audit log of every mode change.
CREATE TABLE {{.Schema}}.cutover_modes (
    phase      text PRIMARY KEY,
    mode       text NOT NULL CHECK (mode IN ('legacy', 'shadow', 'new')),
    percent    integer NOT NULL DEFAULT 0 CHECK (percent BETWEEN 0 AND 100),
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL
);

-- Reports on the new engine for a phase. A report stays here when the
-- percentage is lowered; only a rollback releases it.
CREATE TABLE {{.Schema}}.cutover_promoted (
    cycle_id    bigint NOT NULL,
    report_id   bigint NOT NULL,
    phase       text NOT NULL,
    promoted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (phase, cycle_id, report_id)
);

CREATE TABLE {{.Schema}}.cutover_log (
    log_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    actor        text NOT NULL,
    phase        text NOT NULL,
    from_mode    text NOT NULL,
    to_mode      text NOT NULL,
    from_percent integer NOT NULL,
    to_percent   integer NOT NULL,
    reason       text NOT NULL,
    forced       boolean NOT NULL DEFAULT false,
    gate         jsonb NOT NULL
);

-- Engine commands written back to legacy, so a retried write-back applies
-- once: the claim commits in the same transaction as the legacy write.
CREATE TABLE {{.Schema}}.commands (
    command_id text PRIMARY KEY,
    cycle_id   bigint NOT NULL,
    report_id  bigint NOT NULL,
    phase      text NOT NULL,
    action     text NOT NULL,
    actor      text NOT NULL,
    row_ids    bigint[] NOT NULL DEFAULT '{}',
    applied_at timestamptz NOT NULL DEFAULT now()
);
