package adapter_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/legacy"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(testenv.Main(m))
}

// fixture is a legacy database with the bridge installed.
type fixture struct {
	t       *testing.T
	db      *testenv.DB
	pool    *pgxpool.Pool
	cfg     *config.Config
	profile *legacysim.Profile
	model   *legacysim.Model
	stops   []func()
}

// captures are the capture variants every capture guarantee is tested
// in: both trigger modes and log-based capture.
var captures = []string{adapter.TriggerRow, adapter.TriggerStatement, adapter.ModeLogical}

type setupOptions struct {
	profile *legacysim.Profile
	// trigger is a capture variant: row, statement (trigger mode) or
	// logical.
	trigger string
	reports int
	// counters sets completed_by = 0 on every row before install; see
	// counterSetup.
	counters bool
}

func setup(t *testing.T, o setupOptions) *fixture {
	t.Helper()
	if o.profile == nil {
		o.profile = legacysim.Seed
	}
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := legacysim.Init(ctx, db.Pool, o.profile); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Example(o.profile.Name)
	if err != nil {
		t.Fatal(err)
	}
	switch o.trigger {
	case "":
	case adapter.ModeLogical:
		cfg.Capture.Mode = adapter.ModeLogical
	default:
		cfg.Capture.Trigger = o.trigger
	}
	f := &fixture{t: t, db: db, pool: db.Pool, cfg: cfg, profile: o.profile,
		model: legacysim.NewModel(db.Pool, o.profile, nil)}
	if o.reports > 0 {
		if _, err := legacysim.Simulate(ctx, db.Pool, &legacysim.SimConfig{Profile: o.profile, Reports: o.reports, Ops: 1, Concurrency: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if o.counters {
		if _, err := db.Pool.Exec(ctx, `UPDATE workflow_phases SET completed_by = 0`); err != nil {
			t.Fatal(err)
		}
	}
	f.install()
	if o.trigger == adapter.ModeLogical {
		// Log-based capture leaves the legacy table without a trigger.
		if n := f.count(`SELECT count(*) FROM pg_trigger WHERE tgname::text LIKE 'dtebridge%' AND NOT tgisinternal`); n != 0 {
			t.Fatalf("logical mode installed %d capture triggers", n)
		}
		t.Cleanup(func() {
			if t.Failed() {
				return
			}
			// Every change came through the slot.
			if n := f.count(`SELECT count(*) FROM dtebridge.changes WHERE source_xid IS NULL`); n != 0 {
				t.Errorf("%d changes in logical mode were not decoded from the slot", n)
			}
		})
	}
	return f
}

func (f *fixture) install() {
	f.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.db.URL)
	if err != nil {
		f.t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := adapter.Install(ctx, conn, f.cfg.CaptureConfig(), false); err != nil {
		f.t.Fatal(err)
	}
}

// waitLogged waits, in logical mode, until the slot has passed every
// transaction committed so far: the change log holds them all.
func (f *fixture) waitLogged() {
	f.t.Helper()
	if f.cfg.Capture.Mode != adapter.ModeLogical {
		return
	}
	var target string
	if err := f.pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&target); err != nil {
		f.t.Fatal(err)
	}
	bridgetest.WaitFor(f.t, 60*time.Second, "the slot to pass "+target, func() bool {
		return f.count(`SELECT count(*) FROM pg_replication_slots WHERE database = current_database() AND confirmed_flush_lsn >= $1::pg_lsn`, target) == 1
	})
}

func (f *fixture) translator() *legacy.Translator {
	f.t.Helper()
	tr, err := f.cfg.Translator(nil)
	if err != nil {
		f.t.Fatal(err)
	}
	return tr
}

// reader starts a reader for consumer c; it stops at test cleanup.
func (f *fixture) reader(c adapter.Consumer, mod func(*adapter.ReaderConfig)) *adapter.Metrics {
	f.t.Helper()
	rc := f.cfg.ReaderConfig()
	rc.PollInterval = 200 * time.Millisecond
	rc.StandbyInterval = 200 * time.Millisecond
	rc.MaintenanceInterval = 200 * time.Millisecond
	rc.Metrics = adapter.NewMetrics(nil)
	if mod != nil {
		mod(rc)
	}
	r := adapter.NewReader(f.cfg.Store(f.pool), f.translator(), rc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, c) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			f.t.Errorf("reader: %v", err)
		}
	})
	f.stops = append(f.stops, stop)
	f.t.Cleanup(stop)
	return rc.Metrics
}

// stopReaders stops every reader started so far.
func (f *fixture) stopReaders() {
	for _, stop := range f.stops {
		stop()
	}
}

// collector is a consumer that records what it is given.
type collector struct {
	mu        sync.Mutex
	changes   []dtetype.PhaseChange
	seen      map[string]int // event id -> deliveries
	backfills int
	fail      func(b adapter.Batch) error
}

func newCollector() *collector { return &collector{seen: map[string]int{}} }

func (c *collector) Deliver(_ context.Context, b adapter.Batch) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		if err := c.fail(b); err != nil {
			return err
		}
	}
	for _, ch := range b.Changes {
		c.seen[ch.EventID]++
		if c.seen[ch.EventID] == 1 {
			c.changes = append(c.changes, ch)
		}
	}
	if b.Last {
		c.backfills++
	}
	return nil
}

// snapshot returns the unique changes delivered so far, in delivery order.
func (c *collector) snapshot() []dtetype.PhaseChange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]dtetype.PhaseChange(nil), c.changes...)
}

func (f *fixture) count(q string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.pool.QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", q, err)
	}
	return n
}

// rowState is a legacy row's effective values as the bridge should see them.
type rowState struct {
	phase       dtetype.Phase
	state       dtetype.State
	status      dtetype.Status
	completedBy string
}

// legacyRows reads every legacy row's effective state through the mapping.
func (f *fixture) legacyRows() map[string]rowState {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT phase_id::text, phase_name::text,
		coalesce(state_override, state)::text, coalesce(status_override, schedule_status)::text, coalesce(completed_by::text, '')
		FROM workflow_phases`)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]rowState{}
	for rows.Next() {
		var id, phase, state, status, by string
		if err := rows.Scan(&id, &phase, &state, &status, &by); err != nil {
			f.t.Fatal(err)
		}
		out[id] = rowState{f.cfg.Legacy.Phases.Value(phase), f.cfg.Legacy.States.Value(state), f.cfg.Legacy.Statuses.Value(status), by}
	}
	return out
}

// applied folds delivered changes into the state each row ends in.
func applied(changes []dtetype.PhaseChange) map[string]rowState {
	out := map[string]rowState{}
	for _, c := range changes {
		if c.Op == dtetype.OpDelete {
			delete(out, c.RowID)
			continue
		}
		out[c.RowID] = rowState{c.Phase, c.State, c.Status, c.CompletedBy}
	}
	return out
}

func diffStates(want, got map[string]rowState) string {
	var d string
	n := 0
	for id, w := range want {
		if g, ok := got[id]; !ok || g != w {
			if n < 5 {
				d += fmt.Sprintf("row %s: legacy %+v, delivered %+v\n", id, w, g)
			}
			n++
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			if n < 5 {
				d += fmt.Sprintf("row %s delivered but not in legacy\n", id)
			}
			n++
		}
	}
	if n > 0 {
		d += fmt.Sprintf("%d rows differ", n)
	}
	return d
}
