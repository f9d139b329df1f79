-- Whether each shadow holds its report divergent (what reconcile last told
-- it), so reconcile signals only the workflows whose mark changes.
ALTER TABLE {{.Schema}}.shadow_keys ADD COLUMN divergent boolean NOT NULL DEFAULT false;
