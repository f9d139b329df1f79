-- Attaches capture to the legacy table {{.Table}}. Rendered from the
-- configuration and the triggers already there on every install, so it
-- follows a renamed table or a changed trigger mode, and a re-install creates
-- nothing twice. The functions run as their owner (SECURITY DEFINER), so the
-- legacy application needs no privileges on the bridge schema. Creating a
-- trigger needs only the TRIGGER privilege; dropping one (a mode change)
-- needs the table's owner.

CREATE OR REPLACE FUNCTION {{.Schema}}.capture_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $capture$
BEGIN
    INSERT INTO {{.Schema}}.changes (op, source, old_row, new_row, origin)
    VALUES (left(TG_OP, 1),
            TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
            coalesce(nullif(current_setting('dtebridge.origin', true), ''), 'legacy'));
    IF EXISTS (SELECT 1 FROM {{.Schema}}.readers WHERE waiting_until > now()) THEN
        PERFORM pg_notify({{.Channel}}, '');
    END IF;
    RETURN NULL;
END
$capture$;

CREATE OR REPLACE FUNCTION {{.Schema}}.capture_statement() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $capture$
DECLARE
    origin text := coalesce(nullif(current_setting('dtebridge.origin', true), ''), 'legacy');
    src    text := TG_TABLE_SCHEMA || '.' || TG_TABLE_NAME;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO {{.Schema}}.changes (op, source, new_row, origin)
        SELECT 'I', src, to_jsonb(n), origin FROM dtebridge_new n ORDER BY {{.KeyOf "n"}};
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO {{.Schema}}.changes (op, source, old_row, origin)
        SELECT 'D', src, to_jsonb(o), origin FROM dtebridge_old o ORDER BY {{.KeyOf "o"}};
    ELSE
        -- Old and new rows pair up by key; a row whose key changed appears
        -- as an update with only one side.
        INSERT INTO {{.Schema}}.changes (op, source, old_row, new_row, origin)
        SELECT 'U', src, CASE WHEN o IS NULL THEN NULL ELSE to_jsonb(o) END,
               CASE WHEN n IS NULL THEN NULL ELSE to_jsonb(n) END, origin
        FROM dtebridge_old o FULL JOIN dtebridge_new n ON {{.KeyJoin "o" "n"}}
        ORDER BY {{.KeyOf "n"}}, {{.KeyOf "o"}};
    END IF;
    IF EXISTS (SELECT 1 FROM {{.Schema}}.readers WHERE waiting_until > now()) THEN
        PERFORM pg_notify({{.Channel}}, '');
    END IF;
    RETURN NULL;
END
$capture$;

{{range .DropTriggers}}
DROP TRIGGER {{.}} ON {{$.Table}};
{{- end}}
{{- if .Create "dtebridge_capture_insert"}}
CREATE TRIGGER dtebridge_capture_insert AFTER INSERT ON {{.Table}}
    REFERENCING NEW TABLE AS dtebridge_new
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.capture_statement();
{{- end}}
{{- if .Create "dtebridge_capture_update"}}
CREATE TRIGGER dtebridge_capture_update AFTER UPDATE ON {{.Table}}
    REFERENCING OLD TABLE AS dtebridge_old NEW TABLE AS dtebridge_new
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.capture_statement();
{{- end}}
{{- if .Create "dtebridge_capture_delete"}}
CREATE TRIGGER dtebridge_capture_delete AFTER DELETE ON {{.Table}}
    REFERENCING OLD TABLE AS dtebridge_old
    FOR EACH STATEMENT EXECUTE FUNCTION {{.Schema}}.capture_statement();
{{- end}}
{{- if .Create "dtebridge_capture"}}
CREATE TRIGGER dtebridge_capture AFTER INSERT OR UPDATE OR DELETE ON {{.Table}}
    FOR EACH ROW EXECUTE FUNCTION {{.Schema}}.capture_row();
{{- end}}
