-- Legacy's phases that held more than one row when the bridge was
-- installed: reconcile tells these old duplicates apart from rows added
-- since. baseline_taken says the baseline was recorded (once, at the
-- first install that attached capture).
CREATE TABLE {{.Schema}}.legacy_baseline (
    cycle_id  bigint NOT NULL,
    report_id bigint NOT NULL,
    phase     text NOT NULL,
    rows      integer NOT NULL,
    PRIMARY KEY (cycle_id, report_id, phase)
);
CREATE TABLE {{.Schema}}.baseline_taken (
    single   boolean PRIMARY KEY DEFAULT true CHECK (single),
    taken_at timestamptz NOT NULL
);
