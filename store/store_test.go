package store_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/store"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// TestEveryQueryPrepares prepares every named query against a bridge schema
// installed under a name of its own, so a typo, a missing column or a
// schema name left unrendered fails here rather than in production.
func TestEveryQueryPrepares(t *testing.T) {
	t.Parallel()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE workflow_phases (phase_id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Capture.Schema = "pont levis"
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cc := cfg.CaptureConfig()
	cc.Legacy = nil // the table is a stand-in holding the key only
	if _, err := adapter.Install(ctx, conn, cc, false); err != nil {
		t.Fatal(err)
	}
	st := store.New(db.Pool, cfg.Capture.Schema)
	if v, err := st.Version(ctx); err != nil || v == 0 {
		t.Fatalf("version %d: %v", v, err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	// RecordRun's queries read the temporary table it creates first.
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE found (cycle_id bigint, report_id bigint, phase text, kind text,
		legacy_value text, shadow_value text, detail text, rule text) ON COMMIT DROP`); err != nil {
		t.Fatal(err)
	}
	names := st.Names()
	if len(names) < 40 {
		t.Fatalf("only %d named queries", len(names))
	}
	for _, name := range names {
		if name == "CreateFound" {
			continue
		}
		if _, err := tx.Prepare(ctx, name, st.SQL(name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
