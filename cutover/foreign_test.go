package cutover_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/reconcile"
)

// foreignSchema is a legacy database in neither shipped profile: its own
// schema, table, key, column names, enum types and labels (two state labels
// for completed), a legacy status column, and a users table keyed by text.
const foreignSchema = `
CREATE SCHEMA wf;
CREATE TYPE wf.etape AS ENUM ('Cadrage', 'Perimetre', 'Echantillon', 'Fournisseurs', 'Collecte', 'Essais', 'Constats');
CREATE TYPE wf.etat AS ENUM ('A faire', 'En cours', 'Fini', 'Clos');
CREATE TYPE wf.meteo AS ENUM ('Vert', 'Orange', 'Rouge');
CREATE TYPE wf.statut AS ENUM ('Ouvert', 'Actif', 'A valider', 'Valide');
CREATE TABLE wf.utilisateurs (login text PRIMARY KEY, fonction text NOT NULL);
CREATE TABLE wf.etapes (
    etape_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campagne     bigint NOT NULL,
    rapport      bigint NOT NULL,
    etape        wf.etape NOT NULL,
    etat         wf.etat NOT NULL DEFAULT 'A faire',
    meteo        wf.meteo NOT NULL DEFAULT 'Vert',
    statut       wf.statut NOT NULL DEFAULT 'Ouvert',
    etat_force   wf.etat,
    meteo_forcee wf.meteo,
    motif        text,
    force_par    text,
    force_le     timestamptz,
    debut_prevu  date,
    fin_prevue   date,
    debut        timestamptz,
    fin          timestamptz,
    lance_par    text,
    clos_par     text,
    note         text,
    maj          timestamptz NOT NULL DEFAULT now()
);
INSERT INTO wf.utilisateurs VALUES ('ana', 'Tester'), ('bea', 'Test Manager'), ('cyr', 'Report Owner');
`

const foreignConfig = `
legacy:
  table: wf.etapes
  key: [etape_id]
  users: {table: wf.utilisateurs, id: login, role: fonction}
  columns:
    cycle: campagne
    report: rapport
    phase: etape
    state: etat
    status: meteo
    legacy_status: statut
    state_override: etat_force
    status_override: meteo_forcee
    override_reason: motif
    override_by: force_par
    override_at: force_le
    planned_start: debut_prevu
    planned_end: fin_prevue
    actual_start: debut
    actual_end: fin
    started_by: lance_par
    completed_by: clos_par
    updated_at: maj
  phases: {Cadrage: planning, Perimetre: scoping, Echantillon: sample_selection, Fournisseurs: data_provider_id,
    Collecte: request_info, Essais: testing, Constats: observations}
  states: {"A faire": not_started, "En cours": in_progress, "Fini": completed, "Clos": completed}
  statuses: {Vert: on_schedule, Orange: at_risk, Rouge: behind_schedule}
  legacy_statuses: {Ouvert: not_started, Actif: in_progress, "A valider": in_progress, Valide: completed}
  write:
    gates: {scoping: [planning]}
    start_on_complete: {planning: scoping}
    labels: {states: {completed: Clos}}
capture: {schema: pont}
shadow: {definition: standard_dt_testing}
`

// TestForeignSchemaWriteBack drives a legacy database the shipped profiles
// know nothing of through the gate, engine commands over HTTP written back
// with exactly the configured labels and columns, refusals of unknown and
// mismatched actors, an authority conflict naming its actors, and rollback.
func TestForeignSchemaWriteBack(t *testing.T) {
	t.Parallel()
	cfg, err := config.Parse("foreign.yaml", []byte(foreignConfig))
	if err != nil {
		t.Fatal(err)
	}
	b := bridgetest.New(t, nil, &bridgetest.Options{Schema: foreignSchema, Config: cfg, Token: token})
	ctx := context.Background()
	// The legacy application creates three reports, one row per phase.
	end := time.Now().UTC().AddDate(0, 0, 3) // three days left: at risk
	for r := int64(1); r <= 3; r++ {
		b.Exec(`INSERT INTO wf.etapes (campagne, rapport, etape, meteo, debut_prevu, fin_prevue)
			SELECT 1, $1, e, 'Orange', current_date, $2::date FROM unnest(enum_range(NULL::wf.etape)) e`, r, end)
	}
	b.Quiescent(60 * time.Second)
	store := cutover.NewStore(b.Store())
	for range 3 {
		o := b.Cfg.ReconcileOptions(b.DB.Pool)
		o.Persist = true
		r, err := reconcile.Run(ctx, o)
		if err != nil || r.Unexpected != 0 || r.Compared != 21 {
			t.Fatalf("reconcile: %v, %d compared, %v", err, r.Compared, r.Counts)
		}
	}
	if _, err := store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "foreign"},
		b.Cfg.GateConfig()); err != nil {
		t.Fatalf("the gate refused a clean phase: %v", err)
	}
	bridgetest.WaitFor(t, 5*time.Second, "serve to see the mode", func() bool {
		return b.Srv.Authority().OnNew(dtetype.Key{CycleID: 1, ReportID: 1}, "planning")
	})
	k := dtetype.Key{CycleID: 1, ReportID: 1}
	row := func(etape string) map[string]any {
		t.Helper()
		var raw []byte
		if err := b.DB.Pool.QueryRow(ctx, `SELECT to_jsonb(e) FROM wf.etapes e WHERE campagne = 1 AND rapport = 1 AND etape = $1`, etape).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(raw, &m)
		return m
	}
	post := func(action, body string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("POST", fmt.Sprintf("http://%s/api/v1/cycles/1/reports/1/phases/planning/%s", b.Srv.Addr(), action), bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	// changed returns the columns that differ between two images of a row.
	changed := func(before, after map[string]any) map[string]any {
		out := map[string]any{}
		for c, v := range after {
			if fmt.Sprint(before[c]) != fmt.Sprint(v) {
				out[c] = v
			}
		}
		return out
	}

	// Refusals write nothing: an unknown actor, and a stated role the users
	// table contradicts.
	before := row("Cadrage")
	if code, out := post("start", `{"actor": "zoe", "reason": "kick-off"}`); code != 409 || out["rule"] != "unknown_actor" {
		t.Errorf("unknown actor: %d %v", code, out)
	}
	if code, out := post("start", `{"actor": "cyr", "role": "Tester", "reason": "kick-off"}`); code != 409 || out["rule"] != "role_mismatch" {
		t.Errorf("role mismatch: %d %v", code, out)
	}
	if after := row("Cadrage"); len(changed(before, after)) != 0 {
		t.Fatalf("a refused command wrote %v", changed(before, after))
	}

	// Start: the role comes from the users table.
	if code, out := post("start", `{"actor": "ana", "reason": "kick-off"}`); code != 200 || out["state"] != "in_progress" {
		t.Fatalf("start: %d %v", code, out)
	}
	after := row("Cadrage")
	got := changed(before, after)
	for _, c := range []string{"debut", "maj"} {
		if got[c] == nil {
			t.Errorf("start did not set %s", c)
		}
		delete(got, c)
	}
	// meteo is written too, but legacy's rule gives the value it had.
	if want := map[string]any{"etat": "En cours", "statut": "Actif", "lance_par": "ana"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("start wrote %v, want exactly %v (and debut, maj)", got, want)
	}

	// Complete: the preferred label for completed (Clos, not Fini), and
	// legacy's own start of the next phase.
	before, scoping := after, row("Perimetre")
	if code, out := post("complete", `{"actor": "bea", "role": "Test Executive", "reason": "plan approved"}`); code != 200 || out["state"] != "completed" {
		t.Fatalf("complete (Test Executive is Test Manager's alias): %d %v", code, out)
	}
	got = changed(before, row("Cadrage"))
	for _, c := range []string{"fin", "maj"} {
		if got[c] == nil {
			t.Errorf("complete did not set %s", c)
		}
		delete(got, c)
	}
	if want := map[string]any{"etat": "Clos", "statut": "Valide", "meteo": "Vert", "clos_par": "bea"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("complete wrote %v, want exactly %v (and fin, maj)", got, want)
	}
	got = changed(scoping, row("Perimetre"))
	delete(got, "debut")
	delete(got, "maj")
	if want := map[string]any{"etat": "En cours", "statut": "Actif", "lance_par": "bea"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("completing planning started scoping with %v, want %v", got, want)
	}

	// The audit holds the resolved role and the reason.
	cmds, err := b.Store().Commands(ctx, &k, 10)
	if err != nil || len(cmds) != 2 {
		t.Fatalf("commands: %v %+v", err, cmds)
	}
	if c := cmds[0]; c.Action != "complete" || c.Actor != "bea" || c.Role != "Test Manager" || c.Reason != "plan approved" || len(c.Rows) != 2 {
		t.Errorf("audit of complete: %+v", c)
	}
	if c := cmds[1]; c.Action != "start" || c.Role != "Tester" || c.Reason != "kick-off" {
		t.Errorf("audit of start: %+v", c)
	}

	// A legacy write to the phase the engine owns is a conflict that names
	// each actor the row records.
	b.Exec(`UPDATE wf.etapes SET etat = 'En cours', meteo = 'Orange', lance_par = 'cyr', clos_par = 'ana', maj = now() WHERE campagne = 1 AND rapport = 1 AND etape = 'Cadrage'`)
	var detail string
	bridgetest.WaitFor(t, 20*time.Second, "the authority conflict", func() bool {
		return b.DB.Pool.QueryRow(ctx, `SELECT detail FROM pont.divergences WHERE kind = 'authority_conflict' AND resolved_at IS NULL`).Scan(&detail) == nil
	})
	if !strings.Contains(detail, "started_by cyr, completed_by ana") {
		t.Errorf("conflict detail %q does not name both actors", detail)
	}

	// Rollback: the released reports are re-driven from legacy, and the
	// next reconcile is clean.
	res, err := store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeShadow, Actor: "alice", Reason: "roll back"}, b.Cfg.GateConfig())
	if err != nil || len(res.Released) != 3 || len(res.Redrives) != 3 {
		t.Fatalf("rollback: %v %+v", err, res)
	}
	rr, err := adapter.AwaitRedrives(ctx, b.Store(), res.Redrives, 30*time.Second)
	if err != nil || len(rr.Applied) != 3 {
		t.Fatalf("rollback re-drives: %v %+v", err, rr)
	}
	b.Quiescent(30 * time.Second)
	r, err := reconcile.Run(ctx, b.Cfg.ReconcileOptions(b.DB.Pool))
	if err != nil || r.Unexpected != 0 {
		t.Fatalf("after rollback: %v %v %+v", err, r.Counts, r.Divergences)
	}
}
