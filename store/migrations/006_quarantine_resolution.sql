-- A quarantined change can be resolved by an operator (skip it, or resync
-- its report from legacy), or superseded by a re-drive; the resolution is
-- recorded with who and why.
ALTER TABLE {{.Schema}}.quarantine ADD COLUMN resolution text;
ALTER TABLE {{.Schema}}.quarantine ADD COLUMN resolved_by text;
ALTER TABLE {{.Schema}}.quarantine ADD COLUMN resolved_reason text;
