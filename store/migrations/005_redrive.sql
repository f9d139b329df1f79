-- Re-driving reports from legacy truth, and a complete command audit.

-- Requests to re-drive a report's shadow from its legacy rows (repair,
-- rollback, quarantine resync, definition migration). The capture leader
-- serves them at an epoch boundary: it reads the report's rows in the same
-- snapshot that bounds the epoch, so the resync lands in order with the
-- stream. seq is the sequence number the resync was delivered under; the
-- shadow has applied it once its projection's applied_seq reaches it.
CREATE TABLE {{.Schema}}.redrives (
    redrive_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer     text NOT NULL DEFAULT 'mirror',
    cycle_id     bigint NOT NULL,
    report_id    bigint NOT NULL,
    reason       text NOT NULL,
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    -- definition, if set (id@version), is the definition the report's
    -- shadow moves to.
    definition   text,
    done_at      timestamptz,
    seq          bigint,
    rows         integer,
    error        text
);
CREATE INDEX redrives_pending ON {{.Schema}}.redrives (consumer, redrive_id) WHERE done_at IS NULL;

-- The command audit holds the resolved role and the reason, and the legacy
-- rows a command wrote by their key as text (keys may span several columns).
ALTER TABLE {{.Schema}}.commands ADD COLUMN role text NOT NULL DEFAULT '';
ALTER TABLE {{.Schema}}.commands ADD COLUMN reason text NOT NULL DEFAULT '';
ALTER TABLE {{.Schema}}.commands ALTER COLUMN row_ids DROP DEFAULT;
ALTER TABLE {{.Schema}}.commands ALTER COLUMN row_ids TYPE text[] USING row_ids::text[];
ALTER TABLE {{.Schema}}.commands ALTER COLUMN row_ids SET DEFAULT '{}';
ALTER TABLE {{.Schema}}.commands RENAME COLUMN row_ids TO row_keys;
