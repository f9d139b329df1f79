package adapter

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"
)

var (
	//go:embed migrations/*.sql
	migrationFiles embed.FS
	//go:embed sql/attach.sql
	attachSQL string
	//go:embed sql/detach.sql
	detachSQL string
)

// Trigger modes. Row-level triggers cost less for single-row writes, the
// legacy application's usual pattern; statement-level triggers with
// transition tables cost less per row for bulk statements. make bench
// measures both.
const (
	TriggerRow       = "row"
	TriggerStatement = "statement"
)

// CaptureConfig says where the bridge schema lives and which legacy table it
// captures. A nil config is ready to use.
type CaptureConfig struct {
	// Schema is the bridge's own schema. Default: dtebridge.
	Schema string `yaml:"schema"`
	// Table is the legacy table, optionally schema-qualified.
	// Default: public.workflow_phases.
	Table string `yaml:"table"`
	// Key lists the table's primary-key columns. Default: [phase_id].
	Key []string `yaml:"key"`
	// Trigger is the trigger mode: row or statement. Default: row.
	Trigger string `yaml:"trigger"`
}

func (c *CaptureConfig) withDefaults() *CaptureConfig {
	out := CaptureConfig{}
	if c != nil {
		out = *c
	}
	if out.Schema == "" {
		out.Schema = "dtebridge"
	}
	if out.Table == "" {
		out.Table = "public.workflow_phases"
	}
	if len(out.Key) == 0 {
		out.Key = []string{"phase_id"}
	}
	if out.Trigger == "" {
		out.Trigger = TriggerRow
	}
	return &out
}

// Validate checks the configuration without a database.
func (c *CaptureConfig) Validate() error {
	c = c.withDefaults()
	if c.Trigger != TriggerRow && c.Trigger != TriggerStatement {
		return fmt.Errorf("capture trigger %q is not row or statement", c.Trigger)
	}
	if strings.Count(c.Table, ".") > 1 || strings.HasPrefix(c.Table, ".") || strings.HasSuffix(c.Table, ".") {
		return fmt.Errorf("legacy table %q is not table or schema.table", c.Table)
	}
	return nil
}

// tableIdent returns the legacy table as an identifier.
func (c *CaptureConfig) tableIdent() pgx.Identifier {
	return pgx.Identifier(strings.Split(c.Table, "."))
}

// channel is the NOTIFY channel the capture trigger signals.
func (c *CaptureConfig) channel() string { return c.Schema + "_changes" }

// sqlData is what the SQL templates see.
type sqlData struct {
	Schema, Table, Channel string
	// DropTriggers are capture triggers of another mode to remove.
	DropTriggers []string
	key          []string
	create       map[string]bool
}

// Create reports whether the trigger name must be created.
func (d sqlData) Create(name string) bool { return d.create[name] }

// triggerNames are the capture triggers of each mode.
var triggerNames = map[string][]string{
	TriggerRow:       {"dtebridge_capture"},
	TriggerStatement: {"dtebridge_capture_insert", "dtebridge_capture_update", "dtebridge_capture_delete"},
}

func (d sqlData) KeyOf(alias string) string {
	parts := make([]string, len(d.key))
	for i, k := range d.key {
		parts[i] = alias + "." + pgx.Identifier{k}.Sanitize()
	}
	return strings.Join(parts, ", ")
}

func (d sqlData) KeyJoin(a, b string) string {
	parts := make([]string, len(d.key))
	for i, k := range d.key {
		q := pgx.Identifier{k}.Sanitize()
		parts[i] = a + "." + q + " = " + b + "." + q
	}
	return "(" + strings.Join(parts, " AND ") + ")"
}

func (c *CaptureConfig) data() sqlData {
	return sqlData{
		Schema:  pgx.Identifier{c.Schema}.Sanitize(),
		Table:   c.tableIdent().Sanitize(),
		Channel: quoteLiteral(c.channel()),
		key:     c.Key,
	}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func render(name, text string, data any) (string, error) {
	t, err := template.New(name).Parse(text)
	if err != nil {
		return "", err
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// InstallResult reports what an install did or, on a dry run, would do.
type InstallResult struct {
	// FromVersion and ToVersion are the bridge schema versions before and after.
	FromVersion, ToVersion int32
	// SQL is every statement run, in order.
	SQL []string
}

// ErrNoLegacyTable means the configured legacy table does not exist.
var ErrNoLegacyTable = errors.New("legacy table not found")

// Install creates or upgrades the bridge schema with the embedded,
// versioned migrations, then attaches capture to the legacy table. It is
// idempotent. With dryRun it changes nothing and returns the SQL it would run.
func Install(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig, dryRun bool) (*InstallResult, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTable(ctx, conn, cfg); err != nil {
		return nil, err
	}
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	versionTable := schema + ".schema_version"
	res := &InstallResult{}
	var versionExists bool
	if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, versionTable).Scan(&versionExists); err != nil {
		return nil, fmt.Errorf("error inspecting %s: %w", versionTable, err)
	}
	if versionExists {
		if err := conn.QueryRow(ctx, "SELECT version FROM "+versionTable).Scan(&res.FromVersion); err != nil {
			return nil, fmt.Errorf("error reading %s: %w", versionTable, err)
		}
	}

	// Loading needs no connection; running does.
	var mconn *pgx.Conn
	createSchema := "CREATE SCHEMA IF NOT EXISTS " + schema
	if !dryRun {
		mconn = conn
		if _, err := conn.Exec(ctx, createSchema); err != nil {
			return nil, fmt.Errorf("error creating schema %s: %w", cfg.Schema, err)
		}
	}
	res.SQL = append(res.SQL, createSchema+";")
	m, err := migrate.NewMigratorEx(ctx, mconn, versionTable, &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("error preparing migrations: %w", err)
	}
	m.Data["Schema"] = schema
	sub, _ := fs.Sub(migrationFiles, "migrations")
	if err := m.LoadMigrations(sub); err != nil {
		return nil, fmt.Errorf("error loading migrations: %w", err)
	}
	for _, mig := range m.Migrations {
		if mig.Sequence > res.FromVersion {
			res.SQL = append(res.SQL, fmt.Sprintf("-- migration %d: %s\n%s", mig.Sequence, mig.Name, mig.UpSQL))
		}
	}
	res.ToVersion = int32(len(m.Migrations))

	d := cfg.data()
	existing, err := captureTriggers(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	d.create = map[string]bool{}
	for _, name := range triggerNames[cfg.Trigger] {
		d.create[name] = !existing[name]
	}
	for _, mode := range []string{TriggerRow, TriggerStatement} {
		for _, name := range triggerNames[mode] {
			if mode != cfg.Trigger && existing[name] {
				d.DropTriggers = append(d.DropTriggers, name)
			}
		}
	}
	attach, err := render("attach", attachSQL, d)
	if err != nil {
		return nil, err
	}
	res.SQL = append(res.SQL, "-- attach capture to "+cfg.Table+"\n"+strings.TrimSpace(attach))
	if dryRun {
		return res, nil
	}
	if err := m.Migrate(ctx); err != nil {
		return nil, fmt.Errorf("error migrating schema %s: %w", cfg.Schema, err)
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, attach)
		return err
	}); err != nil {
		if len(d.DropTriggers) > 0 {
			return nil, fmt.Errorf("error attaching capture to %s: %w (switching the trigger mode drops triggers, which needs the table's owner: run this install as the owner)", cfg.Table, err)
		}
		return nil, fmt.Errorf("error attaching capture to %s: %w", cfg.Table, err)
	}
	return res, nil
}

// captureTriggers returns the capture triggers present on the legacy table.
func captureTriggers(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig) (map[string]bool, error) {
	var names []string
	err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(tgname::text), '{}') FROM pg_trigger
		WHERE tgrelid = to_regclass($1) AND tgname::text LIKE 'dtebridge\_capture%' AND NOT tgisinternal`,
		cfg.tableIdent().Sanitize()).Scan(&names)
	if err != nil {
		return nil, fmt.Errorf("error inspecting triggers on %s: %w", cfg.Table, err)
	}
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}

// checkTable verifies that the legacy table and its key columns exist.
func checkTable(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig) error {
	var cols []string
	err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(attname::text), '{}') FROM pg_attribute
		WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped`, cfg.tableIdent().Sanitize()).Scan(&cols)
	if err != nil {
		return fmt.Errorf("error inspecting legacy table %s: %w", cfg.Table, err)
	}
	if len(cols) == 0 {
		return fmt.Errorf("%w: %s (set legacy.table in the config, or run dtebridge legacy init for a model)", ErrNoLegacyTable, cfg.Table)
	}
	for _, k := range cfg.Key {
		found := false
		for _, c := range cols {
			found = found || c == k
		}
		if !found {
			return fmt.Errorf("key column %q is not a column of %s (set legacy.key in the config)", k, cfg.Table)
		}
	}
	return nil
}

// Uninstall detaches capture from the legacy table and drops the bridge
// schema with everything in it. It never touches legacy rows. With dryRun
// it returns the SQL without running it.
func Uninstall(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig, dryRun bool) ([]string, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	detach, err := render("detach", detachSQL, cfg.data())
	if err != nil {
		return nil, err
	}
	stmts := []string{strings.TrimSpace(detach)}
	if dryRun {
		return stmts, nil
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, detach)
		return err
	}); err != nil {
		return nil, fmt.Errorf("error uninstalling: %w", err)
	}
	return stmts, nil
}
