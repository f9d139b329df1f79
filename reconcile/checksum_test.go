package reconcile_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/reconcile"
)

// shapeSchema is a legacy table of a shape neither shipped profile has:
// labels in text and varchar columns, a state override of an enum type
// over a text state, times as timestamp(0), date, timestamp(3) and
// timestamptz, one actor column an integer and the other text.
const shapeSchema = `
CREATE SCHEMA gx;
CREATE TYPE gx.forced AS ENUM ('todo', 'doing', 'done');
CREATE TABLE gx.steps (
    step_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    cycle         integer NOT NULL,
    report        bigint NOT NULL,
    step          varchar(40) NOT NULL,
    progress      text NOT NULL DEFAULT 'todo',
    rag           varchar(10) NOT NULL DEFAULT 'green',
    progress_set  gx.forced,
    rag_set       varchar(10),
    set_why       text,
    set_by        integer,
    set_at        timestamp,
    plan_from     timestamp(0) without time zone,
    plan_to       date,
    began         timestamp(3) without time zone,
    ended         timestamptz,
    began_by      integer,
    ended_by      text,
    touched       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON gx.steps (cycle, report);
`

const shapeConfig = `
legacy:
  table: gx.steps
  key: [step_id]
  columns:
    cycle: cycle
    report: report
    phase: step
    state: progress
    status: rag
    state_override: progress_set
    status_override: rag_set
    override_reason: set_why
    override_by: set_by
    override_at: set_at
    planned_start: plan_from
    planned_end: plan_to
    actual_start: began
    actual_end: ended
    started_by: began_by
    completed_by: ended_by
    updated_at: touched
  phases: {plan: planning, scope: scoping, sample: sample_selection, providers: data_provider_id,
    request: request_info, test: testing, observe: observations}
  states: {todo: not_started, doing: in_progress, done: completed}
  statuses: {green: on_schedule, amber: at_risk, red: behind_schedule}
capture: {schema: gxbridge}
shadow: {definition: standard_dt_testing}
`

// TestChecksumsAgreeOnAnyShape holds legacy's row hashes, computed by
// reconcile from whatever columns the configuration names, equal to the
// ones the projection stores (shadow_phases.row_hash): on a table of a
// shape of its own, every checksum agrees once the shadow has caught up,
// and only the reports changed behind the capture's back differ. A time
// within the date tolerance differs in its checksum but is no divergence;
// a time on one side only is one.
func TestChecksumsAgreeOnAnyShape(t *testing.T) {
	t.Parallel()
	b := shapeBridge(t)
	// Five reports, each with one row per phase, planned well ahead (on
	// schedule, as legacy's own rule says), then worked through in order
	// as the legacy application would: times with fractions of a second
	// where the type keeps them, actors of both types, overrides on
	// report 5.
	for r := int64(1); r <= 5; r++ {
		b.Exec(`INSERT INTO gx.steps (cycle, report, step, plan_from, plan_to)
			SELECT 7, $1, s, '2030-03-01 08:30:00'::timestamp + o * interval '7 days', '2030-03-08'::date + o::int * 7
			FROM unnest(ARRAY['plan', 'scope', 'sample', 'providers', 'request', 'test', 'observe']) WITH ORDINALITY AS p(s, o)`, r)
	}
	for o, step := range []string{"plan", "scope", "sample"} {
		b.Exec(`UPDATE gx.steps SET progress = 'doing', began = '2026-03-02 09:15:30.125'::timestamp + $2 * interval '7 days', began_by = 40 + $2
			WHERE cycle = 7 AND step = $1`, step, o)
		if o < 2 {
			b.Exec(`UPDATE gx.steps SET progress = 'done', ended = '2026-03-06 17:45:10.5+00'::timestamptz + $2 * interval '7 days', ended_by = 'u' || $2
				WHERE cycle = 7 AND step = $1`, step, o)
		}
	}
	b.Exec(`UPDATE gx.steps SET progress_set = 'done', rag_set = 'red', set_why = 'signed off', set_by = 9, set_at = now()
		WHERE report = 5 AND step = 'plan'`)
	b.Quiescent(60 * time.Second)
	r := run(t, b, nil)
	if r.Unexpected != 0 || r.Compared != 35 {
		for _, d := range r.Divergences {
			if !d.Expected {
				t.Logf("%s %s %s: %s", d.Key, d.Phase, d.Kind, d.Detail)
			}
		}
		t.Fatalf("clean: %d unexpected (%v), %d compared", r.Unexpected, kinds(r, false), r.Compared)
	}
	if r.ChecksumsDiffer != 0 {
		t.Fatalf("clean: %d reports' checksums differ: legacy's row hash is not the projection's", r.ChecksumsDiffer)
	}

	// Behind the capture's back: report 1 loses an actual start on legacy's
	// side only, report 2 changes state, report 3 moves a time by half a
	// second (within the tolerance of one).
	b.Bypass(`UPDATE gx.steps SET began = NULL WHERE report = 1 AND step = 'scope'`)
	b.Bypass(`UPDATE gx.steps SET progress = 'doing' WHERE report = 2 AND step = 'plan'`)
	b.Bypass(`UPDATE gx.steps SET began = began + interval '500 milliseconds' WHERE report = 3 AND step = 'plan'`)
	r = run(t, b, nil)
	if r.ChecksumsDiffer != 3 {
		t.Errorf("%d reports' checksums differ, want 3", r.ChecksumsDiffer)
	}
	got := map[dtetype.Key]string{}
	for d, err := range r.All() {
		if err != nil {
			t.Fatal(err)
		}
		if !d.Expected {
			got[d.Key] = d.Kind
		}
	}
	want := map[dtetype.Key]string{{CycleID: 7, ReportID: 1}: dtetype.KindDatesMismatch, {CycleID: 7, ReportID: 2}: dtetype.KindStateMismatch}
	if len(got) != len(want) || got[dtetype.Key{CycleID: 7, ReportID: 1}] != want[dtetype.Key{CycleID: 7, ReportID: 1}] ||
		got[dtetype.Key{CycleID: 7, ReportID: 2}] != want[dtetype.Key{CycleID: 7, ReportID: 2}] {
		t.Errorf("unexpected divergences %v, want %v", got, want)
	}
}

func shapeBridge(t *testing.T) *bridgetest.Bridge {
	t.Helper()
	cfg, err := config.Parse("shape.yaml", []byte(shapeConfig))
	if err != nil {
		t.Fatal(err)
	}
	return bridgetest.New(t, nil, &bridgetest.Options{Schema: shapeSchema, Config: cfg})
}

// TestChecksumsFailFast: when legacy's side of the checksums fails (here a
// time column that legacy turned to text holds one that is no time), the
// run stops with that error while the shadow's side is still starting,
// instead of waiting for it forever.
func TestChecksumsFailFast(t *testing.T) {
	t.Parallel()
	b := shapeBridge(t)
	b.Exec(`INSERT INTO gx.steps (cycle, report, step) VALUES (7, 1, 'plan')`)
	b.Quiescent(60 * time.Second)
	b.Bypass(`ALTER TABLE gx.steps ALTER COLUMN ended TYPE text`)
	b.Bypass(`UPDATE gx.steps SET ended = 'next week'`)
	for range 5 {
		done := make(chan error, 1)
		go func() {
			_, err := reconcile.Run(context.Background(), b.Cfg.ReconcileOptions(b.DB.Pool))
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "legacy") || !strings.Contains(err.Error(), "next week") {
				t.Fatalf("reconcile over a legacy time that is no time: %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Fatal("reconcile did not return after legacy's side failed")
		}
	}
	// A pool too small for the run's three connections is refused with
	// its fix, rather than waited on.
	small, err := pgxpool.New(context.Background(), b.DB.URL+"&pool_max_conns=2")
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	if _, err := reconcile.Run(context.Background(), b.Cfg.ReconcileOptions(small)); err == nil || !strings.Contains(err.Error(), "pool_max_conns") {
		t.Errorf("reconcile on a pool of 2: %v", err)
	}
}
