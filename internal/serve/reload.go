package serve

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/synapsedte/dtebridge/config"
	"github.com/synapsedte/dtebridge/internal/preflight"
	"github.com/synapsedte/dtebridge/legacy"
)

// config returns the configuration in force (a reload replaces it).
func (s *Server) config() *config.Config { return s.cfg.Load() }

// restartSettings are what a reload cannot change: they shape what runs
// (the table read, the schema, the workers, the listener). A reload that
// changes one is refused, keeping the running configuration.
func restartSettings(c *config.Config) map[string]any {
	l := c.Legacy
	return map[string]any{
		"legacy.table": l.Name, "legacy.key": l.Key, "legacy.columns": l.Columns, "legacy.users": l.Users,
		"legacy.attributes": l.Attributes, "capture": c.Capture, "definitions": c.Definitions, "shadow": c.Shadow,
		"http": c.HTTP, "temporal": c.Temporal, "cutover.conflict_policy": c.Cutover.ConflictPolicy,
		"cutover.command_timeout": c.Cutover.CommandTimeout,
	}
}

// Reload re-reads the configuration file and, once it validates and fits
// the database (the preflight check), puts the mapping (labels, ignored
// phases, how legacy writes), the expected-divergence rules, reconcile's
// settings and the gate in force: the reader translates its next batch
// with the new mapping, the write-back writes with it, and the next
// reconcile and gate use the new rules. On any error the running
// configuration stays, and the error says why. Reloads are logged and
// counted by outcome.
func (s *Server) Reload(ctx context.Context) (err error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	defer func() {
		outcome := "applied"
		if err != nil {
			outcome = "refused"
			s.log.Warn("configuration reload refused; the running configuration stays", "error", err)
		}
		s.reloads.WithLabelValues(outcome).Inc()
	}()
	old := s.config()
	path := old.Path()
	if path == "" || strings.HasPrefix(path, "examples/") {
		return fmt.Errorf("the configuration was not read from a file, so there is nothing to reload (serve --config FILE)")
	}
	next, err := config.Load(path)
	if err != nil {
		return err
	}
	was, now := restartSettings(old), restartSettings(next)
	var changed []string
	for k, v := range was {
		if !reflect.DeepEqual(v, now[k]) {
			changed = append(changed, k)
		}
	}
	if len(changed) > 0 {
		return fmt.Errorf("%s changed, which a reload cannot apply: restart serve for them (the mapping, reconcile and the gate reload)", strings.Join(slices.Sorted(slices.Values(changed)), ", "))
	}
	if _, def, err := next.LoadDefinitions(); err != nil {
		return err
	} else if def.Key() != s.definition.Key() {
		return fmt.Errorf("shadow.definition now selects %s, not %s: restart serve for that", def.Key(), s.definition.Key())
	}
	check, err := preflight.Run(ctx, preflight.Options{Config: next, Pool: s.opts.Pool, TokenGiven: s.opts.Token != ""})
	if err != nil {
		return err
	}
	if err := check.Err(); err != nil {
		return err
	}
	tr, err := next.Translator(s.definition.PhaseIDs())
	if err != nil {
		return err
	}
	writer, err := legacy.NewWriter(s.opts.Pool, &next.Legacy, nil)
	if err != nil {
		return err
	}
	s.reader.SetTranslator(tr)
	s.writeBack.SetWriter(writer)
	s.conflicts.SetLegacy(&next.Legacy)
	s.cutoverMetrics.SetGate(next.GateConfig())
	s.cfg.Store(next)
	s.log.Info("configuration reloaded", "config", path)
	return nil
}

// reload serves POST /api/v1/reload (bearer token).
func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		writeError(w, http.StatusUnauthorized, codeUnauthorized, "", "a valid bearer token is required (http.token_file)")
		return
	}
	if err := s.Reload(r.Context()); err != nil {
		writeError(w, http.StatusUnprocessableEntity, codeRejected, "", err.Error())
		return
	}
	writeJSON(w, map[string]any{"reloaded": true, "config": s.config().Path()})
}

func newReloadCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dtebridge_config_reloads_total",
		Help: "Configuration reloads (SIGHUP or POST /api/v1/reload), by outcome: applied or refused (the running configuration stays)."}, []string{"outcome"})
	c.WithLabelValues("applied")
	c.WithLabelValues("refused")
	reg.MustRegister(c)
	return c
}
