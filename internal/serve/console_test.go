package serve_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/reconcile"
)

// browser starts headless Chromium (make installs Debian's chromium; set
// CHROMIUM_BIN to use another) and returns a chromedp context.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := os.Getenv("CHROMIUM_BIN")
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("chromium"); err != nil {
			t.Fatal("chromium not found: make installs Debian's chromium package (make tools), or set CHROMIUM_BIN")
		}
	}
	opts := []chromedp.ExecAllocatorOption{chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.WindowSize(1400, 1100),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("user-data-dir", t.TempDir())}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if _, err := chromedp.Run(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// artefacts is where browser tests keep their screenshots.
func artefacts(t *testing.T) string {
	dir := os.Getenv("DTEBRIDGE_ARTEFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "dtebridge-console-screenshots")
	}
	os.MkdirAll(dir, 0o755)
	return dir
}

// TestConsoleInABrowser drives the console in Chromium through a scripted
// scenario: a legacy write behind capture's back turns a phase below the
// gate on the overview, the divergences page lists it, the report page
// shows the differing field with both values, a mutation without a session
// is refused, the cutover form refuses a promotion the gate refuses, and
// once logged in the repair button fixes it and the pages show it resolved.
// Every assertion is checked against the database.
func TestConsoleInABrowser(t *testing.T) {
	t.Parallel()
	const tok = "console-token-0123456789abcdef"
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Token: tok})
	b.Simulate(12, 200, 19)
	b.Quiescent(60 * time.Second)
	ctx := context.Background()
	recordRun := func() {
		t.Helper()
		o := b.Cfg.ReconcileOptions(b.DB.Pool)
		o.Persist = true
		if _, err := reconcile.Run(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		recordRun()
	}
	base := "http://" + b.Srv.Addr()
	bc := browser(t)
	shots := artefacts(t)
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		for _, a := range actions {
			if _, err := chromedp.Run(bc, a); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	text := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(bc, chromedp.Text(sel))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(v)
	}
	shot := func(name string) {
		b, err := chromedp.Run(bc, chromedp.FullScreenshot(100))
		if err == nil {
			err = os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644)
		}
		if err != nil {
			t.Logf("screenshot %s: %v", name, err)
		}
	}
	run("overview", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#phases"))
	if g := text(`tr[data-phase="testing"] td.gate`); !strings.Contains(g, "passes") {
		t.Fatalf("testing's gate before the fault: %q", g)
	}

	// A legacy write behind capture's back.
	var k dtetype.Key
	var was string
	if err := b.DB.Pool.QueryRow(ctx, `SELECT cycle_id, report_id, coalesce(started_by::text, '') FROM workflow_phases
		WHERE phase_name = 'Testing' AND started_by IS NOT NULL ORDER BY phase_id LIMIT 1`).Scan(&k.CycleID, &k.ReportID, &was); err != nil {
		t.Fatal(err)
	}
	b.Bypass(`UPDATE workflow_phases SET started_by = 4242 WHERE cycle_id = $1 AND report_id = $2 AND phase_name = 'Testing'`, k.CycleID, k.ReportID)
	recordRun()
	var open int
	b.DB.Pool.QueryRow(ctx, `SELECT count(*) FROM dtebridge.divergences WHERE resolved_at IS NULL AND rule IS NULL AND phase = 'testing'`).Scan(&open)
	if open != 1 {
		t.Fatalf("%d open unexpected divergences in testing, want 1", open)
	}

	// 1. The overview: the phase below the gate, its open count as the database has it.
	run("overview after the fault", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#phases"))
	shot("1-overview")
	if g := text(`tr[data-phase="testing"] td.gate`); !strings.Contains(g, "below the gate") {
		t.Errorf("testing's gate after the fault: %q", g)
	}
	if n := text(`tr[data-phase="testing"] td.unexpected`); n != fmt.Sprint(open) {
		t.Errorf("overview shows %s unexpected in testing, the database %d", n, open)
	}
	// 2. The divergences page lists it, and leads to the report.
	row := fmt.Sprintf(`#divergences tr[data-key="%d/%d"][data-phase="testing"]`, k.CycleID, k.ReportID)
	run("divergences", chromedp.Navigate(base+"/divergences?phase=testing&expected=no"), chromedp.WaitVisible(row))
	shot("2-divergences")
	if kind := text(row + ` td:nth-child(3)`); kind != dtetype.KindActorMismatch {
		t.Errorf("listed kind %q", kind)
	}
	run("to the report", chromedp.Click(row+" a"), chromedp.WaitVisible(`table[data-phase="testing"]`))
	shot("3-report")
	// 3. The report: the differing field, both values.
	legacyCell := `table[data-phase="testing"] td.legacy[data-field="StartedBy"]`
	if v := text(legacyCell); v != "4242" {
		t.Errorf("legacy StartedBy shown %q", v)
	}
	if v := text(`table[data-phase="testing"] td.shadow[data-field="StartedBy"]`); v != was {
		t.Errorf("shadow StartedBy shown %q, want %q", v, was)
	}
	cls, err := chromedp.Run(bc, chromedp.AttributeValue(legacyCell, "class"))
	if err != nil || !strings.Contains(cls.Value, "differ") {
		t.Errorf("the differing field is not marked: %v %+v", err, cls)
	}
	// 4. A mutation without a session is refused.
	resp, err := http.PostForm(base+fmt.Sprintf("/reports/%d/%d/repair", k.CycleID, k.ReportID), url.Values{"csrf": {"forged"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("repair without a session: %d, want 401", resp.StatusCode)
	}
	// 5. Log in.
	run("log in", chromedp.Navigate(base+fmt.Sprintf("/login?next=/reports/%d/%d", k.CycleID, k.ReportID)), chromedp.WaitVisible("#token"),
		chromedp.SendKeys("#token", tok), chromedp.Submit("#token"), chromedp.WaitVisible("#repair"))
	// 6. The cutover form refuses a promotion the gate refuses.
	run("cutover", chromedp.Navigate(base+"/cutover"), chromedp.WaitVisible("#set"),
		chromedp.SetValue("#phase", "testing"), chromedp.SetValue("#mode", "new"), chromedp.SendKeys("#actor", "alice"),
		chromedp.SendKeys("#reason", "ramp"), chromedp.Submit("#reason"), chromedp.WaitVisible(".problem"))
	shot("4-cutover-refused")
	if p := text(".problem"); !strings.Contains(p, "refused") || !strings.Contains(p, "unexpected divergences") {
		t.Errorf("cutover refusal shown: %q", p)
	}
	var mode string
	b.DB.Pool.QueryRow(ctx, `SELECT coalesce((SELECT mode FROM dtebridge.cutover_modes WHERE phase = 'testing'), 'shadow')`).Scan(&mode)
	if mode != dtetype.ModeShadow {
		t.Errorf("testing is %s after a refused promotion", mode)
	}
	// 7. Repair from the report page.
	run("repair", chromedp.Navigate(base+fmt.Sprintf("/reports/%d/%d", k.CycleID, k.ReportID)), chromedp.WaitVisible("#repair"),
		chromedp.Click("#repair"), chromedp.WaitVisible(".notice"))
	if n := text(".notice"); !strings.Contains(n, "1 of 1 divergences repaired") {
		t.Errorf("repair notice: %q", n)
	}
	if st := text("#state"); !strings.Contains(st, "agree") {
		t.Errorf("report after repair: %q", st)
	}
	recordRun()
	run("history", chromedp.Navigate(base+fmt.Sprintf("/reports/%d/%d", k.CycleID, k.ReportID)), chromedp.WaitVisible("#history"))
	shot("5-report-repaired")
	if r := text(`#history tr[data-kind="actor_mismatch"] td:nth-child(5)`); r == "open" || r == "" {
		t.Errorf("the divergence is not shown resolved: %q", r)
	}
	run("overview after repair", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#phases"))
	if n := text(`tr[data-phase="testing"] td.unexpected`); n != "0" {
		t.Errorf("overview after repair shows %s unexpected in testing", n)
	}
	t.Logf("screenshots in %s", shots)
}
