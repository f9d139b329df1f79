package preflight_test

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/internal/preflight"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/legacy"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// seedDB is a seed-profile legacy database with one report's rows.
func seedDB(t *testing.T) *testenv.DB {
	t.Helper()
	ctx := context.Background()
	db := testenv.NewDB(t)
	if err := legacysim.Init(ctx, db.Pool, legacysim.Seed); err != nil {
		t.Fatal(err)
	}
	m := legacysim.NewModel(db.Pool, legacysim.Seed, nil)
	if err := m.CreateUsers(ctx); err != nil {
		t.Fatal(err)
	}
	cycle, err := m.CreateCycle(ctx, "c", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.CreateReport(ctx, "r", "FRB")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddReport(ctx, dtetype.Key{CycleID: cycle, ReportID: id}, legacysim.AddOptions{Tester: 12}); err != nil {
		t.Fatal(err)
	}
	return db
}

func run(t *testing.T, cfg *config.Config, pool *pgxpool.Pool, o preflight.Options) *preflight.Report {
	t.Helper()
	o.Config, o.Pool = cfg, pool
	r, err := preflight.Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// find returns the problems of check whose message contains s.
func find(r *preflight.Report, check, s string) []preflight.Problem {
	var out []preflight.Problem
	for _, p := range r.Problems {
		if p.Check == check && strings.Contains(p.Message, s) {
			out = append(out, p)
		}
	}
	return out
}

func seedConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestMatchingDatabasePasses: the shipped seed config on a seed database
// has no error.
func TestMatchingDatabasePasses(t *testing.T) {
	t.Parallel()
	db := seedDB(t)
	r := run(t, seedConfig(t), db.Pool, preflight.Options{})
	if !r.OK() {
		t.Fatalf("seed config on a seed database: %+v", r.Problems)
	}
	if len(find(r, "token", "no http.token_file")) != 1 {
		t.Errorf("a missing token file is not warned about: %+v", r.Problems)
	}
}

// TestEveryMismatch causes each kind of mismatch on a live database and
// checks it is named with its fix and the right severity.
func TestEveryMismatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		name      string
		prepare   func(db *testenv.DB, cfg *config.Config)
		check     string
		message   string
		severity  string
		fixPrefix string
	}{
		{"ProductionConfigOnSeed", func(db *testenv.DB, cfg *config.Config) {
			p, _ := config.Example("production")
			*cfg = *p
		}, "labels", `hold "On Schedule" in schedule_status, which legacy.statuses does not map`, preflight.Error, `add "On Schedule" to legacy.statuses`},
		{"LabelRowsHold", func(db *testenv.DB, cfg *config.Config) {
			db.Pool.Exec(ctx, `ALTER TYPE workflow_state_enum ADD VALUE 'Escalated'`)
			db.Pool.Exec(ctx, `UPDATE workflow_phases SET state = 'Escalated' WHERE phase_name = 'Planning'`)
		}, "labels", `hold "Escalated" in state`, preflight.Error, `add "Escalated" to legacy.states`},
		{"LabelOnlyTheEnumAllows", func(db *testenv.DB, cfg *config.Config) {
			db.Pool.Exec(ctx, `ALTER TYPE workflow_state_enum ADD VALUE 'Archived'`)
		}, "labels", `allows "Archived"`, preflight.Warning, `add "Archived"`},
		{"WrittenLabelNotInEnum", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Write.Labels.States = map[dtetype.State]string{dtetype.StateCompleted: "Done"}
			cfg.Legacy.States.Set("Done", dtetype.StateCompleted)
		}, "labels", `maps "Done", which the write-back writes`, preflight.Error, `correct "Done"`},
		{"MissingColumn", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Columns.PlannedEnd = "due_date"
		}, "columns", `legacy.columns.planned_end is "due_date"`, preflight.Error, "set legacy.columns.planned_end"},
		{"WrongType", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Columns.PlannedEnd = "notes"
		}, "columns", "needs a date or timestamp", preflight.Error, "point legacy.columns.planned_end"},
		{"NoRoleColumn", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Users.Role = "rolle"
		}, "users", `legacy.users.role is "rolle"`, preflight.Error, "set legacy.users.role"},
		{"NoUsersTable", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Users.Table = "public.staff"
		}, "users", "users table public.staff does not exist", preflight.Error, "set legacy.users.table"},
		{"NoAttributeColumn", func(db *testenv.DB, cfg *config.Config) {
			cfg.Legacy.Attributes = map[string]legacy.Attribute{"regulation": {Table: "public.reports", Key: "report_id", Column: "regime"}}
		}, "attributes", `legacy.attributes.regulation.column is "regime"`, preflight.Error, "set legacy.attributes.regulation.column"},
		{"TokenReadableByOthers", func(db *testenv.DB, cfg *config.Config) {
			path := filepath.Join(t.TempDir(), "token")
			os.WriteFile(path, []byte("secret-token-0123456789"), 0o644)
			cfg.HTTP.TokenFile = path
		}, "token", "readable by group or others", preflight.Error, "create the file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := seedDB(t)
			cfg := seedConfig(t)
			tc.prepare(db, cfg)
			r := run(t, cfg, db.Pool, preflight.Options{})
			got := find(r, tc.check, tc.message)
			if len(got) == 0 {
				t.Fatalf("no %s problem with %q: %+v", tc.check, tc.message, r.Problems)
			}
			if got[0].Severity != tc.severity || !strings.HasPrefix(got[0].Fix, tc.fixPrefix) {
				t.Errorf("problem %+v: want severity %s and a fix starting %q", got[0], tc.severity, tc.fixPrefix)
			}
			if tc.severity == preflight.Error && (r.OK() || r.Err() == nil) {
				t.Errorf("an error, yet the report is OK")
			}
		})
	}
}

// TestGrants: a role that may read but not update the legacy table gets a
// warning while no phase is on new, and an error once one is; one that may
// not create triggers cannot install; one that may not read the users'
// roles is told so.
func TestGrants(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := seedDB(t)
	role := db.Name + "_ro"
	for _, q := range []string{
		fmt.Sprintf(`CREATE ROLE %s LOGIN`, role),
		fmt.Sprintf(`GRANT SELECT ON workflow_phases, reports TO %s`, role),
		fmt.Sprintf(`GRANT SELECT (user_id) ON users TO %s`, role),
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		db.Pool.Exec(context.Background(), "DROP OWNED BY "+role+" CASCADE")
		db.Pool.Exec(context.Background(), "DROP ROLE "+role)
	})
	u, _ := url.Parse(db.URL)
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cfg := seedConfig(t)
	r := run(t, cfg, pool, preflight.Options{Installing: true})
	for _, want := range []struct{ check, msg, sev string }{
		{"grants", "may not create triggers on public.workflow_phases", preflight.Error},
		{"grants", "may not update public.workflow_phases", preflight.Warning},
		{"users", "may not read public.users.role", preflight.Error},
	} {
		if got := find(r, want.check, want.msg); len(got) != 1 || got[0].Severity != want.sev {
			t.Errorf("%q: %+v", want.msg, got)
		}
	}
	// A phase on new makes the missing UPDATE an error.
	if _, err := db.Pool.Exec(ctx, `CREATE SCHEMA dtebridge; CREATE TABLE dtebridge.changes (id int);
		CREATE TABLE dtebridge.cutover_modes (phase text, mode text); INSERT INTO dtebridge.cutover_modes VALUES ('planning', 'new');
		GRANT USAGE ON SCHEMA dtebridge TO `+role+`; GRANT SELECT ON ALL TABLES IN SCHEMA dtebridge TO `+role); err != nil {
		t.Fatal(err)
	}
	r = run(t, cfg, pool, preflight.Options{})
	if got := find(r, "grants", "a phase is on new"); len(got) != 1 || got[0].Severity != preflight.Error {
		t.Errorf("UPDATE missing with a phase on new: %+v", r.Problems)
	}
}

// TestTemporal: an unknown namespace is an error; search attributes not
// registered there, a warning.
func TestTemporal(t *testing.T) {
	t.Parallel()
	db := seedDB(t)
	tc := testenv.TemporalClient(t)
	r := run(t, seedConfig(t), db.Pool, preflight.Options{Temporal: tc, Namespace: "no-such-namespace"})
	if got := find(r, "temporal", `namespace "no-such-namespace"`); len(got) != 1 || got[0].Severity != preflight.Error {
		t.Errorf("unknown namespace: %+v", r.Problems)
	}
	r = run(t, seedConfig(t), db.Pool, preflight.Options{Temporal: tc, Namespace: testenv.Temporal(t).Namespace()})
	if len(find(r, "temporal", "")) > 0 && len(find(r, "temporal", "search attributes")) != len(find(r, "temporal", "")) {
		t.Errorf("the test's Temporal: %+v", r.Problems)
	}
}

// TestLogicalCapture: what log-based capture needs of the server is
// checked, and a slot left by a former log-based capture is warned about
// in trigger mode.
func TestLogicalCapture(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := seedDB(t)
	cfg := seedConfig(t)
	cfg.Capture.Mode = adapter.ModeLogical
	r := run(t, cfg, db.Pool, preflight.Options{})
	if got := find(r, "capture", "public.workflow_phases is not REPLICA IDENTITY FULL"); len(got) != 1 || got[0].Severity != preflight.Error {
		t.Errorf("replica identity: %+v", r.Problems)
	}
	// The shared cluster caps the WAL a slot may keep.
	if got := find(r, "capture", "max_slot_wal_keep_size"); len(got) != 0 {
		t.Errorf("max_slot_wal_keep_size is capped: %+v", got)
	}
	if len(find(r, "capture", "REPLICATION")) != 0 || len(find(r, "capture", "wal_level")) != 0 || len(find(r, "grants", "triggers")) != 0 {
		t.Errorf("a superuser on a wal_level=logical server, attaching no trigger, has more problems: %+v", r.Problems)
	}
	// install, run by the owner, sets the replica identity itself.
	if r := run(t, cfg, db.Pool, preflight.Options{Installing: true}); len(find(r, "capture", "REPLICA IDENTITY")) != 0 {
		t.Errorf("installing as the owner: %+v", r.Problems)
	}
	// A role without REPLICATION cannot read the slot.
	role := db.Name + "_norepl"
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT SELECT ON workflow_phases, reports, users TO %[1]s`, role)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Pool.Exec(context.Background(), "DROP OWNED BY "+role+" CASCADE")
		db.Pool.Exec(context.Background(), "DROP ROLE "+role)
	})
	u, _ := url.Parse(db.URL)
	u.User = url.User(role)
	pool, err := pgxpool.New(ctx, u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got := find(run(t, cfg, pool, preflight.Options{}), "capture", "lacks the REPLICATION attribute"); len(got) != 1 || got[0].Severity != preflight.Error {
		t.Errorf("a role without REPLICATION: %+v", got)
	}
	// Back in trigger mode, a slot left behind keeps WAL: a warning.
	slot := adapter.DefaultSlot(db.Name, cfg.Capture.Schema)
	if _, err := db.Pool.Exec(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot); err != nil {
		t.Fatal(err)
	}
	cfg.Capture.Mode = adapter.ModeTrigger
	if got := find(run(t, cfg, db.Pool, preflight.Options{}), "capture", "replication slot "+slot+" of a former log-based capture"); len(got) != 1 || got[0].Severity != preflight.Warning {
		t.Errorf("a slot left in trigger mode: %+v", got)
	}
}

// TestUnlimitedSlotWAL: a server that lets a slot keep WAL without limit
// is warned about (a cluster of its own, started with the setting
// PostgreSQL ships).
func TestUnlimitedSlotWAL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := localpg.Start(ctx, &localpg.Config{Settings: map[string]string{"max_slot_wal_keep_size": "-1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	dsn, err := c.CreateDatabase(ctx, "unlimited")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := legacysim.Init(ctx, pool, legacysim.Seed); err != nil {
		t.Fatal(err)
	}
	cfg := seedConfig(t)
	cfg.Capture.Mode = adapter.ModeLogical
	if got := find(run(t, cfg, pool, preflight.Options{}), "capture", "max_slot_wal_keep_size is unlimited"); len(got) != 1 || got[0].Severity != preflight.Warning {
		t.Errorf("unlimited slot WAL: %+v", got)
	}
}

// TestSearchAttributeOfAnotherType: a shadow search attribute registered
// with another type is an error that names it.
func TestSearchAttributeOfAnotherType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tc := testenv.TemporalClient(t)
	ns := "preflight_wrong_type"
	if _, err := tc.WorkflowService().RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{Namespace: ns,
		WorkflowExecutionRetentionPeriod: durationpb.New(24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns,
		SearchAttributes: map[string]enums.IndexedValueType{"DtebridgeReport": enums.INDEXED_VALUE_TYPE_BOOL}}); err != nil {
		t.Fatal(err)
	}
	r := run(t, seedConfig(t), seedDB(t).Pool, preflight.Options{Temporal: tc, Namespace: ns})
	if got := find(r, "temporal", "DtebridgeReport is Bool, the bridge needs Int"); len(got) != 1 || got[0].Severity != preflight.Error {
		t.Errorf("an attribute of another type: %+v", r.Problems)
	}
	if got := find(r, "temporal", "are not registered in "+ns); len(got) != 1 || !strings.Contains(got[0].Fix, "--name DtebridgeCycle --type Int") {
		t.Errorf("the missing ones, with the commands that register them: %+v", r.Problems)
	}
}
