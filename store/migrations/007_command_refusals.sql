-- Engine commands refused (by the definition, the actor check, legacy, or
-- their deadline), so the command audit is complete: applied ones are in
-- commands, refused ones here.
CREATE TABLE {{.Schema}}.command_refusals (
    refusal_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    command_id  text NOT NULL,
    cycle_id    bigint NOT NULL,
    report_id   bigint NOT NULL,
    phase       text NOT NULL,
    action      text NOT NULL,
    actor       text NOT NULL,
    role        text NOT NULL,
    reason      text NOT NULL,
    rule        text NOT NULL,
    message     text NOT NULL,
    refused_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_refusals_report ON {{.Schema}}.command_refusals (cycle_id, report_id, refused_at);
