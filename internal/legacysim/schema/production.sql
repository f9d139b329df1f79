-- Legacy SynapseDTE schema, production label profile.
--
-- As production databases really are (LEGACY.md): nine phases in use but
-- fourteen labels in the phase enum, aliases included, declared in an order
-- that is not the workflow order; the states Not Started / In Progress /
-- Complete; the schedule statuses On Track / At Risk / Past Due; a legacy
-- status column with its own enum; the extra columns some versions carry;
-- and no unique constraint on (cycle, report, phase), so duplicate rows exist.

CREATE TYPE phase_name_enum AS ENUM (
    'Planning', 'Scoping', 'Data Profiling', 'Sampling', 'Sample Selection',
    'Data Owner ID', 'Data Owner Identification', 'Data Provider ID',
    'Request Info', 'Test Execution', 'Testing', 'Observations',
    'Preparing Test Report', 'Finalize Test Report'
);
CREATE TYPE phase_state_enum AS ENUM ('Not Started', 'In Progress', 'Complete');
CREATE TYPE schedule_status_enum AS ENUM ('On Track', 'At Risk', 'Past Due');
CREATE TYPE phase_status_enum AS ENUM (
    'Not Started', 'In Progress', 'Complete', 'Pending Approval', 'Submitted'
);
CREATE TYPE risk_level_enum AS ENUM ('Low', 'Medium', 'High');

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
    phase_id             serial PRIMARY KEY,
    cycle_id             integer NOT NULL REFERENCES test_cycles (cycle_id),
    report_id            integer NOT NULL REFERENCES reports (report_id),
    phase_name           phase_name_enum NOT NULL,
    phase_order          integer,
    status               phase_status_enum NOT NULL DEFAULT 'Not Started',
    state                phase_state_enum NOT NULL DEFAULT 'Not Started',
    schedule_status      schedule_status_enum NOT NULL DEFAULT 'On Track',
    state_override       phase_state_enum,
    status_override      schedule_status_enum,
    override_reason      text,
    override_by          integer,
    override_at          timestamptz,
    planned_start_date   date,
    planned_end_date     date,
    actual_start_date    timestamptz,
    actual_end_date      timestamptz,
    started_by           integer,
    completed_by         integer,
    notes                text,
    metadata             jsonb,
    phase_data           jsonb,
    progress_percentage  integer,
    sla_deadline         timestamptz,
    is_sla_breached      boolean,
    risk_level           risk_level_enum,
    created_by_id        integer,
    updated_by_id        integer,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX ix_workflow_phases_cycle_report ON workflow_phases (cycle_id, report_id);
