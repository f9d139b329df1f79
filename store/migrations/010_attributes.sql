-- The report attributes each shadow judges its when conditions by
-- (legacy.attributes), so reconcile can compare them with legacy's.
ALTER TABLE {{.Schema}}.shadow_keys ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}';
