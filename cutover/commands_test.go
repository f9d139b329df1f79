package cutover_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

// TestCommandsRefusedAtTheEdge: malformed input (a NUL byte, bad UTF-8) is
// a 400 at once, a report without a shadow is a 404, a value legacy refuses
// for good (a constraint) fails at once instead of after ten retries, and
// every error body has one shape naming no Go type. Nothing is written, and
// the report takes its next command at once.
func TestCommandsRefusedAtTheEdge(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	k := e.coveredReport(100)
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	if err := e.Srv.Authority().Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	path := func(k dtetype.Key, action string) string {
		return fmt.Sprintf("/api/v1/cycles/%d/reports/%d/phases/planning/%s", k.CycleID, k.ReportID, action)
	}
	before := e.row(k, "Planning")
	for name, tc := range map[string]struct {
		path, body string
		status     int
		code, says string
	}{
		"NulByte":      {path(k, "start"), `{"actor": "12", "reason": "kick\u0000off"}`, 400, "bad_request", "NUL byte"},
		"NotUTF8":      {path(k, "start"), "{\"actor\": \"12\", \"reason\": \"\xff\xfe\"}", 400, "bad_request", ""},
		"WrongType":    {path(k, "start"), `{"actor": 12, "reason": "x"}`, 400, "bad_request", "actor must be a string"},
		"UnknownField": {path(k, "start"), `{"actor": "12", "reason": "x", "when": "now"}`, 400, "bad_request", `unknown field "when"`},
		"NoReport":     {path(dtetype.Key{CycleID: k.CycleID, ReportID: 987654}, "start"), `{"actor": "12", "reason": "x"}`, 404, "not_found", "no shadow workflow"},
		"ZeroReport":   {path(dtetype.Key{CycleID: k.CycleID, ReportID: 0}, "start"), `{"actor": "12", "reason": "x"}`, 404, "not_found", ""},
		"Negative":     {path(dtetype.Key{CycleID: -1, ReportID: -5}, "start"), `{"actor": "12", "reason": "x"}`, 404, "not_found", ""},
		"NoToken":      {path(k, "start"), `{"actor": "12", "reason": "x"}`, 401, "unauthorized", "bearer token"},
		"BadAction":    {path(k, "finish"), `{"actor": "12", "reason": "x"}`, 404, "not_found", "unknown action"},
	} {
		tok := token
		if name == "NoToken" {
			tok = ""
		}
		code, raw := e.post(tc.path, tok, tc.body)
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("%s: the body is not JSON: %s", name, raw)
			continue
		}
		if code != tc.status || body["code"] != tc.code || !strings.Contains(fmt.Sprint(body["message"]), tc.says) {
			t.Errorf("%s: %d %s; want %d %s saying %q", name, code, raw, tc.status, tc.code, tc.says)
		}
		if s := string(raw); strings.Contains(s, "Go ") || strings.Contains(s, "struct") || strings.Contains(s, "json:") {
			t.Errorf("%s: the body names Go's internals: %s", name, raw)
		}
	}
	if after := e.row(k, "Planning"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a refused command wrote %v", after)
	}

	// A value legacy refuses for good fails at once, with the reason.
	e.Exec(`ALTER TABLE workflow_phases ADD CONSTRAINT no_boom CHECK (override_reason IS DISTINCT FROM 'boom')`)
	_, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionOverride, Phase: "planning", Actor: "12", Reason: "boom", Status: dtetype.StatusAtRisk})
	var rej *cutover.RejectedError
	if !errors.As(err, &rej) || rej.Rule != "legacy_refused" || !strings.Contains(rej.Message, "23514") {
		t.Fatalf("a check violation: %v", err)
	}
	// The report takes its next command at once.
	if _, err := e.x.Execute(ctx, k, shadow.Command{Action: dtetype.ActionStart, Phase: "planning", Actor: "12", Reason: "go"}); err != nil {
		t.Fatalf("the next command: %v", err)
	}
	refusals, err := e.Store().Refusals(ctx, &k, 10)
	if err != nil || len(refusals) != 1 || refusals[0].Rule != "legacy_refused" {
		t.Errorf("refusals recorded: %v %+v", err, refusals)
	}
}

// TestCommandDeadline: a command whose write-back cannot finish before its
// deadline (its legacy row is locked) is refused, recorded, and never
// written, even once the lock is gone.
func TestCommandDeadline(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := context.Background()
	k := e.coveredReport(100)
	if _, err := e.store.Set(ctx, cutover.Change{Phase: "planning", Mode: dtetype.ModeNew, Percent: 100, Actor: "alice", Reason: "test", Force: true}, e.Cfg.GateConfig()); err != nil {
		t.Fatal(err)
	}
	if err := e.Srv.Authority().Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.row(k, "Planning")
	// Another session holds the row.
	tx, err := e.DB.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM workflow_phases WHERE cycle_id = $1 AND report_id = $2 FOR UPDATE`, k.CycleID, k.ReportID); err != nil {
		t.Fatal(err)
	}
	x := *e.x
	x.Timeout = 2 * time.Second
	_, err = x.Execute(ctx, k, shadow.Command{ID: "cmd-late", Action: dtetype.ActionStart, Phase: "planning", Actor: "12", Reason: "in a hurry"})
	var rej *cutover.RejectedError
	if !errors.As(err, &rej) || rej.Rule != shadow.RuleDeadlineExceeded {
		t.Fatalf("a command past its deadline: %v", err)
	}
	time.Sleep(2 * time.Second)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// Whatever retries were pending have had their chance.
	time.Sleep(3 * time.Second)
	if after := e.row(k, "Planning"); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a command past its deadline was written: %v", after)
	}
	if cmds, _ := e.Store().Commands(ctx, &k, 10); len(cmds) != 0 {
		t.Errorf("applied: %+v", cmds)
	}
	refusals, err := e.Store().Refusals(ctx, &k, 10)
	if err != nil || len(refusals) == 0 || refusals[0].ID != "cmd-late" || refusals[0].Rule != shadow.RuleDeadlineExceeded {
		t.Errorf("the refusal is not recorded: %v %+v", err, refusals)
	}
}
