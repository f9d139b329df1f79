package dashboards_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/localprom"
	"github.com/synapsedte/dtebridge/internal/testenv"
	"github.com/synapsedte/dtebridge/reconcile"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

type dashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr       string `json:"expr"`
			RawSQL     string `json:"rawSql"`
			Datasource struct {
				UID string `json:"uid"`
			} `json:"datasource"`
		} `json:"targets"`
		FieldConfig struct {
			Defaults struct {
				Unit       string `json:"unit"`
				Thresholds struct {
					Steps []struct {
						Color string   `json:"color"`
						Value *float64 `json:"value"`
					} `json:"steps"`
				} `json:"thresholds"`
				Mappings []json.RawMessage `json:"mappings"`
			} `json:"defaults"`
			Overrides []struct {
				Properties []struct {
					ID    string          `json:"id"`
					Value json.RawMessage `json:"value"`
				} `json:"properties"`
			} `json:"overrides"`
		} `json:"fieldConfig"`
	} `json:"panels"`
}

// grafanaVars stands in for Grafana's variables when a query runs outside
// Grafana: every job, instance and phase.
var grafanaVars = strings.NewReplacer(`"$job"`, `".*"`, `"$instance"`, `".*"`, `"$phase"`, `".*"`)

// sqlVars stands in for them in the PostgreSQL panels' SQL.
var sqlVars = strings.NewReplacer("$phase", "'planning', 'scoping', 'testing'", "$cycle", "1", "$report", "1")

func loadDashboards(t *testing.T) map[string]dashboard {
	t.Helper()
	out := map[string]dashboard{}
	for _, f := range []string{"consistency.json", "health.json"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = d
	}
	return out
}

type rules struct {
	Groups []struct {
		Rules []struct {
			Alert string `yaml:"alert"`
			Expr  string `yaml:"expr"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var r rules
	if err := yaml.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			out[rule.Alert] = rule.Expr
		}
	}
	return out
}

// TestDashboardsImportable: both dashboards carry the titles the team
// looks for and take the Prometheus datasource as a template variable that
// every panel and query uses.
func TestDashboardsImportable(t *testing.T) {
	want := map[string]string{"consistency.json": "dtebridge / Migration consistency", "health.json": "dtebridge / Bridge health"}
	for f, d := range loadDashboards(t) {
		if d.Title != want[f] || d.UID == "" {
			t.Errorf("%s: title %q uid %q", f, d.Title, d.UID)
		}
		if len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" || string(d.Templating.List[0].Query) != `"prometheus"` {
			t.Errorf("%s: no Prometheus datasource variable", f)
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		for _, v := range []string{"job", "instance"} {
			if !vars[v] {
				t.Errorf("%s: no %s variable", f, v)
			}
		}
		for _, p := range d.Panels {
			sql := p.Datasource.UID == "${pg}"
			if (p.Datasource.UID != "${datasource}" && !sql) || len(p.Targets) == 0 {
				t.Errorf("%s: panel %q does not use a datasource variable or has no query", f, p.Title)
			}
			for _, q := range p.Targets {
				switch {
				case sql && (q.Datasource.UID != "${pg}" || q.RawSQL == ""):
					t.Errorf("%s: a SQL query of panel %q", f, p.Title)
				case !sql && (q.Datasource.UID != "${datasource}" || q.Expr == ""):
					t.Errorf("%s: a query of panel %q", f, p.Title)
				case !sql && !strings.Contains(q.Expr, `"$job"`) && !strings.HasPrefix(q.Expr, "time()"):
					t.Errorf("%s: panel %q does not follow the job variable: %s", f, p.Title, q.Expr)
				}
			}
			// Units on every panel; thresholds on every stat, words for the
			// ones that say yes or no.
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("%s: panel %q has no unit", f, p.Title)
			}
			if p.Type == "stat" {
				if len(p.FieldConfig.Defaults.Thresholds.Steps) < 2 {
					t.Errorf("%s: stat %q has no thresholds beyond its base colour", f, p.Title)
				}
				if strings.Contains(p.Title, "available") || strings.Contains(p.Title, "leader") || strings.Contains(p.Title, "up") {
					if len(p.FieldConfig.Defaults.Mappings) == 0 {
						t.Errorf("%s: stat %q shows 0 and 1 without words", f, p.Title)
					}
				}
			}
			if sql {
				links := false
				for _, o := range p.FieldConfig.Overrides {
					for _, pr := range o.Properties {
						links = links || (pr.ID == "links" && strings.Contains(string(pr.Value), "/reports/${__data.fields.cycle_id}/${__data.fields.report_id}"))
					}
				}
				if !links {
					t.Errorf("%s: panel %q does not link its reports to the console", f, p.Title)
				}
			}
		}
	}
}

// TestDivergencesStatTurnsRed: the open unexpected divergences stat is red
// above 0.
func TestDivergencesStatTurnsRed(t *testing.T) {
	for _, p := range loadDashboards(t)["consistency.json"].Panels {
		if p.Title != "Unexpected divergences open" {
			continue
		}
		steps := p.FieldConfig.Defaults.Thresholds.Steps
		if len(steps) != 2 || steps[0].Color != "green" || steps[1].Color != "red" || steps[1].Value == nil || *steps[1].Value != 1 {
			t.Errorf("thresholds %+v: want green, then red from 1", steps)
		}
		return
	}
	t.Error("no Unexpected divergences open panel")
}

// TestRules runs promtool on the alert rules and their unit tests, which
// prove at least the consistency and lag alerts fire on synthetic series.
func TestRules(t *testing.T) {
	promtool := os.Getenv("PROMTOOL_BIN")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			t.Fatal("promtool not found: run the tests with make test, which installs it into ./bin, or set PROMTOOL_BIN")
		}
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	tests, err := os.ReadFile("alerts_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, alert := range []string{"DtebridgeConsistencyBelowGate", "DtebridgeCaptureLagHigh", "DtebridgeSlotInactive", "DtebridgeSlotRetainedWAL"} {
		if !strings.Contains(string(tests), "alertname: "+alert) {
			t.Errorf("alerts_test.yml does not test %s", alert)
		}
	}
}

var metricName = regexp.MustCompile(`\b(?:dtebridge|go|process)_[a-zA-Z0-9_]+`)

// base strips the series suffixes of histograms and summaries.
func base(name string, families map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suffix); ok && families[b] {
			return b
		}
	}
	return name
}

// TestEndToEnd runs a served bridge under simulated traffic and a
// reconcile, scraped by a real Prometheus on loopback, then evaluates every
// dashboard query and alert expression through Prometheus's HTTP API; the
// core panels must return data. The same run checks that every metric the
// dashboards and rules name exists in the live registry, and that every
// metric the bridge exports is documented in README.md.
//
// The bridge runs log-based capture here, so the replication slot's
// figures are scraped too (the other suites run trigger capture).
func TestEndToEnd(t *testing.T) {
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{Configure: func(c *config.Config) { c.Capture.Mode = adapter.ModeLogical }})
	ctx := context.Background()
	prom, err := localprom.Start(ctx, localprom.Config{Targets: []string{b.Srv.Addr()}, ScrapeInterval: time.Second, RuleFiles: []string{"alerts.yml"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)
	// Traffic starts once Prometheus scrapes the bridge, so rates see it.
	bridgetest.WaitFor(t, 30*time.Second, "the first scrape", func() bool {
		s, err := prom.Query(ctx, `up{job="dtebridge"}`)
		return err == nil && len(s) == 1 && s[0].Float() == 1
	})
	b.Simulate(30, 600, 7)
	time.Sleep(2 * time.Second)
	b.Simulate(10, 300, 8)
	b.Quiescent(60 * time.Second)
	o := b.Cfg.ReconcileOptions(b.DB.Pool)
	o.Persist = true
	if _, err := reconcile.Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	// Let Prometheus scrape the reconcile figures and a few rate windows.
	bridgetest.WaitFor(t, 30*time.Second, "Prometheus to scrape the reconcile run", func() bool {
		s, err := prom.Query(ctx, "dtebridge_reconcile_runs_total")
		return err == nil && len(s) == 1 && s[0].Float() == 1
	})
	time.Sleep(3 * time.Second)
	targets, err := prom.Targets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for url, health := range targets {
		if health != "up" {
			t.Errorf("target %s: %s", url, health)
		}
	}

	// Every query and every alert expression evaluates without error.
	core := map[string]bool{
		"Consistency per phase, against the gate": true, "Divergences by kind (unexpected)": true,
		"Capture lag": true, "Throughput": true, "Replication slot (capture.mode: logical)": true, "Unexpected divergences open": true, "Cutover: mode per phase": true,
	}
	var exprs []string
	seenCore := 0
	for f, d := range loadDashboards(t) {
		for _, p := range d.Panels {
			data := false
			for _, q := range p.Targets {
				if q.RawSQL != "" {
					// The PostgreSQL panels' SQL runs against the real schema.
					rows, err := b.DB.Pool.Query(ctx, sqlVars.Replace(q.RawSQL))
					if err == nil {
						for rows.Next() {
						}
						rows.Close()
						err = rows.Err()
					}
					if err != nil {
						t.Errorf("%s: panel %q: its SQL fails on the bridge schema: %v", f, p.Title, err)
					}
					continue
				}
				expr := grafanaVars.Replace(q.Expr)
				exprs = append(exprs, expr)
				s, err := prom.Query(ctx, expr)
				if err != nil {
					t.Errorf("%s: panel %q: %v", f, p.Title, err)
				}
				for _, x := range s {
					data = data || !math.IsNaN(x.Float())
				}
			}
			if core[p.Title] {
				seenCore++
				if !data {
					t.Errorf("%s: core panel %q returned no data", f, p.Title)
				}
			}
		}
	}
	if seenCore != len(core) {
		t.Errorf("found %d of the %d core panels", seenCore, len(core))
	}
	for alert, expr := range loadRules(t) {
		exprs = append(exprs, expr)
		if _, err := prom.Query(ctx, expr); err != nil {
			t.Errorf("alert %s: %v", alert, err)
		}
	}
	// The healthy bridge fires none of the alerts Prometheus evaluates.
	if s, err := prom.Query(ctx, `ALERTS{alertstate="firing"}`); err != nil || len(s) != 0 {
		t.Errorf("alerts firing on a healthy bridge: %v %+v", err, s)
	}
	// Consistency is 100% on clean traffic, as Prometheus sees it.
	s, err := prom.Query(ctx, "min(dtebridge_reconcile_consistency_ratio)")
	if err != nil || len(s) != 1 || s[0].Float() != 1 {
		t.Errorf("consistency in Prometheus: %v %+v", err, s)
	}

	// References: what the dashboards and rules name exists in the live
	// registry.
	mfs, err := b.Srv.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	families := map[string]bool{}
	for _, mf := range mfs {
		families[mf.GetName()] = true
		if strings.HasPrefix(mf.GetName(), "dtebridge_") && mf.GetHelp() == "" {
			t.Errorf("%s has no help text", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetName(), "report") || strings.Contains(l.GetName(), "cycle") {
					t.Errorf("%s has a high-cardinality label %s", mf.GetName(), l.GetName())
				}
			}
		}
	}
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			if !families[base(n, families)] {
				t.Errorf("%q names %s, which the bridge does not export", e, n)
			}
		}
	}
	for _, want := range []string{"dtebridge_shadow_rule_violations_total", "dtebridge_temporal_request_total", "dtebridge_temporal_workflow_task_execution_latency_seconds"} {
		if !families[want] {
			t.Errorf("%s is not exported", want)
		}
	}
	// Documentation: every family the bridge exports is in README.md.
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var undocumented []string
	for name := range families {
		switch {
		case strings.HasPrefix(name, "go_") && strings.Contains(string(readme), "`go_*`"):
		case strings.HasPrefix(name, "process_") && strings.Contains(string(readme), "`process_*`"):
		case !strings.Contains(string(readme), "`"+name+"`") && !strings.Contains(string(readme), "`"+name+"{"):
			undocumented = append(undocumented, name)
		}
	}
	slices.Sort(undocumented)
	if len(undocumented) > 0 {
		t.Errorf("not documented in dashboards/README.md: %s", strings.Join(undocumented, " "))
	}
}
