// Package preflight compares a configuration with the live systems before
// anything changes (dtebridge check; also run by install and by serve at
// start, where a problem refuses to go on): the mapping against the
// database's enum labels, the configured columns and their types, the
// users and attribute tables, the grants what this configuration does
// needs, the token file, and Temporal.
package preflight

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
)

// Severities.
const (
	// Error: the configuration cannot work here.
	Error = "error"
	// Warning: it works, but something it may need later is missing.
	Warning = "warning"
)

// Problem is one finding of the check, with its fix.
type Problem struct {
	Severity string `json:"severity"`
	// Check names the check: labels, columns, users, attributes, grants,
	// token, temporal.
	Check string `json:"check"`
	// Setting is the configuration setting involved, if one is.
	Setting string `json:"setting,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// Report is the check's outcome.
type Report struct {
	Config   string    `json:"config"`
	Problems []Problem `json:"problems"`
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
}

// OK is true without errors (warnings allowed).
func (r *Report) OK() bool { return r.Errors == 0 }

// Err returns the errors as one error, or nil.
func (r *Report) Err() error {
	if r.OK() {
		return nil
	}
	var lines []string
	for _, p := range r.Problems {
		if p.Severity == Error {
			lines = append(lines, fmt.Sprintf("%s: %s (fix: %s)", p.Check, p.Message, p.Fix))
		}
	}
	return fmt.Errorf("preflight check found %d problems (dtebridge check lists them):\n  %s", r.Errors, strings.Join(lines, "\n  "))
}

func (r *Report) add(sev, check, setting, fix, format string, args ...any) {
	r.Problems = append(r.Problems, Problem{Severity: sev, Check: check, Setting: setting, Message: fmt.Sprintf(format, args...), Fix: fix})
	if sev == Error {
		r.Errors++
	} else {
		r.Warnings++
	}
}

// Options says what to check.
type Options struct {
	Config *config.Config
	Pool   *pgxpool.Pool
	// Temporal, if set, is checked: reachable, the namespace, the search
	// attributes.
	Temporal  client.Client
	Namespace string
	// Installing: the capture triggers are about to be attached, so the
	// trigger grants are needed even where triggers exist.
	Installing bool
	// TokenGiven: the caller holds a bearer token of its own (the demo's),
	// so a missing http.token_file is no problem.
	TokenGiven bool
}

// Run runs every check that applies.
func Run(ctx context.Context, o Options) (*Report, error) {
	r := &Report{Config: o.Config.Path(), Problems: []Problem{}}
	c := &checker{o: o, r: r, t: &o.Config.Legacy}
	steps := []func(context.Context) error{c.columns, c.labels, c.users, c.attributes, c.grants, c.capture, c.token}
	if o.Temporal != nil {
		steps = append(steps, c.temporal)
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	return r, nil
}

type checker struct {
	o Options
	r *Report
	t *legacy.Table
	// cols are the legacy table's columns by name.
	cols map[string]legacy.ColumnType
}

// columns checks the table, its key and its configured columns exist with
// types the bridge can use.
func (c *checker) columns(ctx context.Context) error {
	var err error
	if c.cols, err = legacy.TableColumns(ctx, c.o.Pool, c.t.Name); err != nil {
		return err
	}
	if len(c.cols) == 0 {
		c.r.add(Error, "columns", "legacy.table", "set legacy.table to the legacy phase table (schema.table), or grant this role access to it",
			"table %s does not exist, or this role cannot see it", c.t.Name)
		return nil
	}
	for _, k := range c.t.Key {
		if _, ok := c.cols[k]; !ok {
			c.r.add(Error, "columns", "legacy.key", "set legacy.key to the table's primary-key columns", "key column %q is not a column of %s", k, c.t.Name)
		}
	}
	want := map[string]string{"cycle": "N", "report": "N", "planned_start": "D", "planned_end": "D", "actual_start": "D", "actual_end": "D",
		"updated_at": "D", "override_at": "D", "phase": "ES", "state": "ES", "status": "ES", "state_override": "ES", "status_override": "ES",
		"legacy_status": "ES"}
	kinds := map[string]string{"N": "a whole number", "D": "a date or timestamp", "ES": "an enum or text"}
	for _, nc := range c.t.Columns.Named() {
		col, ok := c.cols[nc[1]]
		setting := nc[0]
		if !ok {
			c.r.add(Error, "columns", setting, "set "+setting+" to the column that holds it", "%s is %q, which is not a column of %s", setting, nc[1], c.t.Name)
			continue
		}
		role := strings.TrimPrefix(setting, "legacy.columns.")
		cats, typed := want[role]
		if typed && !strings.Contains(cats, col.Category) {
			c.r.add(Error, "columns", setting, "point "+setting+" at a column of that type, or change the column",
				"%s.%s is %s; the bridge needs %s there", c.t.Name, nc[1], col.Name, kinds[cats])
		}
	}
	return nil
}

// labels checks the mapping against the labels the database can hold: an
// enum's labels, or for a text column the values it holds now. A label
// rows hold that the mapping does not know is an error (each change
// carrying it would go to quarantine); one only the enum allows is a
// warning. A mapped label the enum lacks is an error where the write-back
// writes it, else a warning.
func (c *checker) labels(ctx context.Context) error {
	if len(c.cols) == 0 {
		return nil
	}
	type mapping struct {
		setting, column string
		known           func(string) bool
		labels          []string
		written         func(string) bool
		values          string
	}
	never := func(string) bool { return false }
	var ms []mapping
	{
		var labels []string
		for l := range c.t.Phases.All() {
			labels = append(labels, l)
		}
		known := func(l string) bool { _, ok := c.t.Phases.Get(l); return ok || slices.Contains(c.t.IgnorePhases, l) }
		ms = append(ms, mapping{"legacy.phases", c.t.Columns.Phase, known, labels, never, "a canonical phase id, or list it in legacy.ignore_phases"})
	}
	{
		var labels []string
		for l := range c.t.States.All() {
			labels = append(labels, l)
		}
		known := func(l string) bool { _, ok := c.t.States.Get(l); return ok }
		written := func(l string) bool {
			for _, st := range dtetype.States() {
				if w, err := c.t.StateLabel(st); err == nil && w == l {
					return true
				}
			}
			return false
		}
		values := fmt.Sprintf("one of %v", dtetype.States())
		ms = append(ms, mapping{"legacy.states", c.t.Columns.State, known, labels, written, values},
			mapping{"legacy.states", c.t.Columns.StateOverride, known, nil, never, values})
	}
	{
		var labels []string
		for l := range c.t.Statuses.All() {
			labels = append(labels, l)
		}
		known := func(l string) bool { _, ok := c.t.Statuses.Get(l); return ok }
		written := func(l string) bool {
			for _, st := range dtetype.Statuses() {
				if w, err := c.t.StatusLabel(st); err == nil && w == l {
					return true
				}
			}
			return false
		}
		values := fmt.Sprintf("one of %v", dtetype.Statuses())
		ms = append(ms, mapping{"legacy.statuses", c.t.Columns.Status, known, labels, written, values},
			mapping{"legacy.statuses", c.t.Columns.StatusOverride, known, nil, never, values})
	}
	if c.t.Columns.LegacyStatus != "" {
		var labels []string
		for l := range c.t.LegacyStatuses.All() {
			labels = append(labels, l)
		}
		known := func(l string) bool { _, ok := c.t.LegacyStatuses.Get(l); return ok }
		written := func(l string) bool {
			for _, st := range dtetype.States() {
				if w, err := c.t.LegacyStatusLabel(st); err == nil && w == l {
					return true
				}
			}
			return false
		}
		ms = append(ms, mapping{"legacy.legacy_statuses", c.t.Columns.LegacyStatus, known, labels, written, fmt.Sprintf("one of %v", dtetype.States())})
	}
	for _, m := range ms {
		col, ok := c.cols[m.column]
		if !ok {
			continue
		}
		// The values rows hold now: for an enum, which of its unmapped
		// labels any row holds (cheap: usually none to look for); for text,
		// every distinct value.
		colSQL := pgx.Identifier{m.column}.Sanitize()
		q, args := "SELECT DISTINCT "+colSQL+"::text FROM "+legacy.Ident(c.t.Name)+" WHERE "+colSQL+" IS NOT NULL LIMIT 1000", []any{}
		if col.IsEnum {
			var unmapped []string
			for _, l := range col.Enum {
				if !m.known(l) {
					unmapped = append(unmapped, l)
				}
			}
			q = "SELECT l FROM unnest($1::text[]) l WHERE EXISTS (SELECT 1 FROM " + legacy.Ident(c.t.Name) + " WHERE " + colSQL + "::text = l)"
			args = []any{unmapped}
		}
		rows, err := c.o.Pool.Query(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("error reading %s.%s: %w", c.t.Name, m.column, err)
		}
		held, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("error reading %s.%s: %w", c.t.Name, m.column, err)
		}
		for _, l := range held {
			if !m.known(l) {
				c.r.add(Error, "labels", m.setting, fmt.Sprintf("add %q to %s, mapped to %s", l, m.setting, m.values),
					"rows of %s hold %q in %s, which %s does not map: each change carrying it would go to quarantine", c.t.Name, l, m.column, m.setting)
			}
		}
		if !col.IsEnum {
			continue
		}
		for _, l := range col.Enum {
			if !m.known(l) && !slices.Contains(held, l) {
				c.r.add(Warning, "labels", m.setting, fmt.Sprintf("add %q to %s, mapped to %s", l, m.setting, m.values),
					"the enum %s of %s allows %q, which %s does not map (no row holds it now)", col.Name, m.column, l, m.setting)
			}
		}
		for _, l := range m.labels {
			if slices.Contains(col.Enum, l) {
				continue
			}
			if m.written(l) {
				c.r.add(Error, "labels", m.setting, fmt.Sprintf("correct %q in %s to one of the enum's labels %v, or declare another in legacy.write.labels", l, m.setting, col.Enum),
					"%s maps %q, which the write-back writes, but the enum %s of %s has no such label: every engine command would fail", m.setting, l, col.Name, m.column)
			} else {
				c.r.add(Warning, "labels", m.setting, fmt.Sprintf("remove %q from %s, or correct its spelling to one of %v", l, m.setting, col.Enum),
					"%s maps %q, which the enum %s of %s does not have", m.setting, l, col.Name, m.column)
			}
		}
	}
	return nil
}

// users checks the users table and its id and role columns are there and
// readable.
func (c *checker) users(ctx context.Context) error {
	u := c.t.Users
	if u == nil {
		return nil
	}
	cols, err := legacy.TableColumns(ctx, c.o.Pool, u.Table)
	if err != nil {
		return err
	}
	if len(cols) == 0 {
		c.r.add(Error, "users", "legacy.users.table", "set legacy.users.table, or grant this role access to it",
			"users table %s does not exist, or this role cannot see it: the role rule would be silently off", u.Table)
		return nil
	}
	for _, col := range [][2]string{{"legacy.users.id", u.ID}, {"legacy.users.role", u.Role}} {
		if _, ok := cols[col[1]]; !ok {
			c.r.add(Error, "users", col[0], "set "+col[0]+" to the column that holds it", "%s is %q, which is not a column of %s", col[0], col[1], u.Table)
			continue
		}
		var can bool
		if err := c.o.Pool.QueryRow(ctx, `SELECT has_column_privilege(to_regclass($1), $2, 'SELECT')`, legacy.Ident(u.Table), col[1]).Scan(&can); err != nil {
			return err
		}
		if !can {
			c.r.add(Error, "users", col[0], fmt.Sprintf("GRANT SELECT (%s) ON %s TO %s", col[1], u.Table, "<this role>"),
				"this role may not read %s.%s: every role lookup would fail and the role rule would be off", u.Table, col[1])
		}
	}
	return nil
}

// attributes checks each attribute's table and columns, and that this
// role may read them.
func (c *checker) attributes(ctx context.Context) error {
	for _, name := range c.t.AttributeNames() {
		a := c.t.Attributes[name]
		setting := "legacy.attributes." + name
		cols, err := legacy.TableColumns(ctx, c.o.Pool, a.Table)
		if err != nil {
			return err
		}
		if len(cols) == 0 {
			c.r.add(Error, "attributes", setting+".table", "set "+setting+".table, or grant this role access to it", "table %s does not exist, or this role cannot see it", a.Table)
			continue
		}
		for _, col := range [][2]string{{"key", a.Key}, {"cycle", a.Cycle}, {"column", a.Column}} {
			if col[1] == "" {
				continue
			}
			if _, ok := cols[col[1]]; !ok {
				c.r.add(Error, "attributes", setting+"."+col[0], "set "+setting+"."+col[0]+" to a column of "+a.Table, "%s.%s is %q, which is not a column of %s", setting, col[0], col[1], a.Table)
			}
		}
	}
	return nil
}

// grants checks this role may do what the configuration will: read the
// legacy table (backfill, reconcile), attach capture (install), and write
// back (phases on new).
func (c *checker) grants(ctx context.Context) error {
	if len(c.cols) == 0 {
		return nil
	}
	priv := func(table, p string) (bool, error) {
		var ok bool
		err := c.o.Pool.QueryRow(ctx, `SELECT has_table_privilege(to_regclass($1), $2)`, legacy.Ident(table), p).Scan(&ok)
		return ok, err
	}
	can, err := priv(c.t.Name, "SELECT")
	if err != nil {
		return err
	}
	if !can {
		c.r.add(Error, "grants", "legacy.table", fmt.Sprintf("GRANT SELECT ON %s TO <this role>", c.t.Name),
			"this role may not read %s: backfill and reconcile need it", c.t.Name)
	}
	schema := c.o.Config.Capture.Schema
	var installed bool
	if err := c.o.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, pgx.Identifier{schema, "changes"}.Sanitize()).Scan(&installed); err != nil {
		return err
	}
	tables := append([]string{c.t.Name}, c.t.AttributeTables()...)
	if !installed || c.o.Installing {
		if c.o.Config.Capture.Mode == adapter.ModeLogical {
			tables = nil // log-based capture attaches no trigger; capture checks what it needs
		}
		for _, t := range tables {
			if can, err = priv(t, "TRIGGER"); err != nil {
				return err
			}
			if !can {
				c.r.add(Error, "grants", "legacy.table", fmt.Sprintf("GRANT TRIGGER ON %s TO <this role>, or run install as its owner", t),
					"this role may not create triggers on %s: install attaches capture there", t)
			}
		}
		var create bool
		if err := c.o.Pool.QueryRow(ctx, `SELECT has_database_privilege(current_database(), 'CREATE') OR to_regnamespace($1) IS NOT NULL`,
			pgx.Identifier{schema}.Sanitize()).Scan(&create); err != nil {
			return err
		}
		if !create {
			c.r.add(Error, "grants", "capture.schema", "GRANT CREATE ON DATABASE <db> TO <this role>, or create the schema "+schema+" for it",
				"this role may not create the bridge schema %s", schema)
		}
	}
	if can, err = priv(c.t.Name, "UPDATE"); err != nil {
		return err
	}
	if !can {
		onNew := false
		if installed {
			if err := c.o.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+pgx.Identifier{schema, "cutover_modes"}.Sanitize()+` WHERE mode = 'new')`).Scan(&onNew); err != nil {
				return err
			}
		}
		sev, what := Warning, "moving a phase to new will be refused until it may"
		if onNew {
			sev, what = Error, "a phase is on new, and its commands cannot be written back"
		}
		c.r.add(sev, "grants", "legacy.table", fmt.Sprintf("GRANT UPDATE ON %s TO <this role>", c.t.Name),
			"this role may not update %s, which cutover's write-back does: %s", c.t.Name, what)
	}
	return nil
}

// capture checks what the capture mode needs of the server: for
// log-based capture, wal_level, the REPLICATION attribute, a free slot,
// the tables' replica identity, the publication and the slot's health;
// for trigger capture, that no slot of a former log-based capture is left
// keeping WAL.
func (c *checker) capture(ctx context.Context) error {
	cfg := c.o.Config
	lc := cfg.Logical()
	if lc == nil {
		name, err := (&adapter.Logical{Slot: cfg.Capture.Slot}).SlotName(ctx, c.o.Pool, cfg.Capture.Schema)
		if err != nil {
			return err
		}
		st, err := adapter.Slot(ctx, c.o.Pool, name)
		if err != nil {
			return err
		}
		if st.Exists {
			c.r.add(Warning, "capture", "capture.mode", "dtebridge install drops it (capture.mode is trigger), or SELECT pg_drop_replication_slot('"+name+"')",
				"replication slot %s of a former log-based capture still exists and keeps %d bytes of WAL", name, st.RetainedBytes)
		}
		return nil
	}
	var walLevel, keep string
	var replication bool
	var slots, maxSlots, senders, maxSenders int
	if err := c.o.Pool.QueryRow(ctx, `SELECT current_setting('wal_level'), current_setting('max_slot_wal_keep_size'),
		(SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),
		(SELECT count(*) FROM pg_replication_slots), current_setting('max_replication_slots')::int,
		(SELECT count(*) FROM pg_stat_replication), current_setting('max_wal_senders')::int`).
		Scan(&walLevel, &keep, &replication, &slots, &maxSlots, &senders, &maxSenders); err != nil {
		return err
	}
	if walLevel != "logical" {
		c.r.add(Error, "capture", "capture.mode", "ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL; or set capture.mode: trigger",
			"the server's wal_level is %s: log-based capture needs logical", walLevel)
	}
	if !replication {
		c.r.add(Error, "capture", "capture.mode", "ALTER ROLE <this role> REPLICATION (PostgreSQL 15 has no narrower grant for replication connections)",
			"this role lacks the REPLICATION attribute, which reading a replication slot needs")
	}
	if keep == "-1" {
		c.r.add(Warning, "capture", "capture.mode", "set max_slot_wal_keep_size (say 10GB): past it a stuck slot is invalidated instead of filling the disk, and the README says how to recover",
			"max_slot_wal_keep_size is unlimited: a slot nobody reads keeps WAL until the disk is full")
	}
	name, err := lc.SlotName(ctx, c.o.Pool, cfg.Capture.Schema)
	if err != nil {
		return err
	}
	st, err := adapter.Slot(ctx, c.o.Pool, name)
	if err != nil {
		return err
	}
	switch {
	case !st.Exists && slots >= maxSlots:
		c.r.add(Error, "capture", "capture.slot", "raise max_replication_slots (a restart), or drop an unused slot",
			"all %d replication slots are taken, and serve must create %s", maxSlots, name)
	case !st.Exists && senders >= maxSenders:
		c.r.add(Warning, "capture", "capture.slot", "raise max_wal_senders (a restart)",
			"all %d WAL senders are busy; reading slot %s needs one", maxSenders, name)
	case st.WALStatus == "lost":
		c.r.add(Error, "capture", "capture.slot", "SELECT pg_drop_replication_slot('"+name+"'), then restart serve: it creates a new slot and backfills from its snapshot",
			"replication slot %s has lost WAL it needed (past max_slot_wal_keep_size) and cannot be read", name)
	}
	for _, t := range append([]string{c.t.Name}, c.t.AttributeTables()...) {
		var replIdent string
		var owner bool
		err := c.o.Pool.QueryRow(ctx, `SELECT relreplident::text, pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = to_regclass($1)`, legacy.Ident(t)).Scan(&replIdent, &owner)
		if err != nil {
			continue // a missing table is the columns check's
		}
		if replIdent != "f" && !(c.o.Installing && owner) {
			c.r.add(Error, "capture", "legacy.table", fmt.Sprintf("ALTER TABLE %s REPLICA IDENTITY FULL (as its owner), or run dtebridge install as its owner", t),
				"%s is not REPLICA IDENTITY FULL: a deleted row would reach log-based capture as its key alone", t)
		}
	}
	var installed, published bool
	if err := c.o.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL, EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $2 AND tablename = 'write_marks')`,
		pgx.Identifier{cfg.Capture.Schema, "write_marks"}.Sanitize(), lc.Publication).Scan(&installed, &published); err != nil {
		return err
	}
	if installed && !published && !c.o.Installing {
		c.r.add(Error, "capture", "capture.publication", "run dtebridge install (as the tables' owner) with capture.mode: logical",
			"publication %s does not publish the bridge's tables: log-based capture is not installed", lc.Publication)
	}
	return nil
}

// token checks the token file, when one is configured.
func (c *checker) token(context.Context) error {
	if c.o.Config.HTTP.TokenFile == "" && !c.o.TokenGiven {
		c.r.add(Warning, "token", "http.token_file", "write a random token into a file only this user can read, and set http.token_file",
			"no http.token_file: engine commands and every other mutation are refused (401) until one is configured")
		return nil
	}
	if c.o.Config.HTTP.TokenFile == "" {
		return nil
	}
	if _, err := c.o.Config.Token(); err != nil {
		c.r.add(Error, "token", "http.token_file", "create the file with the token and chmod 600 it", "%v", err)
	}
	return nil
}

// temporal checks Temporal answers, the namespace exists and the search
// attributes are registered.
func (c *checker) temporal(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.o.Temporal.CheckHealth(tctx, &client.CheckHealthRequest{}); err != nil {
		c.r.add(Error, "temporal", "temporal.address", "start Temporal, or set --temporal-address / temporal.address to where it runs", "Temporal does not answer: %v", err)
		return nil
	}
	ns := cmpOr(c.o.Namespace, "default")
	if _, err := c.o.Temporal.WorkflowService().DescribeNamespace(tctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns}); err != nil {
		c.r.add(Error, "temporal", "temporal.namespace", "create the namespace (temporal operator namespace create "+ns+"), or set --temporal-namespace",
			"namespace %q: %v", ns, err)
		return nil
	}
	missing, wrong, err := shadow.CheckSearchAttributes(tctx, c.o.Temporal, ns)
	if err != nil {
		c.r.add(Warning, "temporal", "", "let serve register them, or register them yourself: "+strings.Join(shadow.AllCreateCommands(ns), "; "),
			"cannot list search attributes: %v", err)
		return nil
	}
	if len(wrong) > 0 {
		c.r.add(Error, "temporal", "temporal.namespace", "remove them (temporal operator search-attribute remove --namespace "+ns+" --name NAME) and let serve register them",
			"search attributes in namespace %s have another type than the shadow upserts: %s", ns, strings.Join(wrong, "; "))
	}
	if len(missing) > 0 {
		names := slices.Sorted(maps.Keys(missing))
		c.r.add(Warning, "temporal", "", "serve registers them where the server lets it; else (Temporal Cloud): "+strings.Join(shadow.CreateCommands(ns, missing), "; "),
			"search attributes %s are not registered in %s", strings.Join(names, ", "), ns)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
