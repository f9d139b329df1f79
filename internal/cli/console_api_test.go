package cli

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
)

// TestConsoleAPIMatchesSchemas: the JSON twin of every console page matches
// its documented schema, with real data behind it.
func TestConsoleAPIMatchesSchemas(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, nil)
	b.Simulate(6, 120, 29)
	b.Quiescent(60 * time.Second)
	if r := runCLI(t, append(bridgeFlags(t, b), "reconcile")...); r.code != 0 {
		t.Fatal(r.stderr)
	}
	var k dtetype.Key
	b.DB.Pool.QueryRow(t.Context(), `SELECT cycle_id, report_id FROM workflow_phases ORDER BY phase_id LIMIT 1`).Scan(&k.CycleID, &k.ReportID)
	for name, path := range map[string]string{
		"api-overview": "/api/v1/overview", "api-divergences": "/api/v1/divergences?expected=yes",
		"api-report": fmt.Sprintf("/api/v1/reports/%d/%d", k.CycleID, k.ReportID), "api-cutover-board": "/api/v1/cutover/board",
		"api-quarantine": "/api/v1/quarantine", "findings": "/api/v1/findings",
	} {
		resp, err := http.Get("http://" + b.Srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
			continue
		}
		validateOutput(t, name, string(body))
	}
	// Bad filters are refused with a reason, not ignored.
	for _, path := range []string{"/api/v1/divergences?phase=planing", "/api/v1/divergences?expected=maybe", "/api/v1/reports/x/1"} {
		resp, err := http.Get("http://" + b.Srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", path, resp.StatusCode)
		}
	}
	if resp, err := http.Get("http://" + b.Srv.Addr() + "/api/v1/reports/99/99999"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET an unknown report: %v %v", err, resp.StatusCode)
	}
}
