package serve_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
)

// TestReloadUnderTraffic: legacy grows a state label the mapping lacks, so
// its changes go to quarantine; the mapping is extended in the file and
// reloaded over the API while traffic runs. From then on the new label
// translates, the quarantined changes are released, and legacy and the
// shadow agree with nothing lost. A reload that changes what needs a
// restart, or an invalid file, is refused and the running configuration
// stays.
func TestReloadUnderTraffic(t *testing.T) {
	t.Parallel()
	const tok = "reload-token-0123456789abcdef"
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true, Token: tok})
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "dtebridge.yaml")
	write := func(c *config.Config) {
		t.Helper()
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(b.Cfg)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	b.Cfg = cfg
	b.Start()
	reload := func() (int, string) {
		req, _ := http.NewRequest("POST", "http://"+b.Srv.Addr()+"/api/v1/reload", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		return resp.StatusCode, body.String()
	}

	simDone := make(chan error, 1)
	go func() {
		_, err := legacysim.Simulate(ctx, b.DB.Pool, &legacysim.SimConfig{Profile: legacysim.Seed, Reports: 10, Ops: 400, Rate: 100, Concurrency: 2, Seed: 77})
		simDone <- err
	}()
	b.Exec(`ALTER TYPE workflow_state_enum ADD VALUE 'Escalated'`)
	var phaseID int64
	bridgetest.WaitFor(t, 20*time.Second, "the simulator's first rows", func() bool {
		b.DB.Pool.QueryRow(ctx, `SELECT coalesce(min(phase_id), 0) FROM workflow_phases WHERE phase_name = 'Planning'`).Scan(&phaseID)
		return phaseID > 0
	})
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated', state_override = NULL, updated_at = now() WHERE phase_id = $1`, phaseID)
	pending := func() int {
		var n int
		b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.quarantine WHERE delivered_at IS NULL`).Scan(&n)
		return n
	}
	bridgetest.WaitFor(t, 20*time.Second, "the unknown label in quarantine", func() bool { return pending() > 0 })

	// Refused: a setting that needs a restart; a file that does not validate.
	next := *b.Cfg
	next.Capture.Schema = "elsewhere"
	write(&next)
	if code, body := reload(); code != http.StatusUnprocessableEntity || !strings.Contains(body, "capture changed") || !strings.Contains(body, "restart serve") {
		t.Errorf("reload changing capture.schema: %d %s", code, body)
	}
	next = *b.Cfg
	next.Cutover.Gate.MinConsistency = 7
	write(&next)
	if code, body := reload(); code != http.StatusUnprocessableEntity || !strings.Contains(body, "min_consistency") {
		t.Errorf("reload of an invalid file: %d %s", code, body)
	}

	// Applied: the mapping learns the label, under traffic.
	next = *b.Cfg
	next.Legacy = *b.Cfg.Legacy.Clone()
	next.Legacy.States.Set("Escalated", "in_progress")
	write(&next)
	if code, body := reload(); code != http.StatusOK {
		t.Fatalf("reload: %d %s", code, body)
	}
	reloadedAt := time.Now()
	tr, err := next.Translator(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adapter.RetryQuarantine(ctx, b.Store(), tr); err != nil {
		t.Fatal(err)
	}
	// A change carrying the label after the reload is not quarantined.
	b.Exec(`UPDATE workflow_phases SET state = 'Escalated', state_override = NULL, updated_at = now()
		WHERE phase_id = (SELECT min(phase_id) FROM workflow_phases WHERE phase_name = 'Scoping')`)
	if err := <-simDone; err != nil {
		t.Fatal(err)
	}
	b.Quiescent(60 * time.Second)
	if n := pending(); n != 0 {
		t.Errorf("%d changes still in quarantine", n)
	}
	bridgetest.CompareViews(t, b.LegacyView(), b.ShadowView())
	metrics := scrape(t, b)
	if !strings.Contains(metrics, `dtebridge_config_reloads_total{outcome="applied"} 1`) || !strings.Contains(metrics, `dtebridge_config_reloads_total{outcome="refused"} 2`) {
		t.Errorf("reload metrics missing")
	}
	var unknownAfter int
	b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.quarantine WHERE reason = 'unknown_label' AND quarantined_at > $1`, reloadedAt).Scan(&unknownAfter)
	if unknownAfter != 0 {
		t.Errorf("%d changes quarantined for an unknown label after the reload", unknownAfter)
	}
}

func scrape(t *testing.T, b *bridgetest.Bridge) string {
	t.Helper()
	resp, err := http.Get("http://" + b.Srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	return body.String()
}
