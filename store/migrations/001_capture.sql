-- The bridge's own schema: captured changes, consumer checkpoints and the
-- quarantine. Rendered with .Schema, the quoted bridge schema name.

-- Every INSERT, UPDATE and DELETE on the legacy table, written by the capture
-- trigger inside the legacy transaction. id is the stable event id; xid is
-- the writing transaction, which the reader uses to deliver changes in
-- commit epochs (see adapter/reader.go).
CREATE TABLE {{.Schema}}.changes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    op          text NOT NULL CHECK (op IN ('I', 'U', 'D')),
    source      text NOT NULL,
    old_row     jsonb,
    new_row     jsonb,
    origin      text NOT NULL,
    tx_time     timestamptz NOT NULL DEFAULT now(),
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX changes_xid ON {{.Schema}}.changes (xid);

-- One row per consumer of the change stream. Every change visible in
-- acked_snapshot has been delivered and acknowledged. While an epoch is being
-- delivered, epoch_snapshot is its upper bound and epoch_last_id the last
-- change id acknowledged in it. leader_epoch fences out a former leader.
CREATE TABLE {{.Schema}}.checkpoints (
    consumer              text PRIMARY KEY,
    acked_snapshot        pg_snapshot,
    epoch_snapshot        pg_snapshot,
    epoch_last_id         bigint NOT NULL DEFAULT 0,
    seq                   bigint NOT NULL DEFAULT 0,
    leader_epoch          bigint NOT NULL DEFAULT 0,
    leader                text,
    backfill_requested_at timestamptz,
    backfilled_at         timestamptz,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

-- Changes the bridge could not translate, with their raw values, and the
-- later changes of the same report held behind them to keep per-report
-- order. quarantine retry re-translates them; the leader then delivers the
-- released ones in order.
CREATE TABLE {{.Schema}}.quarantine (
    event_id       text PRIMARY KEY,
    change_id      bigint,
    cycle_id       bigint,
    report_id      bigint,
    reason         text NOT NULL,
    detail         text NOT NULL,
    raw            jsonb NOT NULL,
    seq            bigint NOT NULL,
    quarantined_at timestamptz NOT NULL DEFAULT now(),
    retried_at     timestamptz,
    released_at    timestamptz,
    translated     jsonb,
    delivered_at   timestamptz
);
CREATE INDEX quarantine_pending ON {{.Schema}}.quarantine (cycle_id, report_id, seq) WHERE delivered_at IS NULL;

-- Readers that are idle and want a NOTIFY when a change arrives. The capture
-- trigger notifies only while some reader's waiting_until is in the future:
-- a NOTIFY serialises committing transactions, so under load, when readers
-- are busy anyway, writers skip it. A dead reader's entry expires by itself.
CREATE TABLE {{.Schema}}.readers (
    consumer      text PRIMARY KEY,
    waiting_until timestamptz
);
