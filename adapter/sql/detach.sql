-- Removes capture and the bridge schema. The capture triggers depend on the
-- capture functions in the schema, so they go with it; this needs no
-- ownership of the legacy table. Legacy rows are never touched.
DROP SCHEMA IF EXISTS {{.Schema}} CASCADE;
