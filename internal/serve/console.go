package serve

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// The console: server-rendered pages for the migration team (overview,
// divergences, a report, cutover, quarantine, findings), each with a JSON
// twin under /api/v1/. Reading is open where the server listens; every
// change needs a session (logging in with the bearer token) and its CSRF
// token, or the bearer token itself.

//go:embed console/*.tmpl console/*.css
var consoleFiles embed.FS

var consoleTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"pct": func(f float64) string { return strconv.FormatFloat(f*100, 'f', 2, 64) + "%" },
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			if v.IsZero() {
				return "-"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		case *time.Time:
			if v == nil {
				return "-"
			}
			return v.UTC().Format("2006-01-02 15:04:05Z")
		}
		return "-"
	},
	"date": func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return dtetype.FormatTime(*t)
	},
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"orDash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"join": func(s []string) string { return strings.Join(s, ", ") },
	"has":  func(s []string, v string) bool { return slices.Contains(s, v) },
}).ParseFS(consoleFiles, "console/*.tmpl"))

// page is what every console page template gets.
type page struct {
	Title, Active string
	Definition    string
	LoggedIn      bool
	CSRF          string
	// Notice and Problem are the outcome of the last action.
	Notice, Problem string
	TokenSet        bool
	Data            any
}

// render writes template name with data in the layout.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	nonce := s.session(r)
	p := page{Title: name, Active: name, Definition: s.definition.Key(), LoggedIn: nonce != "", CSRF: s.csrf(nonce),
		Notice: r.URL.Query().Get("notice"), Problem: r.URL.Query().Get("problem"), TokenSet: s.token != "", Data: data}
	var b strings.Builder
	if err := consoleTemplates.ExecuteTemplate(&b, name, p); err != nil {
		s.log.Error("console page failed", "page", name, "error", err)
		http.Error(w, "the page could not be drawn: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// view serves a console page and its JSON twin from one function.
func (s *Server) view(name string, build func(r *http.Request) (any, error)) (html, api http.HandlerFunc) {
	html = func(w http.ResponseWriter, r *http.Request) {
		v, err := build(r)
		if err != nil {
			s.consoleError(w, r, err)
			return
		}
		s.render(w, r, http.StatusOK, name, v)
	}
	api = func(w http.ResponseWriter, r *http.Request) {
		v, err := build(r)
		if err != nil {
			var nf notFound
			if errors.As(err, &nf) {
				writeError(w, http.StatusNotFound, codeNotFound, "", err.Error())
				return
			}
			var bad badInput
			if errors.As(err, &bad) {
				writeError(w, http.StatusBadRequest, codeBadRequest, "", err.Error())
				return
			}
			writeError(w, http.StatusServiceUnavailable, codeUnavailable, "", err.Error())
			return
		}
		writeJSON(w, v)
	}
	return html, api
}

type notFound struct{ error }
type badInput struct{ error }

func (s *Server) consoleError(w http.ResponseWriter, r *http.Request, err error) {
	status := http.StatusServiceUnavailable
	var nf notFound
	var bad badInput
	switch {
	case errors.As(err, &nf):
		status = http.StatusNotFound
	case errors.As(err, &bad):
		status = http.StatusBadRequest
	}
	s.render(w, r, status, "problem", err.Error())
}

// back redirects to the page the form came from, with the outcome.
func back(w http.ResponseWriter, r *http.Request, to string, err error, notice string) {
	q := url.Values{}
	if err != nil {
		q.Set("problem", err.Error())
	} else {
		q.Set("notice", notice)
	}
	http.Redirect(w, r, to+"?"+q.Encode(), http.StatusSeeOther)
}

// consoleRoutes adds the console and its JSON twins to mux.
func (s *Server) consoleRoutes(mux *http.ServeMux) {
	for _, v := range []struct {
		path, api, name string
		build           func(r *http.Request) (any, error)
	}{
		{"GET /{$}", "GET /api/v1/overview", "overview", func(r *http.Request) (any, error) { return s.overview(r.Context()) }},
		{"GET /divergences", "GET /api/v1/divergences", "divergences", s.divergencesView},
		{"GET /reports/{cycle}/{report}", "GET /api/v1/reports/{cycle}/{report}", "report", s.reportView},
		{"GET /cutover", "GET /api/v1/cutover/board", "cutover", func(r *http.Request) (any, error) { return s.cutoverBoard(r.Context()) }},
		{"GET /quarantine", "GET /api/v1/quarantine", "quarantine", func(r *http.Request) (any, error) { return s.quarantineView(r.Context()) }},
		{"GET /findings", "GET /api/v1/findings", "findings", s.findingsView},
	} {
		html, api := s.view(v.name, v.build)
		mux.HandleFunc(v.path, html)
		mux.HandleFunc(v.api, api)
	}
	mux.HandleFunc("GET /login", func(w http.ResponseWriter, r *http.Request) {
		s.render(w, r, http.StatusOK, "login", map[string]any{"Next": r.URL.Query().Get("next")})
	})
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("POST /logout", s.logout)
	mux.HandleFunc("GET /console.css", func(w http.ResponseWriter, r *http.Request) {
		b, _ := consoleFiles.ReadFile("console/console.css")
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "max-age=300")
		_, _ = w.Write(b)
	})
	mux.HandleFunc("POST /reports/{cycle}/{report}/repair", s.repairReport)
	mux.HandleFunc("POST /cutover/set", s.cutoverSet)
	mux.HandleFunc("POST /quarantine/retry", s.quarantineRetry)
	mux.HandleFunc("POST /quarantine/resolve", s.quarantineResolve)
}

// --- Overview ---

// Overview is the console's first page: per phase, where it stands.
type Overview struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Definition  string          `json:"definition"`
	Phases      []PhaseOverview `json:"phases"`
	// Runs are the full reconcile runs the figures come from, oldest first.
	Runs          []int64               `json:"runs"`
	LastReconcile *reconcile.RunSummary `json:"last_reconcile"`
	Capture       CaptureHealth         `json:"capture"`
	Quarantine    int                   `json:"quarantine_pending"`
	Findings      FindingTotals         `json:"findings"`
	Health        []Health              `json:"health"`
}

// FindingTotals counts the findings of each origin.
type FindingTotals struct {
	Historical int64 `json:"historical"`
	Live       int64 `json:"live"`
}

// PhaseOverview is one phase on the overview.
type PhaseOverview struct {
	Phase dtetype.Phase `json:"phase"`
	Name  string        `json:"name"`
	Mode  dtetype.Mode  `json:"mode"`
	// Consistency is the last full run's for the phase (null: no run yet);
	// Series the runs' figures, oldest first.
	Consistency *float64            `json:"consistency"`
	Series      []float64           `json:"series"`
	Sparkline   template.HTML       `json:"-"`
	Gate        *cutover.GateResult `json:"gate"`
	Unexpected  int64               `json:"unexpected_open"`
	Expected    int64               `json:"expected_open"`
	Findings    int64               `json:"findings"`
}

// CaptureHealth is capture's state as this process sees it.
type CaptureHealth struct {
	Leading           bool       `json:"leading"`
	Backlog           int64      `json:"backlog"`
	BacklogAgeSeconds float64    `json:"backlog_age_seconds"`
	FailingSince      *time.Time `json:"delivery_failing_since"`
	FailingWhy        string     `json:"delivery_failing_why,omitempty"`
}

// Health is one part's health.
type Health struct {
	Part   string `json:"part"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// sparkRuns is how many runs the overview's sparklines show.
const sparkRuns = 30

func (s *Server) overview(ctx context.Context) (*Overview, error) {
	cfg := s.config()
	o := &Overview{GeneratedAt: time.Now().UTC(), Definition: s.definition.Key(), Runs: []int64{}, Health: []Health{}}
	runs, err := reconcile.GateRuns(ctx, s.st, cutover.GateRunsRead)
	if err != nil {
		return nil, err
	}
	var full []reconcile.RunSummary
	for _, r := range runs {
		if r.Kind == store.RunFull {
			full = append(full, r)
		}
	}
	if len(full) > sparkRuns {
		full = full[:sparkRuns]
	}
	slices.Reverse(full)
	for _, r := range full {
		o.Runs = append(o.Runs, r.RunID)
	}
	if len(runs) > 0 {
		o.LastReconcile = &runs[0]
	}
	counts, err := s.st.OpenDivergenceCounts(ctx)
	if err != nil {
		return nil, err
	}
	findings, err := s.findingCounts(ctx)
	if err != nil {
		return nil, err
	}
	gate := cfg.GateConfig()
	for _, pd := range s.definition.Phases {
		po := PhaseOverview{Phase: pd.ID, Name: pd.Name, Mode: s.authority.Mode(pd.ID), Series: []float64{}}
		for _, r := range full {
			for _, p := range r.Phases {
				if p.Phase == pd.ID && p.Compared > 0 {
					po.Series = append(po.Series, p.Consistency)
				}
			}
		}
		if n := len(po.Series); n > 0 {
			c := po.Series[n-1]
			po.Consistency = &c
		}
		po.Sparkline = sparkline(po.Series, gate.MinConsistency)
		po.Gate = cutover.GateOf(runs, pd.ID, gate)
		for _, c := range counts {
			if c.Phase == pd.ID {
				if c.Expected {
					po.Expected += c.N
				} else {
					po.Unexpected += c.N
				}
			}
		}
		for _, f := range findings {
			if f.Phase == pd.ID {
				po.Findings += f.Findings
			}
		}
		o.Phases = append(o.Phases, po)
	}
	for _, f := range findings {
		if f.Historical {
			o.Findings.Historical += f.Findings
		} else {
			o.Findings.Live += f.Findings
		}
	}
	b, err := s.st.BacklogOf(ctx, store.MirrorConsumer)
	if err != nil {
		return nil, err
	}
	o.Capture = CaptureHealth{Leading: s.reader.Leading(), Backlog: b.Changes, BacklogAgeSeconds: b.Age.Seconds()}
	if since, why := s.reader.DeliveryFailing(); !since.IsZero() {
		o.Capture.FailingSince, o.Capture.FailingWhy = &since, why
	}
	held, err := s.st.QuarantinedReports(ctx)
	if err != nil {
		return nil, err
	}
	byReason, err := s.st.QuarantinePendingByReason(ctx)
	if err != nil {
		return nil, err
	}
	for _, n := range byReason {
		o.Quarantine += int(n)
	}
	_ = held
	o.Health = s.health(ctx)
	return o, nil
}

// findingsFor is how long the overview reuses the findings' counts: they
// expand every report's findings, so at scale they are read at most this
// often (the metrics collector does the same).
const findingsFor = 15 * time.Second

// findingCounts returns the findings by origin, phase and rule, cached.
func (s *Server) findingCounts(ctx context.Context) ([]store.FindingCount, error) {
	s.findingsMu.Lock()
	defer s.findingsMu.Unlock()
	if s.findings != nil && time.Since(s.findingsAt) < findingsFor {
		return s.findings, nil
	}
	f, err := s.st.Findings(ctx, "", 1)
	if err != nil {
		return nil, err
	}
	s.findings, s.findingsAt = f, time.Now()
	return f, nil
}

// health says how each part of the bridge is.
func (s *Server) health(ctx context.Context) []Health {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	out := []Health{}
	add := func(part string, err error, ok string) {
		h := Health{Part: part, OK: err == nil, Detail: ok}
		if err != nil {
			h.Detail = err.Error()
		}
		out = append(out, h)
	}
	add("database", s.opts.Pool.Ping(ctx), "answers")
	_, err := s.opts.Temporal.CheckHealth(ctx, nil)
	add("Temporal", err, "answers")
	role := "standby: another replica leads capture"
	if s.reader.Leading() {
		role = "this process leads capture"
	}
	var capErr error
	if since, why := s.reader.DeliveryFailing(); !since.IsZero() {
		capErr = fmt.Errorf("deliveries to the shadow have failed for %s: %s", time.Since(since).Round(time.Second), why)
	}
	add("capture and mirror", capErr, role)
	if s.users != nil {
		add("role lookups", s.users.Err(), "the users table answers")
	}
	add("bridge", s.Err(), "every part runs")
	return out
}

// sparkline draws series (0..1, oldest first) as a small SVG, with the
// gate's threshold as a dashed line.
func sparkline(series []float64, threshold float64) template.HTML {
	const w, h = 120.0, 28.0
	if len(series) == 0 {
		return template.HTML(`<svg class="spark" width="120" height="28" role="img" aria-label="no reconcile runs yet"></svg>`)
	}
	lo := min(threshold, slices.Min(series)) - 0.001
	y := func(v float64) float64 { return h - 2 - (v-lo)/(1-lo)*(h-4) }
	var pts []string
	for i, v := range series {
		x := w / 2
		if len(series) > 1 {
			x = float64(i) * w / float64(len(series)-1)
		}
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y(v)))
	}
	last := series[len(series)-1]
	class := "ok"
	if last < threshold {
		class = "bad"
	}
	return template.HTML(fmt.Sprintf(`<svg class="spark %s" width="120" height="28" viewBox="0 0 120 28" role="img" aria-label="consistency over %d runs, last %.2f%%">`+
		`<line class="gate" x1="0" x2="120" y1="%.1f" y2="%.1f"/><polyline points="%s"/></svg>`,
		class, len(series), last*100, y(threshold), y(threshold), strings.Join(pts, " ")))
}

// --- Divergences ---

// Divergences is a page of open divergences.
type Divergences struct {
	Filter DivergenceFilter      `json:"filter"`
	Rows   []store.DivergenceRow `json:"rows"`
	Total  int64                 `json:"total"`
	// Next is the cursor of the next page ("" on the last).
	Next   string          `json:"next"`
	Phases []dtetype.Phase `json:"-"`
	Kinds  []string        `json:"-"`
	Query  string          `json:"-"`
}

// DivergenceFilter is the divergences page's filter, as given.
type DivergenceFilter struct {
	Phase    string `json:"phase"`
	Kind     string `json:"kind"`
	Expected string `json:"expected"`
	Since    string `json:"since"`
}

// divergencesPage is how many divergences one page lists.
const divergencesPage = 50

func (s *Server) divergencesView(r *http.Request) (any, error) {
	q := r.URL.Query()
	v := &Divergences{Phases: s.definition.PhaseIDs(), Kinds: dtetype.Kinds()}
	v.Filter.Phase, v.Filter.Kind, v.Filter.Expected, v.Filter.Since = q.Get("phase"), q.Get("kind"), q.Get("expected"), q.Get("since")
	f := store.DivergenceFilter{Phase: dtetype.Phase(v.Filter.Phase), Kind: v.Filter.Kind, Limit: divergencesPage}
	if f.Phase != "" && s.definition.Phase(f.Phase) == nil {
		return nil, badInput{fmt.Errorf("phase %q is not in %s (phases: %v)", f.Phase, s.definition.Key(), s.definition.PhaseIDs())}
	}
	if f.Kind != "" && !slices.Contains(dtetype.Kinds(), f.Kind) {
		return nil, badInput{fmt.Errorf("kind %q is not one of %v", f.Kind, dtetype.Kinds())}
	}
	switch v.Filter.Expected {
	case "":
	case "yes", "true":
		t := true
		f.Expected = &t
	case "no", "false":
		fl := false
		f.Expected = &fl
	default:
		return nil, badInput{fmt.Errorf("expected=%q: use yes or no", v.Filter.Expected)}
	}
	if v.Filter.Since != "" {
		t, err := parseSince(v.Filter.Since)
		if err != nil {
			return nil, badInput{err}
		}
		f.Since = &t
	}
	if after := q.Get("after"); after != "" {
		at, id, ok := strings.Cut(after, "_")
		sec, err1 := strconv.ParseInt(at, 10, 64)
		n, err2 := strconv.ParseInt(id, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, badInput{fmt.Errorf("after=%q is not a page cursor", after)}
		}
		f.After = &store.DivergenceRow{ID: n, FirstSeen: time.UnixMicro(sec)}
	}
	rows, total, err := s.st.ListDivergences(r.Context(), f)
	if err != nil {
		return nil, err
	}
	v.Rows, v.Total = rows, total
	if v.Rows == nil {
		v.Rows = []store.DivergenceRow{}
	}
	if len(rows) == divergencesPage {
		last := rows[len(rows)-1]
		v.Next = fmt.Sprintf("%d_%d", last.FirstSeen.UnixMicro(), last.ID)
	}
	keep := url.Values{}
	for _, k := range []string{"phase", "kind", "expected", "since"} {
		if q.Get(k) != "" {
			keep.Set(k, q.Get(k))
		}
	}
	v.Query = keep.Encode()
	return v, nil
}

// parseSince reads a time or a duration ago (1h, 7d).
func parseSince(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil {
			return time.Now().Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil {
		return time.Now().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("since=%q: give a time (RFC 3339) or how long ago (90m, 7d)", s)
}

// --- Report ---

// Report is one report: legacy and the shadow side by side.
type Report struct {
	Key         dtetype.Key       `json:"key"`
	Definition  string            `json:"definition"`
	WorkflowID  string            `json:"workflow_id"`
	TemporalURL string            `json:"temporal_url"`
	Attributes  map[string]string `json:"attributes"`
	Phases      []ReportPhase     `json:"phases"`
	// Divergences are what reconcile finds for the report now; Unexpected
	// counts those no expected rule accepts.
	Divergences []dtetype.Divergence      `json:"divergences"`
	Unexpected  int                       `json:"unexpected"`
	History     []store.DivergenceRow     `json:"history"`
	Findings    []store.ReportFinding     `json:"findings"`
	Quarantine  []store.ReportQuarantined `json:"quarantine"`
	Changes     []store.ReportChange      `json:"recent_changes"`
	Commands    []store.Command           `json:"commands"`
	Refusals    []store.Refusal           `json:"refusals"`
}

// ReportPhase is one phase of a report: each field on both sides.
type ReportPhase struct {
	Phase  dtetype.Phase `json:"phase"`
	Name   string        `json:"name"`
	Owner  string        `json:"owner"`
	Rows   int           `json:"legacy_rows"`
	Fields []FieldPair   `json:"fields"`
	// Differs names the fields reconcile finds different.
	Differs []string `json:"differs"`
}

// FieldPair is one field of a phase on both sides.
type FieldPair struct {
	Field  string `json:"field"`
	Legacy string `json:"legacy"`
	Shadow string `json:"shadow"`
	Differ bool   `json:"differ"`
}

func pathKey(r *http.Request) (dtetype.Key, error) {
	c, err1 := strconv.ParseInt(r.PathValue("cycle"), 10, 64)
	rp, err2 := strconv.ParseInt(r.PathValue("report"), 10, 64)
	if err1 != nil || err2 != nil {
		return dtetype.Key{}, badInput{fmt.Errorf("cycle and report must be integers")}
	}
	return dtetype.Key{CycleID: c, ReportID: rp}, nil
}

func (s *Server) reportView(r *http.Request) (any, error) {
	k, err := pathKey(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	cfg := s.config()
	v := &Report{Key: k, WorkflowID: shadow.WorkflowID(cfg.Shadow.WorkflowIDPrefix, k)}
	if ui := cmpOr(s.opts.TemporalUI, cfg.Temporal.UIURL); ui != "" {
		v.TemporalURL = strings.TrimRight(ui, "/") + "/namespaces/" + url.PathEscape(cmpOr(s.opts.Namespace, "default")) + "/workflows/" + url.PathEscape(v.WorkflowID)
	}
	projected, err := s.st.ProjectedPhases(ctx, k)
	if err != nil {
		return nil, err
	}
	if v.Definition, v.Attributes, err = s.st.ReportShadow(ctx, k); err != nil {
		return nil, err
	}
	// Legacy's rows, translated as the bridge reads them.
	tr, err := cfg.Translator(s.definition.PhaseIDs())
	if err != nil {
		return nil, err
	}
	rows, err := s.opts.Pool.Query(ctx, cfg.Legacy.SnapshotSQL(true), []int64{k.CycleID}, []int64{k.ReportID})
	if err != nil {
		return nil, err
	}
	legacyRows := map[dtetype.Phase][]dtetype.PhaseChange{}
	for rows.Next() {
		raw, err := cfg.Legacy.ScanSnapshot(rows)
		if err != nil {
			rows.Close()
			return nil, err
		}
		if res := tr.Translate(raw); res.Change != nil {
			legacyRows[res.Change.Phase] = append(legacyRows[res.Change.Phase], *res.Change)
		}
	}
	rows.Close()
	if len(projected) == 0 && len(legacyRows) == 0 {
		return nil, notFound{fmt.Errorf("neither legacy nor the shadow knows report %s", k)}
	}
	// What reconcile finds for this report now.
	ro := s.reconcileOptions()
	ro.Scope = reconcile.Scope{Keys: []dtetype.Key{k}}
	found, err := reconcile.Run(ctx, ro)
	if err != nil {
		return nil, err
	}
	v.Divergences, v.Unexpected = found.Divergences, int(found.Unexpected)
	differs := map[dtetype.Phase][]string{}
	for _, d := range found.Divergences {
		if len(d.Fields) > 0 {
			differs[d.Phase] = append(differs[d.Phase], d.Fields...)
		} else if d.Kind == dtetype.KindMissingInShadow || d.Kind == dtetype.KindOrphanInShadow {
			differs[d.Phase] = append(differs[d.Phase], "State", "Status", "PlannedStart", "PlannedEnd", "ActualStart", "ActualEnd", "StartedBy", "CompletedBy")
		} else if d.Kind == dtetype.KindLegacyStatusInconsistent {
			differs[d.Phase] = append(differs[d.Phase], "Status")
		}
	}
	byPhase := map[dtetype.Phase]store.ProjectedPhase{}
	for _, p := range projected {
		byPhase[p.Phase] = p
	}
	for _, pd := range s.definition.Phases {
		lrows := legacyRows[pd.ID]
		sp, hasShadow := byPhase[pd.ID]
		if len(lrows) == 0 && !hasShadow {
			continue
		}
		rp := ReportPhase{Phase: pd.ID, Name: pd.Name, Rows: len(lrows), Differs: differs[pd.ID]}
		rp.Owner = "legacy"
		if s.authority.OnNew(k, pd.ID) {
			rp.Owner = "new engine"
		}
		var l *dtetype.PhaseChange
		if len(lrows) > 0 {
			l = &lrows[0] // the oldest, as legacy reads it
		}
		pair := func(field, lv, sv string) {
			rp.Fields = append(rp.Fields, FieldPair{Field: field, Legacy: lv, Shadow: sv, Differ: slices.Contains(rp.Differs, field)})
		}
		str := func(t *time.Time) string {
			if t == nil {
				return ""
			}
			return dtetype.FormatTime(*t)
		}
		var lv, sv dtetype.PhaseChange
		if l != nil {
			lv = *l
		}
		if hasShadow {
			sv = dtetype.PhaseChange{State: sp.State, Status: sp.Status, PlannedStart: sp.PlannedStart, PlannedEnd: sp.PlannedEnd,
				ActualStart: sp.ActualStart, ActualEnd: sp.ActualEnd, StartedBy: sp.StartedBy, CompletedBy: sp.CompletedBy}
		}
		pair("State", string(lv.State), string(sv.State))
		pair("Status", string(lv.Status), string(sv.Status))
		pair("PlannedStart", str(lv.PlannedStart), str(sv.PlannedStart))
		pair("PlannedEnd", str(lv.PlannedEnd), str(sv.PlannedEnd))
		pair("ActualStart", str(lv.ActualStart), str(sv.ActualStart))
		pair("ActualEnd", str(lv.ActualEnd), str(sv.ActualEnd))
		pair("StartedBy", lv.StartedBy, sv.StartedBy)
		pair("CompletedBy", lv.CompletedBy, sv.CompletedBy)
		v.Phases = append(v.Phases, rp)
	}
	if v.History, err = s.st.ReportDivergences(ctx, k); err != nil {
		return nil, err
	}
	fs, err := s.st.ReportFindings(ctx, []dtetype.Key{k})
	if err != nil {
		return nil, err
	}
	v.Findings = fs[k]
	if v.Quarantine, err = s.st.ReportQuarantine(ctx, k); err != nil {
		return nil, err
	}
	if v.Changes, err = s.st.ReportChanges(ctx, k, cfg.Legacy.Columns.Cycle, cfg.Legacy.Columns.Report); err != nil {
		return nil, err
	}
	if v.Commands, err = s.st.Commands(ctx, &k, 50); err != nil {
		return nil, err
	}
	if v.Refusals, err = s.st.Refusals(ctx, &k, 50); err != nil {
		return nil, err
	}
	for _, p := range []*[]store.DivergenceRow{&v.History} {
		if *p == nil {
			*p = []store.DivergenceRow{}
		}
	}
	if v.Findings == nil {
		v.Findings = []store.ReportFinding{}
	}
	if v.Quarantine == nil {
		v.Quarantine = []store.ReportQuarantined{}
	}
	if v.Changes == nil {
		v.Changes = []store.ReportChange{}
	}
	if v.Commands == nil {
		v.Commands = []store.Command{}
	}
	if v.Refusals == nil {
		v.Refusals = []store.Refusal{}
	}
	if v.Phases == nil {
		v.Phases = []ReportPhase{}
	}
	return v, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// repairReport re-drives one report from legacy (the report page's
// button).
func (s *Server) repairReport(w http.ResponseWriter, r *http.Request) {
	k, err := pathKey(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	to := fmt.Sprintf("/reports/%d/%d", k.CycleID, k.ReportID)
	if err := s.mayMutate(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	ro := s.reconcileOptions()
	ro.Scope = reconcile.Scope{Keys: []dtetype.Key{k}}
	rep, err := reconcile.Run(r.Context(), ro)
	if err == nil {
		err = reconcile.Repair(r.Context(), ro, s.reconcileTemporal(), rep)
	}
	if err == nil {
		// The re-check says where the report stands now: its shadow's mark.
		ro.Persist = true
		if after, err2 := reconcile.Run(r.Context(), ro); err2 == nil {
			_, _ = reconcile.MarkDivergent(r.Context(), ro, s.reconcileTemporal(), after)
		}
	}
	if err != nil {
		back(w, r, to, err, "")
		return
	}
	s.log.Info("console repair", "key", k.String(), "repaired", rep.Repair.Repaired, "remaining", len(rep.Repair.Remaining))
	back(w, r, to, nil, fmt.Sprintf("Re-drove the report from legacy: %d of %d divergences repaired, %d remain.",
		rep.Repair.Repaired, rep.Repair.Attempted, len(rep.Repair.Remaining)))
}

// refuse answers a mutation without a session: the login page for a
// browser, 401 otherwise.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if strings.Contains(r.Header.Get("Accept"), "text/html") || r.Header.Get("Content-Type") == "application/x-www-form-urlencoded" {
		s.render(w, r, http.StatusUnauthorized, "login", map[string]any{"Next": r.Referer(), "Error": err.Error()})
		return
	}
	writeError(w, http.StatusUnauthorized, codeUnauthorized, "", err.Error())
}

// --- Cutover ---

// CutoverBoard is each phase's mode, gate and reports on new, and the
// audit history.
type CutoverBoard struct {
	Phases  []CutoverPhase   `json:"phases"`
	History []store.LogEntry `json:"history"`
}

// CutoverPhase is one phase on the board.
type CutoverPhase struct {
	Phase    dtetype.Phase       `json:"phase"`
	Name     string              `json:"name"`
	Mode     dtetype.Mode        `json:"mode"`
	Gate     *cutover.GateResult `json:"gate"`
	OnNew    int                 `json:"reports_on_new"`
	Followed int                 `json:"reports_followed"`
}

func (s *Server) cutoverBoard(ctx context.Context) (*CutoverBoard, error) {
	cs := cutover.NewStore(s.st)
	v := &CutoverBoard{}
	runs, err := reconcile.GateRuns(ctx, s.st, cutover.GateRunsRead)
	if err != nil {
		return nil, err
	}
	for _, pd := range s.definition.Phases {
		g := cutover.GateOf(runs, pd.ID, s.config().GateConfig())
		on, err := cs.ReportsOnNew(ctx, pd.ID)
		if err != nil {
			return nil, err
		}
		v.Phases = append(v.Phases, CutoverPhase{Phase: pd.ID, Name: pd.Name, Mode: on.Mode, Gate: g, OnNew: len(on.Reports), Followed: on.Followed})
	}
	if v.History, err = cs.History(ctx, "", 30); err != nil {
		return nil, err
	}
	if v.History == nil {
		v.History = []store.LogEntry{}
	}
	return v, nil
}

func (s *Server) cutoverSet(w http.ResponseWriter, r *http.Request) {
	if err := s.mayMutate(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	p := dtetype.Phase(r.PostFormValue("phase"))
	if s.definition.Phase(p) == nil {
		back(w, r, "/cutover", fmt.Errorf("phase %q is not in %s", p, s.definition.Key()), "")
		return
	}
	mode := r.PostFormValue("mode")
	percent := 0
	if mode == dtetype.ModeNew {
		percent = 100
		if v := r.PostFormValue("percent"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				back(w, r, "/cutover", fmt.Errorf("percent %q is not a number", v), "")
				return
			}
			percent = n
		}
	}
	cfg := s.config()
	res, err := cutover.NewStore(s.st).Set(r.Context(), cutover.Change{Phase: p, Mode: mode, Percent: percent, Actor: r.PostFormValue("actor"),
		Reason: r.PostFormValue("reason"), Force: r.PostFormValue("force") == "on", LegacyTable: cfg.Legacy.Name}, cfg.GateConfig())
	if err != nil {
		back(w, r, "/cutover", err, "")
		return
	}
	_ = s.authority.Refresh(r.Context())
	notice := fmt.Sprintf("%s: %s %d%% -> %s %d%% (log %d).", p, res.From.Mode, res.From.Percent, res.To.Mode, res.To.Percent, res.LogID)
	if res.NoOp {
		notice = fmt.Sprintf("%s is already %s %d%%: nothing changed.", p, res.To.Mode, res.To.Percent)
	}
	if len(res.Redrives) > 0 {
		notice += fmt.Sprintf(" %d reports are being re-driven from legacy.", len(res.Redrives))
	}
	s.log.Info("console cutover", "phase", p, "mode", mode, "percent", percent, "actor", r.PostFormValue("actor"))
	back(w, r, "/cutover", nil, notice)
}

// --- Quarantine ---

// QuarantineView is the pending quarantine, grouped by reason and label.
type QuarantineView struct {
	Pending int               `json:"pending"`
	Groups  []QuarantineGroup `json:"groups"`
}

// QuarantineGroup is the pending changes of one reason and label.
type QuarantineGroup struct {
	Reason  string                  `json:"reason"`
	Label   string                  `json:"label"`
	Count   int                     `json:"count"`
	Entries []store.QuarantineEntry `json:"entries"`
}

var quotedLabel = regexp.MustCompile(`label "([^"]*)"`)

func (s *Server) quarantineView(ctx context.Context) (*QuarantineView, error) {
	entries, err := s.st.ListQuarantine(ctx, false)
	if err != nil {
		return nil, err
	}
	groups := map[[2]string]*QuarantineGroup{}
	for _, e := range entries {
		label := ""
		if m := quotedLabel.FindStringSubmatch(e.Detail); m != nil {
			label = m[1]
		}
		g := groups[[2]string{e.Reason, label}]
		if g == nil {
			g = &QuarantineGroup{Reason: e.Reason, Label: label}
			groups[[2]string{e.Reason, label}] = g
		}
		g.Count++
		if len(g.Entries) < 20 {
			g.Entries = append(g.Entries, e)
		}
	}
	v := &QuarantineView{Pending: len(entries), Groups: []QuarantineGroup{}}
	for _, k := range slices.SortedFunc(maps.Keys(groups), func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) }) {
		v.Groups = append(v.Groups, *groups[k])
	}
	return v, nil
}

func (s *Server) quarantineRetry(w http.ResponseWriter, r *http.Request) {
	if err := s.mayMutate(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	tr, err := s.config().Translator(s.definition.PhaseIDs())
	if err != nil {
		back(w, r, "/quarantine", err, "")
		return
	}
	res, err := adapter.RetryQuarantine(r.Context(), s.st, tr)
	if err != nil {
		back(w, r, "/quarantine", err, "")
		return
	}
	back(w, r, "/quarantine", nil, fmt.Sprintf("Released %d changes for delivery with the current mapping.", res.Released))
}

func (s *Server) quarantineResolve(w http.ResponseWriter, r *http.Request) {
	if err := s.mayMutate(r); err != nil {
		s.refuse(w, r, err)
		return
	}
	tr, err := s.config().Translator(s.definition.PhaseIDs())
	if err != nil {
		back(w, r, "/quarantine", err, "")
		return
	}
	res, err := adapter.ResolveQuarantine(r.Context(), s.st, tr, r.PostFormValue("event_id"), r.PostFormValue("action"),
		r.PostFormValue("actor"), r.PostFormValue("reason"), 30*time.Second)
	if err != nil {
		back(w, r, "/quarantine", err, "")
		return
	}
	back(w, r, "/quarantine", nil, fmt.Sprintf("Resolved %d quarantined changes (%s).", len(res.Resolved), r.PostFormValue("action")))
}

// --- Findings ---

func (s *Server) findingsView(r *http.Request) (any, error) {
	phase := dtetype.Phase(r.URL.Query().Get("phase"))
	if phase != "" && s.definition.Phase(phase) == nil {
		return nil, badInput{fmt.Errorf("phase %q is not in %s (phases: %v)", phase, s.definition.Key(), s.definition.PhaseIDs())}
	}
	return shadow.Findings(r.Context(), s.st, s.definition, phase, 10)
}
