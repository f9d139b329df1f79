package adapter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
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
// captures. config resolves it; every field is required.
type CaptureConfig struct {
	// Schema is the bridge's own schema.
	Schema string
	// Table is the legacy table, optionally schema-qualified.
	Table string
	// Key lists the table's primary-key columns.
	Key []string
	// Mode is the capture mode: trigger or logical.
	Mode string
	// Trigger is the trigger mode: row or statement.
	Trigger string
	// Logical is log-based capture's settings (Mode logical).
	Logical *Logical
	// Legacy, if set, is the table's mapping: the first install records
	// which phases hold duplicate rows then (the legacy baseline), so
	// reconcile tells old duplicates from rows added since.
	Legacy *legacy.Table
}

// Validate checks the configuration without a database.
func (c *CaptureConfig) Validate() error {
	switch {
	case c.Schema == "":
		return fmt.Errorf("capture.schema is empty")
	case c.Mode != ModeTrigger && c.Mode != ModeLogical:
		return fmt.Errorf("capture.mode %q is not trigger or logical", c.Mode)
	case c.Mode == ModeLogical && c.Logical == nil:
		return fmt.Errorf("capture.mode is logical but no logical settings were resolved")
	case c.Logical != nil && c.Logical.Slot != "" && !validSlot.MatchString(c.Logical.Slot):
		return fmt.Errorf("capture.slot %q is not a replication slot name: use at most 63 lower-case letters, digits and underscores", c.Logical.Slot)
	case c.Trigger != TriggerRow && c.Trigger != TriggerStatement:
		return fmt.Errorf("capture trigger %q is not row or statement", c.Trigger)
	case c.Table == "" || strings.Count(c.Table, ".") > 1 || strings.HasPrefix(c.Table, ".") || strings.HasSuffix(c.Table, "."):
		return fmt.Errorf("legacy table %q is not table or schema.table", c.Table)
	case len(c.Key) == 0:
		return fmt.Errorf("legacy.key is empty")
	}
	return nil
}

// tableIdent returns the legacy table as an identifier.
func (c *CaptureConfig) tableIdent() pgx.Identifier {
	return pgx.Identifier(strings.Split(c.Table, "."))
}

// channel is the NOTIFY channel the capture trigger signals.
func (c *CaptureConfig) channel() string { return c.Schema + "_changes" }

// triggerNames are the capture triggers of each mode.
var triggerNames = map[string][]string{
	TriggerRow:       {"dtebridge_capture"},
	TriggerStatement: {"dtebridge_capture_insert", "dtebridge_capture_update", "dtebridge_capture_delete"},
}

// captureSQL is what the attach template needs from the configuration.
func (c *CaptureConfig) captureSQL() store.CaptureSQL {
	keyOf := func(alias string) string {
		parts := make([]string, len(c.Key))
		for i, k := range c.Key {
			parts[i] = alias + "." + pgx.Identifier{k}.Sanitize()
		}
		return strings.Join(parts, ", ")
	}
	keyJoin := func(a, b string) string {
		parts := make([]string, len(c.Key))
		for i, k := range c.Key {
			q := pgx.Identifier{k}.Sanitize()
			parts[i] = a + "." + q + " = " + b + "." + q
		}
		return "(" + strings.Join(parts, " AND ") + ")"
	}
	return store.CaptureSQL{Table: c.tableIdent().Sanitize(), Channel: quoteLiteral(c.channel()), KeyOf: keyOf, KeyJoin: keyJoin,
		Create: func(string) bool { return false }}
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// InstallResult reports what an install did or, on a dry run, would do.
type InstallResult struct {
	// FromVersion and ToVersion are the bridge schema versions before and after.
	FromVersion, ToVersion int32
	// SQL is every statement run, in order.
	SQL []string
	// Baseline is true when this install recorded the legacy baseline (the
	// first one that attached capture with a mapping); Duplicates is how
	// many phases held duplicate rows then.
	Baseline   bool
	Duplicates int
}

// ErrNoLegacyTable means the configured legacy table does not exist.
var ErrNoLegacyTable = errors.New("legacy table not found")

// Install creates or upgrades the bridge schema with the embedded,
// versioned migrations, then attaches capture to the legacy table. It is
// idempotent. With dryRun it changes nothing and returns the SQL it would run.
func Install(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig, dryRun bool) (*InstallResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := checkTable(ctx, conn, cfg); err != nil {
		return nil, err
	}
	mig, err := store.Migrate(ctx, conn, cfg.Schema, dryRun)
	if err != nil {
		return nil, err
	}
	res := &InstallResult{FromVersion: mig.From, ToVersion: mig.To, SQL: mig.SQL}
	d := cfg.captureSQL()
	existing, err := captureTriggers(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	create := map[string]bool{}
	if cfg.Mode == ModeTrigger {
		for _, name := range triggerNames[cfg.Trigger] {
			create[name] = !existing[name]
		}
	}
	d.Create = func(name string) bool { return create[name] }
	for _, mode := range []string{TriggerRow, TriggerStatement} {
		for _, name := range triggerNames[mode] {
			if (cfg.Mode != ModeTrigger || mode != cfg.Trigger) && existing[name] {
				d.DropTriggers = append(d.DropTriggers, name)
			}
		}
	}
	logical, err := planLogical(ctx, conn, cfg)
	if err != nil {
		return nil, err
	}
	attach, err := store.New(nil, cfg.Schema).Attach(d)
	if err != nil {
		return nil, err
	}
	res.SQL = append(res.SQL, "-- attach capture to "+cfg.Table+"\n"+strings.TrimSpace(attach))
	res.SQL = append(res.SQL, logical.sql...)
	if dryRun {
		return res, nil
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, attach); err != nil {
			return err
		}
		if err := logical.apply(ctx, tx, cfg); err != nil {
			return err
		}
		if cfg.Legacy == nil {
			return nil
		}
		attrs, err := attachAttributes(ctx, tx, cfg)
		if err != nil {
			return err
		}
		res.SQL = append(res.SQL, attrs...)
		res.Baseline, err = store.New(nil, cfg.Schema).On(tx).RecordBaseline(ctx, func() ([]store.BaselineRow, error) {
			q, args := cfg.Legacy.DuplicatesSQL()
			rows, err := tx.Query(ctx, q, args...)
			if err != nil {
				return nil, fmt.Errorf("error reading legacy's duplicate rows: %w", err)
			}
			dups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BaselineRow, error) {
				var b store.BaselineRow
				return b, r.Scan(&b.Key.CycleID, &b.Key.ReportID, &b.Phase, &b.Rows)
			})
			res.Duplicates = len(dups)
			return dups, err
		})
		return err
	}); err != nil {
		if len(d.DropTriggers) > 0 || len(logical.sql) > 0 {
			return nil, fmt.Errorf("error attaching capture to %s: %w (switching the capture mode drops triggers, and log-based capture sets the tables' replica identity and publishes them, which needs the tables' owner: run this install as the owner, or have a DBA run the SQL of dtebridge install --dry-run)", cfg.Table, err)
		}
		return nil, fmt.Errorf("error attaching capture to %s: %w", cfg.Table, err)
	}
	// A slot dropped only once the rest committed: a failed install leaves
	// capture as it was.
	if logical.dropSlot != "" {
		if err := dropSlot(ctx, conn, logical.dropSlot); err != nil {
			return nil, err
		}
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
	cols, err := legacy.TableColumns(ctx, conn, cfg.Table)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		return fmt.Errorf("%w: %s (set legacy.table in the config, or run dtebridge legacy init for a model)", ErrNoLegacyTable, cfg.Table)
	}
	for _, k := range cfg.Key {
		if _, found := cols[k]; !found {
			return fmt.Errorf("key column %q is not a column of %s (set legacy.key in the config)", k, cfg.Table)
		}
	}
	if cfg.Legacy != nil {
		for _, nc := range cfg.Legacy.Columns.Named() {
			if _, ok := cols[nc[1]]; !ok {
				return fmt.Errorf("%s is %q, which is not a column of %s: set %s in the config to the column that holds it", nc[0], nc[1], cfg.Table, nc[0])
			}
		}
		for _, name := range cfg.Legacy.AttributeNames() {
			a := cfg.Legacy.Attributes[name]
			acols, err := legacy.TableColumns(ctx, conn, a.Table)
			if err != nil {
				return err
			}
			if len(acols) == 0 {
				return fmt.Errorf("legacy.attributes.%s.table %q does not exist (or this role cannot see it)", name, a.Table)
			}
			for _, c := range [][2]string{{"key", a.Key}, {"cycle", a.Cycle}, {"column", a.Column}} {
				if _, ok := acols[c[1]]; c[1] != "" && !ok {
					return fmt.Errorf("legacy.attributes.%s.%s is %q, which is not a column of %s", name, c[0], c[1], a.Table)
				}
			}
		}
	}
	return nil
}

// attributeTriggerName is the trigger that captures changes to the tables
// report attributes come from.
const attributeTriggerName = "dtebridge_capture_attributes"

// attachAttributes attaches a row capture trigger to each table report
// attributes come from, unless it is there: a change of an attribute is
// captured like a phase change, and the capture leader re-drives the
// report's shadows with it.
func attachAttributes(ctx context.Context, tx pgx.Tx, cfg *CaptureConfig) ([]string, error) {
	var stmts []string
	for _, table := range cfg.Legacy.AttributeTables() {
		if strings.EqualFold(table, cfg.Table) {
			continue // the phase table is captured already
		}
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND tgname = $2)`,
			pgx.Identifier(strings.Split(table, ".")).Sanitize(), attributeTriggerName).Scan(&exists); err != nil {
			return nil, err
		}
		if cfg.Mode == ModeLogical {
			// The publication carries the table; a trigger would only cost.
			if exists {
				stmt := fmt.Sprintf("DROP TRIGGER %s ON %s", attributeTriggerName, pgx.Identifier(strings.Split(table, ".")).Sanitize())
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return nil, fmt.Errorf("error detaching capture from %s (legacy.attributes): %w", table, err)
				}
				stmts = append(stmts, stmt)
			}
			continue
		}
		if exists {
			continue
		}
		var cols []string
		for _, name := range cfg.Legacy.AttributeNames() {
			if a := cfg.Legacy.Attributes[name]; a.Table == table {
				for _, c := range []string{a.Key, a.Cycle, a.Column} {
					if c != "" && !slices.Contains(cols, pgx.Identifier{c}.Sanitize()) {
						cols = append(cols, pgx.Identifier{c}.Sanitize())
					}
				}
			}
		}
		stmt := fmt.Sprintf("CREATE TRIGGER %s AFTER INSERT OR DELETE OR UPDATE OF %s ON %s FOR EACH ROW EXECUTE FUNCTION %s.capture_row()",
			attributeTriggerName, strings.Join(cols, ", "), pgx.Identifier(strings.Split(table, ".")).Sanitize(), pgx.Identifier{cfg.Schema}.Sanitize())
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return nil, fmt.Errorf("error attaching capture to %s (legacy.attributes): %w", table, err)
		}
		stmts = append(stmts, stmt)
	}
	return stmts, nil
}

// Uninstall detaches capture from the legacy table and drops the bridge
// schema with everything in it. It never touches legacy rows. With dryRun
// it returns the SQL without running it.
func Uninstall(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig, dryRun bool) ([]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	detach, err := store.New(nil, cfg.Schema).Detach()
	if err != nil {
		return nil, err
	}
	// Log-based capture's slot and publication go too, whatever the mode
	// now configured: a slot left behind would keep WAL for ever.
	lc := cfg.Logical
	if lc == nil {
		lc = &Logical{Publication: cfg.Schema + "_capture"}
	}
	slot, err := lc.SlotName(ctx, conn, cfg.Schema)
	if err != nil {
		return nil, err
	}
	st, err := Slot(ctx, conn, slot)
	if err != nil {
		return nil, err
	}
	var pubExists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, lc.Publication).Scan(&pubExists); err != nil {
		return nil, fmt.Errorf("error inspecting publication %s: %w", lc.Publication, err)
	}
	var stmts []string
	if st.Exists {
		if st.Active {
			return nil, fmt.Errorf("replication slot %s is being read: stop every dtebridge serve of this database first, then uninstall", slot)
		}
		stmts = append(stmts, "SELECT pg_drop_replication_slot("+quoteLiteral(slot)+");")
	}
	if pubExists {
		stmts = append(stmts, "DROP PUBLICATION "+pgx.Identifier{lc.Publication}.Sanitize()+";")
	}
	stmts = append(stmts, strings.TrimSpace(detach))
	if dryRun {
		return stmts, nil
	}
	if st.Exists {
		if err := dropSlot(ctx, conn, slot); err != nil {
			return nil, err
		}
	}
	if err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if pubExists {
			if _, err := tx.Exec(ctx, "DROP PUBLICATION "+pgx.Identifier{lc.Publication}.Sanitize()); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, detach)
		return err
	}); err != nil {
		return nil, fmt.Errorf("error uninstalling: %w", err)
	}
	return stmts, nil
}

// logicalPlan is what an install does for log-based capture: set the
// tables' replica identity and publish them (logical mode), or remove the
// publication and the slot (trigger mode, after logical).
type logicalPlan struct {
	sql      []string
	stmts    []string
	backfill bool
	dropSlot string
}

// planLogical inspects the database and plans the install's log-based
// capture part.
func planLogical(ctx context.Context, conn *pgx.Conn, cfg *CaptureConfig) (*logicalPlan, error) {
	p := &logicalPlan{}
	lc := cfg.Logical
	if lc == nil {
		lc = &Logical{Publication: cfg.Schema + "_capture"}
	}
	var pubExists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, lc.Publication).Scan(&pubExists); err != nil {
		return nil, fmt.Errorf("error inspecting publication %s: %w", lc.Publication, err)
	}
	pub := pgx.Identifier{lc.Publication}.Sanitize()
	if cfg.Mode != ModeLogical {
		if pubExists {
			p.stmts = append(p.stmts, "DROP PUBLICATION "+pub)
		}
		slot, err := lc.SlotName(ctx, conn, cfg.Schema)
		if err != nil {
			return nil, err
		}
		st, err := Slot(ctx, conn, slot)
		if err != nil {
			return nil, err
		}
		if st.Exists {
			// Capture switches from the slot to triggers: what happens
			// between the two is in neither, so the mirror backfills.
			p.dropSlot, p.backfill = slot, true
			p.sql = append(p.sql, "SELECT pg_drop_replication_slot("+quoteLiteral(slot)+");")
		}
		for _, s := range p.stmts {
			p.sql = append(p.sql, s+";")
		}
		return p, nil
	}
	var walLevel string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&walLevel); err != nil {
		return nil, err
	}
	if walLevel != "logical" {
		return nil, fmt.Errorf("capture.mode is logical but the server's wal_level is %s: set wal_level = logical (ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL, or use capture.mode: trigger", walLevel)
	}
	tables := []string{cfg.Table}
	if cfg.Legacy != nil {
		for _, t := range cfg.Legacy.AttributeTables() {
			if !strings.EqualFold(t, cfg.Table) && !slices.Contains(tables, t) {
				tables = append(tables, t)
			}
		}
	}
	var idents []string
	for _, t := range tables {
		id := pgx.Identifier(strings.Split(t, ".")).Sanitize()
		idents = append(idents, id)
		var ident string
		if err := conn.QueryRow(ctx, `SELECT relreplident::text FROM pg_class WHERE oid = to_regclass($1)`, id).Scan(&ident); err != nil {
			return nil, fmt.Errorf("error inspecting %s: %w", t, err)
		}
		if ident != "f" {
			// A deleted row must arrive whole, not as its key alone.
			p.stmts = append(p.stmts, "ALTER TABLE "+id+" REPLICA IDENTITY FULL")
		}
	}
	marks := pgx.Identifier{cfg.Schema, "write_marks"}.Sanitize()
	idents = append(idents, marks)
	if !pubExists {
		p.stmts = append(p.stmts, "CREATE PUBLICATION "+pub+" FOR TABLE "+strings.Join(idents, ", ")+" WITH (publish = 'insert, update, delete')")
	} else {
		var have []string
		if err := conn.QueryRow(ctx, `SELECT coalesce(array_agg(format('%I.%I', schemaname, tablename) ORDER BY 1), '{}') FROM pg_publication_tables WHERE pubname = $1`,
			lc.Publication).Scan(&have); err != nil {
			return nil, fmt.Errorf("error inspecting publication %s: %w", lc.Publication, err)
		}
		var want []string
		for _, id := range idents {
			var q string
			if err := conn.QueryRow(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)`, id).Scan(&q); err != nil {
				if errors.Is(err, pgx.ErrNoRows) && id == marks {
					q = id // created by this install's migrations
				} else {
					return nil, fmt.Errorf("error inspecting %s: %w", id, err)
				}
			}
			want = append(want, q)
		}
		slices.Sort(want)
		if !slices.Equal(have, want) {
			p.stmts = append(p.stmts, "ALTER PUBLICATION "+pub+" SET TABLE "+strings.Join(idents, ", "))
		}
	}
	for _, s := range p.stmts {
		p.sql = append(p.sql, s+";")
	}
	return p, nil
}

// apply runs the plan's statements in the install's transaction.
func (p *logicalPlan) apply(ctx context.Context, tx pgx.Tx, cfg *CaptureConfig) error {
	for _, s := range p.stmts {
		if _, err := tx.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	if p.backfill {
		return store.New(nil, cfg.Schema).On(tx).RequestBackfill(ctx, store.MirrorConsumer)
	}
	return nil
}

// dropSlot drops a replication slot no one reads. A serve stopped moments
// ago may still hold it while its connection closes: that is waited for,
// a few seconds at most.
func dropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		var active bool
		if err := conn.QueryRow(ctx, "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = $1), false)", slot).Scan(&active); err != nil || !active {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", slot); err != nil {
		return fmt.Errorf("error dropping replication slot %s (stop every dtebridge serve of this database first): %w", slot, err)
	}
	return nil
}
