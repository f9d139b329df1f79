package shadow_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestProjectIsIdempotentByVersion writes projections out of order and
// twice: the newest version wins, and phases a newer projection no longer
// has are removed.
func TestProjectIsIdempotentByVersion(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testenv.NewDB(t)
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE workflow_phases (phase_id int PRIMARY KEY)`); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cfg, err := config.Example("seed")
	if err != nil {
		t.Fatal(err)
	}
	cc := cfg.CaptureConfig()
	cc.Legacy = nil // the table is a stand-in holding the key only
	if _, err := adapter.Install(ctx, conn, cc, false); err != nil {
		t.Fatal(err)
	}
	a := &shadow.Activities{Store: cfg.Store(db.Pool)}
	key := dtetype.Key{CycleID: 4, ReportID: 9}
	proj := func(version int64, phases ...shadow.PhaseState) shadow.Projection {
		return shadow.Projection{Key: key, DefinitionID: "w", DefinitionVersion: "1", Version: version, AppliedSeq: version * 10,
			Applied: version, ViolationCounts: map[string]int{"skipped_phase": int(version)}, Phases: phases}
	}
	ph := func(p dtetype.Phase, s dtetype.State) shadow.PhaseState {
		return shadow.PhaseState{Phase: p, RowID: "1", Rows: 1, State: s, BaseState: s, LegacyStatus: dtetype.StatusOnSchedule,
			Status: dtetype.StatusOnSchedule, LastEventID: "c1", UpdatedAt: time.Now()}
	}
	for _, p := range []shadow.Projection{
		proj(1, ph("planning", dtetype.StateInProgress), ph("scoping", dtetype.StateNotStarted)),
		proj(3, ph("planning", dtetype.StateCompleted)),
		proj(2, ph("planning", dtetype.StateNotStarted), ph("scoping", dtetype.StateInProgress)),
		proj(3, ph("planning", dtetype.StateCompleted)),
	} {
		if err := a.Project(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	var version, seq int64
	var violations int
	if err := db.Pool.QueryRow(ctx, `SELECT version, applied_seq, violations FROM dtebridge.shadow_keys WHERE cycle_id = 4 AND report_id = 9`).Scan(&version, &seq, &violations); err != nil {
		t.Fatal(err)
	}
	if version != 3 || seq != 30 || violations != 3 {
		t.Errorf("shadow_keys at version %d, seq %d, violations %d; want 3, 30, 3", version, seq, violations)
	}
	rows, err := db.Pool.Query(ctx, `SELECT phase, state FROM dtebridge.shadow_phases WHERE cycle_id = 4 AND report_id = 9`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var p, s string
		rows.Scan(&p, &s)
		got[p] = s
	}
	if len(got) != 1 || got["planning"] != "completed" {
		t.Errorf("shadow_phases = %v, want only planning completed", got)
	}
}
