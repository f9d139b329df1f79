-- The console lists open divergences newest first, filtered, a page at a
-- time, and a report's whole divergence history: neither may scan the
-- table.
CREATE INDEX divergences_open_newest ON {{.Schema}}.divergences (first_seen DESC, divergence_id DESC) WHERE resolved_at IS NULL;
CREATE INDEX divergences_open_phase ON {{.Schema}}.divergences (phase, kind, first_seen DESC, divergence_id DESC) WHERE resolved_at IS NULL;
CREATE INDEX divergences_report ON {{.Schema}}.divergences (cycle_id, report_id, first_seen DESC);
CREATE INDEX quarantine_report ON {{.Schema}}.quarantine (cycle_id, report_id);
