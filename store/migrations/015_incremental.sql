-- Incremental reconcile. A run records the snapshot it compared in and
-- what it depends on beyond the rows (the fingerprint: mapping, rules,
-- tolerance, modes, baseline); the next incremental run compares only the
-- reports written since that snapshot on either side.
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN kind text NOT NULL DEFAULT 'scoped';
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN snapshot pg_snapshot;
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN fingerprint text;
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN base_run bigint;
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN touched bigint;
-- The reports a run found in flight, which it did not judge: the next
-- incremental run looks at them again.
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN in_flight_cycles bigint[];
ALTER TABLE {{.Schema}}.reconcile_runs ADD COLUMN in_flight_reports bigint[];
CREATE INDEX reconcile_runs_base ON {{.Schema}}.reconcile_runs (run_id) WHERE snapshot IS NOT NULL;

-- The transaction that last wrote each row of the shadow's side, whoever
-- wrote it (the projection, a repair, a resync, a hand): a trigger sets it
-- on every update, the default on every insert. Rows written before this
-- migration have none, and are older than any recorded snapshot.
ALTER TABLE {{.Schema}}.shadow_keys ADD COLUMN written xid8;
ALTER TABLE {{.Schema}}.shadow_keys ALTER COLUMN written SET DEFAULT pg_current_xact_id();
ALTER TABLE {{.Schema}}.shadow_phases ADD COLUMN written xid8;
ALTER TABLE {{.Schema}}.shadow_phases ALTER COLUMN written SET DEFAULT pg_current_xact_id();
ALTER TABLE {{.Schema}}.mirror_keys ADD COLUMN written xid8;
ALTER TABLE {{.Schema}}.mirror_keys ALTER COLUMN written SET DEFAULT pg_current_xact_id();
CREATE INDEX shadow_keys_written ON {{.Schema}}.shadow_keys (written);
CREATE INDEX shadow_phases_written ON {{.Schema}}.shadow_phases (written);
CREATE INDEX mirror_keys_written ON {{.Schema}}.mirror_keys (written);

CREATE FUNCTION {{.Schema}}.set_written() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.written := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE TRIGGER shadow_keys_written BEFORE UPDATE ON {{.Schema}}.shadow_keys FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.set_written();
CREATE TRIGGER shadow_phases_written BEFORE UPDATE ON {{.Schema}}.shadow_phases FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.set_written();
CREATE TRIGGER mirror_keys_written BEFORE UPDATE ON {{.Schema}}.mirror_keys FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.set_written();

-- A deleted row leaves no row to carry its write: its report is recorded
-- here instead (a TRUNCATE, which names no report, as a row without one,
-- which makes the next incremental run full). A run that records its
-- snapshot drops what that snapshot saw.
CREATE TABLE {{.Schema}}.shadow_deletes (
    cycle_id  bigint,
    report_id bigint,
    written   xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX shadow_deletes_written ON {{.Schema}}.shadow_deletes (written);
CREATE FUNCTION {{.Schema}}.shadow_row_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{.Schema}}.shadow_deletes (cycle_id, report_id) VALUES (OLD.cycle_id, OLD.report_id);
    RETURN OLD;
END $$;
CREATE FUNCTION {{.Schema}}.shadow_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO {{.Schema}}.shadow_deletes (cycle_id, report_id) VALUES (NULL, NULL);
    RETURN NULL;
END $$;
CREATE TRIGGER shadow_phases_deleted AFTER DELETE ON {{.Schema}}.shadow_phases FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.shadow_row_deleted();
CREATE TRIGGER shadow_keys_deleted AFTER DELETE ON {{.Schema}}.shadow_keys FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.shadow_row_deleted();
CREATE TRIGGER mirror_keys_deleted AFTER DELETE ON {{.Schema}}.mirror_keys FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.shadow_row_deleted();
CREATE TRIGGER shadow_phases_truncated AFTER TRUNCATE ON {{.Schema}}.shadow_phases FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.shadow_truncated();
CREATE TRIGGER shadow_keys_truncated AFTER TRUNCATE ON {{.Schema}}.shadow_keys FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.shadow_truncated();
CREATE TRIGGER mirror_keys_truncated AFTER TRUNCATE ON {{.Schema}}.mirror_keys FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.shadow_truncated();

-- Runs recorded before kinds were: those without a scope looked at every
-- report.
UPDATE {{.Schema}}.reconcile_runs SET kind = 'full' WHERE scope = '{}'::jsonb;
