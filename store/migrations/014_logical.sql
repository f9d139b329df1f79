-- Log-based capture (capture.mode: logical). The capture leader decodes
-- the legacy table's changes from a replication slot and writes them here,
-- in commit order, in its own transactions: xid is then the bridge's
-- transaction and source_xid the legacy one (source_lsn its commit), so
-- the reader's commit epochs work unchanged, and a whole legacy
-- transaction is still found by its id.
ALTER TABLE {{.Schema}}.changes ADD COLUMN source_xid xid8;
ALTER TABLE {{.Schema}}.changes ADD COLUMN source_lsn pg_lsn;
CREATE INDEX changes_source_xid ON {{.Schema}}.changes (source_xid) WHERE source_xid IS NOT NULL;

-- How far each slot's changes are in the change log: the end of the last
-- legacy transaction written (or, while legacy is idle, the position the
-- server has sent up to). It is written in the transaction that writes the
-- changes, so a restart skips exactly what is there.
CREATE TABLE {{.Schema}}.logical_positions (
    slot        text PRIMARY KEY,
    lsn         pg_lsn NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per transaction of the bridge's own write-back. The decoder
-- cannot see session settings, but it sees this insert in the same
-- transaction, and marks the transaction's changes as the bridge's.
CREATE TABLE {{.Schema}}.write_marks (
    xid xid8 PRIMARY KEY DEFAULT pg_current_xact_id(),
    at  timestamptz NOT NULL DEFAULT now()
);

-- Snapshots whose rows a backfill (all reports) or a re-drive (one report)
-- delivered while log-based capture may not yet have written every legacy
-- transaction they reflect: a change whose legacy transaction is visible in
-- the snapshot arrives after the rows and is skipped. A floor is dropped
-- once the change log holds every transaction committed before lsn.
CREATE TABLE {{.Schema}}.capture_floors (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer  text NOT NULL,
    cycle_id  bigint,
    report_id bigint,
    snapshot  pg_snapshot NOT NULL,
    lsn       pg_lsn NOT NULL
);
CREATE INDEX capture_floors_consumer ON {{.Schema}}.capture_floors (consumer);
