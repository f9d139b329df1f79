-- The findings of each report's legacy history, judged once by its shadow
-- from the rows a backfill delivered, kept apart from the violations of
-- live changes (recent_violations).
ALTER TABLE {{.Schema}}.shadow_keys ADD COLUMN historical jsonb NOT NULL DEFAULT '[]';
