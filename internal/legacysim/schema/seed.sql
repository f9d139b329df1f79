-- Legacy SynapseDTE schema, analysis ("seed") label profile.
--
-- This is the design of workflow-analysis.md: seven phases, the states
-- Not Started / In Progress / Completed, the schedule statuses
-- On Schedule / At Risk / Behind Schedule, no legacy status column, and one
-- row per (cycle, report, phase) enforced by a unique constraint.

CREATE TYPE workflow_phase_enum AS ENUM (
    'Planning', 'Scoping', 'Sample Selection', 'Data Provider ID',
    'Request Info', 'Testing', 'Observations'
);
CREATE TYPE workflow_state_enum AS ENUM ('Not Started', 'In Progress', 'Completed');
CREATE TYPE workflow_status_enum AS ENUM ('On Schedule', 'At Risk', 'Behind Schedule');

CREATE TABLE test_cycles (
    cycle_id    serial PRIMARY KEY,
    cycle_name  text NOT NULL,
    start_date  date NOT NULL,
    end_date    date,
    status      text NOT NULL DEFAULT 'Active',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE reports (
    report_id    serial PRIMARY KEY,
    report_name  text NOT NULL,
    regulation   text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Application users. Role names are as inconsistent as in production:
-- 'Test Manager' and 'Test Executive' mean the same, as do 'Report
-- Executive' and 'Report Owner Executive'.
CREATE TABLE users (
    user_id    integer PRIMARY KEY,
    user_name  text NOT NULL,
    role       text NOT NULL
);

CREATE TABLE cycle_reports (
    cycle_id    integer NOT NULL REFERENCES test_cycles (cycle_id),
    report_id   integer NOT NULL REFERENCES reports (report_id),
    tester_id   integer,
    status      text NOT NULL DEFAULT 'Not Started',
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (cycle_id, report_id)
);

CREATE TABLE workflow_phases (
    phase_id            serial PRIMARY KEY,
    cycle_id            integer NOT NULL REFERENCES test_cycles (cycle_id),
    report_id           integer NOT NULL REFERENCES reports (report_id),
    phase_name          workflow_phase_enum NOT NULL,
    phase_order         integer,
    state               workflow_state_enum NOT NULL DEFAULT 'Not Started',
    schedule_status     workflow_status_enum NOT NULL DEFAULT 'On Schedule',
    state_override      workflow_state_enum,
    status_override     workflow_status_enum,
    override_reason     text,
    override_by         integer,
    override_at         timestamptz,
    planned_start_date  date,
    planned_end_date    date,
    actual_start_date   timestamptz,
    actual_end_date     timestamptz,
    started_by          integer,
    completed_by        integer,
    notes               text,
    metadata            jsonb,
    phase_data          jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT uq_workflow_phase UNIQUE (cycle_id, report_id, phase_name)
);

CREATE INDEX ix_workflow_phases_cycle_report ON workflow_phases (cycle_id, report_id);
