-- Removes capture from the legacy table and drops the bridge schema. Legacy
-- rows are never touched.
{{if .TableExists}}
DROP TRIGGER IF EXISTS dtebridge_capture ON {{.Table}};
DROP TRIGGER IF EXISTS dtebridge_capture_insert ON {{.Table}};
DROP TRIGGER IF EXISTS dtebridge_capture_update ON {{.Table}};
DROP TRIGGER IF EXISTS dtebridge_capture_delete ON {{.Table}};
{{end}}
DROP SCHEMA IF EXISTS {{.Schema}} CASCADE;
