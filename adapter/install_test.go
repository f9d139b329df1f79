package adapter_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

func connect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// legacyDump is every legacy table's content, to prove the bridge never
// changes it.
func legacyDump(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var b strings.Builder
	for _, tbl := range []string{"test_cycles", "reports", "cycle_reports", "workflow_phases"} {
		var s string
		if err := pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(to_jsonb(x)::text, E'\n' ORDER BY x::text), '') FROM `+tbl+` x`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		b.WriteString(s)
	}
	return b.String()
}

func triggers(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	var names []string
	if err := pool.QueryRow(context.Background(), `SELECT coalesce(array_agg(tgname::text ORDER BY tgname), '{}') FROM pg_trigger
		WHERE tgrelid = 'workflow_phases'::regclass AND NOT tgisinternal`).Scan(&names); err != nil {
		t.Fatal(err)
	}
	return names
}

func firstKey(t *testing.T, f *fixture) (k dtetype.Key) {
	t.Helper()
	if err := f.pool.QueryRow(context.Background(), `SELECT cycle_id, report_id FROM workflow_phases ORDER BY phase_id LIMIT 1`).Scan(&k.CycleID, &k.ReportID); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestInstallIsIdempotentAndUninstallLeavesLegacyAlone(t *testing.T) {
	t.Parallel()
	for _, trig := range []string{adapter.TriggerRow, adapter.TriggerStatement} {
		t.Run(trig, func(t *testing.T) {
			t.Parallel()
			f := setup(t, setupOptions{reports: 3, trigger: trig})
			ctx := context.Background()
			conn := connect(t, f.db.URL)
			res, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false)
			if err != nil {
				t.Fatal(err)
			}
			if res.FromVersion != res.ToVersion || len(res.SQL) != 2 {
				t.Errorf("second install: version %d -> %d, %d statements; want no migrations", res.FromVersion, res.ToVersion, len(res.SQL))
			}
			want := []string{"dtebridge_capture"}
			if trig == adapter.TriggerStatement {
				want = []string{"dtebridge_capture_delete", "dtebridge_capture_insert", "dtebridge_capture_update"}
			}
			if got := triggers(t, f.pool); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("triggers %v, want %v", got, want)
			}

			// Changing the mode on a re-install swaps the triggers.
			other := f.cfg.CaptureConfig()
			other.Trigger = map[string]string{adapter.TriggerRow: adapter.TriggerStatement, adapter.TriggerStatement: adapter.TriggerRow}[trig]
			if _, err := adapter.Install(ctx, conn, other, false); err != nil {
				t.Fatal(err)
			}
			if got := triggers(t, f.pool); fmt.Sprint(got) == fmt.Sprint(want) {
				t.Errorf("re-install in %s mode left the %s triggers", other.Trigger, trig)
			}

			if _, err := f.model.Start(ctx, legacysim.Ref{Key: firstKey(t, f), Phase: "Planning"}, 1, legacysim.StartOptions{}); err != nil {
				t.Fatal(err)
			}
			before := legacyDump(t, f.pool)
			if _, err := adapter.Uninstall(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
				t.Fatal(err)
			}
			if got := triggers(t, f.pool); len(got) != 0 {
				t.Errorf("triggers left after uninstall: %v", got)
			}
			if n := f.count(`SELECT count(*) FROM pg_namespace WHERE nspname = 'dtebridge'`); n != 0 {
				t.Error("schema dtebridge left after uninstall")
			}
			if after := legacyDump(t, f.pool); after != before {
				t.Error("uninstall changed legacy data")
			}
			// Legacy keeps working without the bridge.
			if _, err := f.model.Start(ctx, legacysim.Ref{Key: firstKey(t, f), Phase: "Testing"}, 1, legacysim.StartOptions{}); err != nil {
				t.Fatalf("legacy write after uninstall: %v", err)
			}
			if _, err := adapter.Uninstall(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
				t.Errorf("second uninstall: %v", err)
			}
		})
	}
}

func TestInstallDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := legacysim.Init(ctx, db.Pool, legacysim.Seed); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, db.URL)
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.CaptureConfig()
	cc.Schema = "bridge"
	res, err := adapter.Install(ctx, conn, cc, true)
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(res.SQL, "\n")
	for _, want := range []string{`CREATE SCHEMA IF NOT EXISTS "bridge"`, `CREATE TABLE "bridge".changes`, `CREATE TRIGGER dtebridge_capture`, `"public"."workflow_phases"`} {
		if !strings.Contains(sql, want) {
			t.Errorf("dry-run SQL lacks %q", want)
		}
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'bridge'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("dry run created the schema (count %d, err %v)", n, err)
	}
	if got := triggers(t, db.Pool); len(got) != 0 {
		t.Errorf("dry run created triggers %v", got)
	}
}

func TestInstallRejectsBadConfig(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := legacysim.Init(ctx, db.Pool, legacysim.Seed); err != nil {
		t.Fatal(err)
	}
	conn := connect(t, db.URL)
	base := adapter.CaptureConfig{Schema: "dtebridge", Table: "public.workflow_phases", Key: []string{"phase_id"}, Trigger: adapter.TriggerRow, Mode: adapter.ModeTrigger}
	with := func(f func(*adapter.CaptureConfig)) adapter.CaptureConfig {
		c := base
		f(&c)
		return c
	}
	cases := map[string]struct {
		cfg  adapter.CaptureConfig
		want string
	}{
		"NoTable":        {with(func(c *adapter.CaptureConfig) { c.Table = "public.phases" }), "legacy table not found: public.phases"},
		"BadKey":         {with(func(c *adapter.CaptureConfig) { c.Key = []string{"id"} }), `key column "id" is not a column of public.workflow_phases`},
		"BadMode":        {with(func(c *adapter.CaptureConfig) { c.Trigger = "sometimes" }), `capture trigger "sometimes"`},
		"BadCaptureMode": {with(func(c *adapter.CaptureConfig) { c.Mode = "wal" }), `capture.mode "wal" is not trigger or logical`},
		"BadSlot": {with(func(c *adapter.CaptureConfig) {
			c.Mode, c.Logical = adapter.ModeLogical, &adapter.Logical{Slot: "Bridge-Slot", Publication: "p"}
		}), `capture.slot "Bridge-Slot" is not a replication slot name`},
		"BadTable": {with(func(c *adapter.CaptureConfig) { c.Table = "a.b.c" }), `"a.b.c" is not table or schema.table`},
		"BadColumn": {with(func(c *adapter.CaptureConfig) {
			cfg, _ := config.Example("seed")
			cfg.Legacy.Columns.PlannedEnd = "due_date"
			c.Legacy = &cfg.Legacy
		}), `legacy.columns.planned_end is "due_date", which is not a column of public.workflow_phases: set legacy.columns.planned_end`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := adapter.Install(ctx, conn, &tc.cfg, false)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want %q", err, tc.want)
			}
		})
	}
}

// readmeGrants returns the least-privilege SQL block the README documents,
// for role in database db: this test is what keeps the README true.
func readmeGrants(t *testing.T, role, db string) []string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "<!-- least-privilege")
	if i < 0 {
		t.Fatal("README.md lost its least-privilege block")
	}
	s = s[i:]
	s = s[strings.Index(s, "```sql")+len("```sql"):]
	s = s[:strings.Index(s, "```")]
	var stmts []string
	for _, st := range strings.Split(s, ";") {
		st = strings.TrimSpace(st)
		if st == "" {
			continue
		}
		st = strings.ReplaceAll(st, " dtebridge", " "+role)
		st = strings.ReplaceAll(st, "DATABASE synapse", "DATABASE "+db)
		stmts = append(stmts, st)
	}
	if len(stmts) < 4 {
		t.Fatalf("README least-privilege block has %d statements", len(stmts))
	}
	return stmts
}

// TestLeastPrivilege installs and runs the bridge as a role with only the
// documented grants, with the legacy application writing as its own
// non-superuser role that has no grants on the bridge schema.
func TestLeastPrivilege(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := legacysim.Init(ctx, db.Pool, legacysim.Seed); err != nil {
		t.Fatal(err)
	}
	app := db.Name + "_app"
	bridge := db.Name + "_bridge"
	for _, q := range append([]string{
		fmt.Sprintf(`CREATE ROLE %s LOGIN`, app),
		fmt.Sprintf(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %s`, app),
		fmt.Sprintf(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO %s`, app),
	}, readmeGrants(t, bridge, db.Name)...) {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		for _, r := range []string{app, bridge} {
			db.Pool.Exec(context.Background(), "DROP OWNED BY "+r+" CASCADE")
			db.Pool.Exec(context.Background(), "REVOKE ALL ON DATABASE "+db.Name+" FROM "+r)
		}
	})
	asRole := func(role string) string {
		u, _ := url.Parse(db.URL)
		u.User = url.UserPassword(role, "change-me")
		return u.String()
	}

	bconn := connect(t, asRole(bridge))
	var bpool *pgxpool.Pool
	var super bool
	if err := bconn.QueryRow(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil || super {
		t.Fatalf("bridge role is superuser=%v (err %v)", super, err)
	}
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adapter.Install(ctx, bconn, cfg.CaptureConfig(), false); err != nil {
		t.Fatalf("install as the bridge role: %v", err)
	}
	if _, err := adapter.Install(ctx, bconn, cfg.CaptureConfig(), false); err != nil {
		t.Fatalf("second install as the bridge role: %v", err)
	}
	stmt := cfg.CaptureConfig()
	stmt.Trigger = adapter.TriggerStatement
	_, err = adapter.Install(ctx, bconn, stmt, false)
	if err == nil || !strings.Contains(err.Error(), "run this install as the owner") {
		t.Errorf("switching trigger mode as the bridge role: error = %v, want one that says to run as the owner", err)
	}

	bpool, err = pgxpool.New(ctx, asRole(bridge))
	if err != nil {
		t.Fatal(err)
	}
	defer bpool.Close()
	apool, err := pgxpool.New(ctx, asRole(app))
	if err != nil {
		t.Fatal(err)
	}
	defer apool.Close()
	if _, err := apool.Exec(ctx, `SELECT 1 FROM dtebridge.changes`); err == nil {
		t.Error("the legacy role can read the bridge schema; it should need no grants there")
	}
	if _, err := legacysim.Simulate(ctx, apool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: 5, Ops: 200, Rate: 0, Concurrency: 1}); err != nil {
		t.Fatalf("legacy traffic as the application role with capture installed: %v", err)
	}

	tr, err := cfg.Translator(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	r := adapter.NewReader(cfg.Store(bpool), tr, &adapter.ReaderConfig{PollInterval: 100 * time.Millisecond, MaintenanceInterval: 100 * time.Millisecond})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx, c) }()
	bridgetest.WaitFor(t, 20*time.Second, "the backfill as the bridge role", func() bool { return c.backfills > 0 })
	if _, err := legacysim.Simulate(ctx, apool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: 2, Ops: 100, Rate: 0, Concurrency: 1, Seed: 2}); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the stream as the bridge role", func() bool {
		for _, ch := range c.snapshot() {
			if ch.Op != dtetype.OpSnapshot {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("reader as the bridge role: %v", err)
	}
	if n, err := cfg.Store(bpool).Prune(ctx, time.Nanosecond, time.Hour); err != nil {
		t.Errorf("prune as the bridge role: %v (pruned %d)", err, n)
	}
	// Without UPDATE on the legacy table, no phase moves to new, forced or
	// not: its commands could not be written back.
	_, err = cutover.NewStore(cfg.Store(bpool)).Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 10, Actor: "a",
		Reason: "r", Force: true, LegacyTable: cfg.Legacy.Name}, cfg.GateConfig())
	if err == nil || !strings.Contains(err.Error(), "may not UPDATE public.workflow_phases") {
		t.Errorf("a forced move to new without UPDATE: %v", err)
	}
	bconn2 := connect(t, asRole(bridge))
	if _, err := adapter.Uninstall(ctx, bconn2, cfg.CaptureConfig(), false); err != nil {
		t.Errorf("uninstall as the bridge role: %v", err)
	}
}

// TestInstallSwitchesCaptureMode installs trigger capture, switches to
// log-based capture and back, and uninstalls: each install leaves exactly
// the mode's objects (triggers; or the publication and REPLICA IDENTITY
// FULL), a switch back to triggers drops the slot and asks for a backfill
// (what happened between the two captures is in neither), and uninstall
// leaves no slot and no publication.
func TestInstallSwitchesCaptureMode(t *testing.T) {
	t.Parallel()
	f := setup(t, setupOptions{reports: 2})
	ctx := context.Background()
	conn := connect(t, f.db.URL)
	published := func() []string {
		var names []string
		if err := f.pool.QueryRow(ctx, `SELECT coalesce(array_agg(tablename::text ORDER BY tablename), '{}') FROM pg_publication_tables WHERE pubname = 'dtebridge_capture'`).Scan(&names); err != nil {
			t.Fatal(err)
		}
		return names
	}
	if got := triggers(t, f.pool); len(got) != 1 || len(published()) != 0 {
		t.Fatalf("trigger mode: triggers %v, published %v", got, published())
	}

	f.cfg.Capture.Mode = adapter.ModeLogical
	dry, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), true)
	if err != nil {
		t.Fatal(err)
	}
	sql := strings.Join(dry.SQL, "\n")
	for _, want := range []string{"DROP TRIGGER dtebridge_capture ON", "REPLICA IDENTITY FULL", "CREATE PUBLICATION \"dtebridge_capture\" FOR TABLE"} {
		if !strings.Contains(sql, want) {
			t.Errorf("dry run of the switch to logical lacks %q:\n%s", want, sql)
		}
	}
	if _, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	if got := triggers(t, f.pool); len(got) != 0 {
		t.Errorf("logical mode left triggers %v", got)
	}
	if got := published(); strings.Join(got, ",") != "workflow_phases,write_marks" {
		t.Errorf("published %v", got)
	}
	if n := f.count(`SELECT count(*) FROM pg_class WHERE oid = 'workflow_phases'::regclass AND relreplident = 'f'`); n != 1 {
		t.Error("workflow_phases is not REPLICA IDENTITY FULL")
	}
	if _, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
		t.Fatalf("a second install: %v", err)
	}
	// The reader creates the slot.
	c := newCollector()
	m := f.reader(c, nil)
	bridgetest.WaitFor(t, 30*time.Second, "the slot's backfill", func() bool { return c.backfills > 0 })
	st, err := adapter.Slot(ctx, f.pool, adapter.DefaultSlot(f.db.Name, "dtebridge"))
	if err != nil || !st.Exists {
		t.Fatalf("slot: %v %+v", err, st)
	}
	// While it is read, uninstall refuses.
	if _, err := adapter.Uninstall(ctx, conn, f.cfg.CaptureConfig(), false); err == nil || !strings.Contains(err.Error(), "is being read") {
		t.Errorf("uninstall while the slot is read: %v", err)
	}
	f.stopReaders()
	_ = m

	f.cfg.Capture.Mode = adapter.ModeTrigger
	if _, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	if got := triggers(t, f.pool); len(got) != 1 || len(published()) != 0 {
		t.Errorf("back to triggers: triggers %v, published %v", got, published())
	}
	if st, _ := adapter.Slot(ctx, f.pool, st.Slot); st.Exists {
		t.Error("the switch back to triggers left the slot")
	}
	if n := f.count(`SELECT count(*) FROM dtebridge.checkpoints WHERE consumer = 'mirror' AND backfill_requested_at IS NOT NULL`); n != 1 {
		t.Error("the switch back to triggers did not ask for a backfill")
	}

	// Uninstall from logical mode drops slot and publication.
	f.cfg.Capture.Mode = adapter.ModeLogical
	if _, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, st.Slot); err != nil {
		t.Fatal(err)
	}
	stmts, err := adapter.Uninstall(ctx, conn, f.cfg.CaptureConfig(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(stmts, "\n"), "pg_drop_replication_slot") {
		t.Errorf("uninstall SQL: %v", stmts)
	}
	if st, _ := adapter.Slot(ctx, f.pool, st.Slot); st.Exists || len(published()) != 0 {
		t.Errorf("after uninstall: slot %+v, published %v", st, published())
	}
}
