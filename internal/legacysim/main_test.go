package legacysim

import (
	"context"
	"encoding/json"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

// clock is a settable application clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// fixture is a legacy database of one profile with one cycle.
type fixture struct {
	t       *testing.T
	pool    *pgxpool.Pool
	model   *Model
	clock   *clock
	profile *Profile
	cycle   int64
}

// The fixture's cycle starts on cycleStart, so Planning is due on Jan 8.
// Reports are created at created (all phases far from due), prepared at
// prepared and operated on at operated.
var (
	cycleStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	created    = time.Date(2025, 12, 1, 9, 0, 0, 0, time.UTC)
	prepared   = time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC)
	operated   = time.Date(2026, 1, 4, 12, 30, 0, 0, time.UTC)
)

func setup(t *testing.T, p *Profile) *fixture {
	t.Helper()
	db := testenv.NewDB(t)
	ctx := context.Background()
	if err := Init(ctx, db.Pool, p); err != nil {
		t.Fatal(err)
	}
	c := &clock{t: created}
	f := &fixture{t: t, pool: db.Pool, clock: c, profile: p, model: NewModel(db.Pool, p, &ModelConfig{Now: c.Now})}
	var err error
	if f.cycle, err = f.model.CreateCycle(ctx, "2026 Q1", cycleStart); err != nil {
		t.Fatal(err)
	}
	return f
}

// report creates a new report in the fixture's cycle, at time created.
func (f *fixture) report(opts AddOptions) dtetype.Key {
	f.t.Helper()
	ctx := context.Background()
	f.clock.Set(created)
	id, err := f.model.CreateReport(ctx, "FR Y-14Q", "FRB")
	if err != nil {
		f.t.Fatal(err)
	}
	key := dtetype.Key{CycleID: f.cycle, ReportID: id}
	if _, err := f.model.AddReport(ctx, key, opts); err != nil {
		f.t.Fatal(err)
	}
	return key
}

// rows returns every row of key as to_jsonb objects, by phase_id.
func (f *fixture) rows(key dtetype.Key) map[int64]map[string]any {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(),
		`SELECT phase_id, to_jsonb(w) FROM workflow_phases w WHERE cycle_id = $1 AND report_id = $2`, key.CycleID, key.ReportID)
	if err != nil {
		f.t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]map[string]any{}
	for rows.Next() {
		var id int64
		var raw []byte
		if err := rows.Scan(&id, &raw); err != nil {
			f.t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			f.t.Fatal(err)
		}
		out[id] = m
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// ts renders a time the way to_jsonb renders a timestamptz in a UTC session.
func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05+00:00") }
