package adapter

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/sync/errgroup"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// MirrorConfig configures a Mirror. Client, Definition, Store, TaskQueue and
// WorkflowIDPrefix are required.
type MirrorConfig struct {
	// Client reaches Temporal.
	Client client.Client
	// Definition starts new shadow workflows; running ones keep theirs.
	Definition *dtetype.Definition
	// Definitions are every definition loaded, which a definition
	// migration may move running workflows to.
	Definitions []*dtetype.Definition
	// Store is the bridge schema, for the per-report delivery watermark.
	Store *store.Store
	// TaskQueue is the shadow workers' queue; required.
	TaskQueue string
	// WorkflowIDPrefix prefixes workflow ids; required.
	WorkflowIDPrefix string
	// Concurrency bounds the reports signalled at once. Default: 16.
	Concurrency int
	// MaxSignalChanges caps the changes in one signal. Default: 200.
	MaxSignalChanges int
	// SignalTimeout bounds one SignalWithStart call. Default: 10s.
	SignalTimeout time.Duration
	// SearchAttributes says the server has the shadow's search attributes.
	SearchAttributes bool
	// Users, if set, resolves actors' roles for the role rule.
	Users *legacy.Users
	// Attributes, if set, reads reports' attributes (legacy.attributes):
	// every signal carries them as legacy holds them at delivery, and a
	// workflow starts with them.
	Attributes func(ctx context.Context, keys []dtetype.Key) (map[dtetype.Key]map[string]string, error)
	// Authority, if set, says which phases are mirrored and which reports
	// the new engine owns (package cutover implements it).
	Authority Authority
	// OnConflict handles legacy writes to phases and reports the new engine
	// owns; they are not delivered. It must succeed for the batch to be
	// acknowledged.
	OnConflict func(ctx context.Context, conflicts []dtetype.PhaseChange) error
	// Logger receives operational messages. Default: discard.
	Logger *slog.Logger
	// Metrics receives the mirror's metrics. Default: unregistered.
	Metrics *MirrorMetrics
}

// MirrorMetrics are the mirror's Prometheus metrics.
type MirrorMetrics struct {
	Signals      prometheus.Counter
	SignalSize   prometheus.Histogram
	Delivery     prometheus.Histogram
	Failures     prometheus.Counter
	Availability prometheus.Gauge
}

// NewMirrorMetrics creates the mirror metrics and registers them on reg
// (nil: not registered).
func NewMirrorMetrics(reg prometheus.Registerer) *MirrorMetrics {
	m := &MirrorMetrics{
		Signals: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_mirror_signals_total",
			Help: "SignalWithStart calls Temporal accepted."}),
		SignalSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_mirror_signal_changes",
			Help: "Changes carried per signal (one report's share of a batch).", Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200}}),
		Delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "dtebridge_mirror_delivery_seconds",
			Help: "Time to hand one capture batch to Temporal, all its reports.", Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12)}),
		Failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "dtebridge_mirror_retries_total",
			Help: "Batches Temporal did not accept in full; the reader redelivers each one, with backoff."}),
		Availability: prometheus.NewGauge(prometheus.GaugeOpts{Name: "dtebridge_mirror_temporal_available",
			Help: "0 if the mirror's last delivery to Temporal failed, else 1 (also before any delivery, and on standbys)."}),
	}
	m.Availability.Set(1)
	if reg != nil {
		reg.MustRegister(m.Signals, m.SignalSize, m.Delivery, m.Failures, m.Availability)
	}
	return m
}

// Mirror is the adapter's second half: a Consumer that delivers each batch
// to the shadow workflows, one SignalWithStart per report, reports in
// parallel and each report's changes in order. It acknowledges a batch only
// when Temporal accepted every signal; otherwise the reader redelivers it,
// and the workflows deduplicate by event id.
type Mirror struct {
	cfg MirrorConfig
}

// NewMirror returns a mirror.
func NewMirror(cfg MirrorConfig) *Mirror {
	cfg.Concurrency = cmp.Or(max(cfg.Concurrency, 0), 16)
	cfg.MaxSignalChanges = cmp.Or(max(cfg.MaxSignalChanges, 0), 200)
	cfg.SignalTimeout = cmp.Or(max(cfg.SignalTimeout, 0), 10*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMirrorMetrics(nil)
	}
	return &Mirror{cfg: cfg}
}

// Authority is cutover's view, as the mirror needs it.
type Authority interface {
	// Mirrored is false for a phase in legacy mode.
	Mirrored(p dtetype.Phase) bool
	// OnNew reports whether the new engine owns phase p of report k.
	OnNew(k dtetype.Key, p dtetype.Phase) bool
	// AsOf brings the view up to date with legacy transaction time t.
	AsOf(ctx context.Context, t time.Time) error
}

// route drops what the shadow must not apply: the bridge's own write-backs
// (the engine applied them already), phases in legacy mode, and legacy
// changes to rows of phases the new engine owns, which it returns as
// conflicts. Inserts and snapshots still flow: legacy creates reports' rows
// whatever the mode, and the engine learns of them that way.
func (m *Mirror) route(changes []dtetype.PhaseChange) (deliver, conflicts []dtetype.PhaseChange) {
	for _, c := range changes {
		switch {
		case c.Origin == dtetype.OriginBridge:
		case m.cfg.Authority == nil:
			deliver = append(deliver, c)
		case !m.cfg.Authority.Mirrored(c.Phase):
		case (c.Op == dtetype.OpUpdate || c.Op == dtetype.OpDelete) && m.cfg.Authority.OnNew(c.Key, c.Phase):
			conflicts = append(conflicts, c)
		default:
			deliver = append(deliver, c)
		}
	}
	return deliver, conflicts
}

// Deliver signals each report's changes to its shadow workflow.
func (m *Mirror) Deliver(ctx context.Context, b Batch) error {
	if m.cfg.Authority != nil && len(b.Changes) > 0 {
		var newest time.Time
		for _, c := range b.Changes {
			if c.TxTime.After(newest) {
				newest = c.TxTime
			}
		}
		if len(b.Resync) > 0 {
			// A re-drive's rows carry their own old times, but the re-drive
			// was requested after any mode change it serves (in the same
			// transaction): route them by the modes as they are now.
			newest = time.Now()
		}
		if err := m.cfg.Authority.AsOf(ctx, newest); err != nil {
			return fmt.Errorf("error refreshing cutover modes: %w", err)
		}
	}
	var conflicts []dtetype.PhaseChange
	b.Changes, conflicts = m.route(b.Changes)
	if len(conflicts) > 0 && m.cfg.OnConflict != nil {
		if err := m.cfg.OnConflict(ctx, conflicts); err != nil {
			return fmt.Errorf("error handling authority conflicts: %w", err)
		}
	}
	if len(b.Changes) == 0 && len(b.Resync) == 0 && len(b.History) == 0 {
		return nil
	}
	began := time.Now()
	if m.cfg.Users != nil {
		// A failing lookup leaves roles unknown, so the role rule is not
		// judged; Users reports it (health, a metric, one log line).
		_ = m.cfg.Users.Enrich(ctx, b.Changes)
	}
	var keys []dtetype.Key
	byKey := map[dtetype.Key][]dtetype.PhaseChange{}
	seqs := map[dtetype.Key]int64{}
	for _, c := range b.Changes {
		if _, ok := byKey[c.Key]; !ok {
			keys = append(keys, c.Key)
		}
		byKey[c.Key] = append(byKey[c.Key], c)
		seqs[c.Key] = max(seqs[c.Key], c.Seq)
	}
	for k, seq := range b.Resync {
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
			byKey[k] = nil
		}
		seqs[k] = max(seqs[k], seq)
	}
	history := map[dtetype.Key]bool{}
	for _, k := range b.History {
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
			byKey[k] = nil
		}
		history[k] = true
	}
	var attrs map[dtetype.Key]map[string]string
	if m.cfg.Attributes != nil {
		var err error
		if attrs, err = m.cfg.Attributes(ctx, keys); err != nil {
			m.cfg.Metrics.Failures.Inc()
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(m.cfg.Concurrency)
	var mu sync.Mutex
	var poisoned []Poisoned
	for _, k := range keys {
		changes := byKey[k]
		resync, judge, kattrs := b.Resync[k], history[k], attrs[k]
		var target *dtetype.Definition
		if key := b.Migrate[k]; key != "" && resync > 0 {
			if target = m.definition(key); target == nil {
				return fmt.Errorf("definition %s to migrate %s to is not loaded", key, k)
			}
		}
		g.Go(func() error {
			sent, err := m.signal(gctx, k, changes, resync, judge, kattrs, target)
			var p *Poisoned
			if errors.As(err, &p) {
				// Temporal refuses this change for good: the report's
				// changes from it on go to quarantine, every other report
				// goes on.
				mu.Lock()
				defer mu.Unlock()
				poisoned = append(poisoned, *p)
				seqs[k] = 0
				for _, c := range changes[:sent] {
					seqs[k] = max(seqs[k], c.Seq)
				}
				return nil
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		m.cfg.Metrics.Failures.Inc()
		m.cfg.Metrics.Availability.Set(0)
		return err
	}
	m.cfg.Metrics.Availability.Set(1)
	for k, seq := range seqs {
		if seq == 0 {
			delete(seqs, k)
		}
	}
	if err := m.cfg.Store.Watermark(ctx, seqs); err != nil {
		return err
	}
	m.cfg.Metrics.Delivery.Observe(time.Since(began).Seconds())
	if len(poisoned) > 0 {
		return &PoisonError{Poisoned: poisoned}
	}
	return nil
}

// definition returns the loaded definition with key id@version, or nil.
func (m *Mirror) definition(key string) *dtetype.Definition {
	for _, d := range m.cfg.Definitions {
		if d.Key() == key {
			return d
		}
	}
	if m.cfg.Definition.Key() == key {
		return m.cfg.Definition
	}
	return nil
}

// Poisoned is a change Temporal refuses for good, whatever the retries: it
// cannot be delivered, and its report's later changes wait behind it.
type Poisoned struct {
	Key     dtetype.Key
	EventID string
	// Reason is the quarantine reason (legacy.ReasonTooLarge) and Detail
	// what Temporal said.
	Reason, Detail string
}

func (p *Poisoned) Error() string { return p.Reason + ": " + p.Detail }

// PoisonError is a delivery in which every report was delivered except
// the changes listed, which Temporal refuses for good. The batch counts as
// delivered: the reader quarantines exactly those changes (and the later
// ones of their reports) and goes on.
type PoisonError struct {
	Poisoned []Poisoned
}

func (e *PoisonError) Error() string {
	parts := make([]string, len(e.Poisoned))
	for i, p := range e.Poisoned {
		parts[i] = fmt.Sprintf("%s (report %s): %s", p.EventID, p.Key, p.Detail)
	}
	return "changes Temporal refuses for good: " + strings.Join(parts, "; ")
}

// tooLarge reports whether Temporal refused a request for its size, which
// no retry fixes (unlike a rate limit, also ResourceExhausted).
func tooLarge(err error) bool {
	msg := err.Error()
	for _, s := range []string{"Blob data size exceeds limit", "larger than max", "exceeds size limit", "message too large", "payload size"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// signal hands one report's changes to its workflow, in order, starting the
// workflow (with its search attributes) if it does not run. Changes go in
// signals of at most MaxSignalChanges. A resync (resync > 0: the sequence
// number it is delivered under) replaces the workflow's rows with changes,
// which are all of the report's legacy rows; it is signalled even with no
// rows, so a report legacy no longer has is emptied. With history, the
// last signal asks the workflow to judge the history its rows record.
// attrs, if not nil, are the report's attributes: the workflow starts with
// them and the first signal carries them. With migrate, the last signal moves the workflow to that definition (and
// a workflow started by it starts on it).
func (m *Mirror) signal(ctx context.Context, k dtetype.Key, changes []dtetype.PhaseChange, resync int64, history bool, attrs map[string]string,
	migrate *dtetype.Definition) (sent int, err error) {
	if resync == 0 && len(changes) == 0 && !history {
		return 0, nil
	}
	def := m.cfg.Definition
	if migrate != nil {
		def = migrate
	}
	id := shadow.WorkflowID(m.cfg.WorkflowIDPrefix, k)
	opts := client.StartWorkflowOptions{ID: id, TaskQueue: m.cfg.TaskQueue,
		StaticSummary: fmt.Sprintf("Shadow of legacy report %d (cycle %d) under %s", k.ReportID, k.CycleID, def.Key()),
		StaticDetails: fmt.Sprintf("Follows the legacy rows of report %d in cycle %d, judges each change against %s and computes its own "+
			"schedule status. Its current details say where each phase stands and what reconcile last found; the dtebridge console's "+
			"page /reports/%d/%d shows legacy and the shadow side by side.", k.ReportID, k.CycleID, def.Key(), k.CycleID, k.ReportID)}
	if m.cfg.SearchAttributes {
		opts.TypedSearchAttributes = temporal.NewSearchAttributes(shadow.SACycle.ValueSet(k.CycleID), shadow.SAReport.ValueSet(k.ReportID),
			shadow.SADefinition.ValueSet(def.Key()), shadow.SAHasViolations.ValueSet(false))
	}
	in := shadow.Input{Key: k, Definition: *def, SearchAttributes: m.cfg.SearchAttributes, Attributes: attrs}
	first := true
	size := m.cfg.MaxSignalChanges
	for first || sent < len(changes) {
		n := min(len(changes)-sent, size)
		sig := shadow.Signal{Changes: changes[sent : sent+n], History: history && sent+n == len(changes)}
		if first {
			sig.Attributes = attrs
		}
		if sent+n == len(changes) {
			sig.Migrate = migrate
		}
		if resync > 0 {
			sig.Resync = first
			if sent+n == len(changes) {
				sig.Seq = resync // the last signal of a resync carries its watermark
			}
		}
		sctx, cancel := context.WithTimeout(ctx, m.cfg.SignalTimeout)
		_, err := m.cfg.Client.SignalWithStartWorkflow(sctx, id, shadow.SignalChanges, sig, opts, shadow.WorkflowName, in)
		cancel()
		switch {
		case err != nil && tooLarge(err) && n > 1:
			size = (n + 1) / 2 // too much at once: halve until one change is left
			continue
		case err != nil && tooLarge(err) && n == 1:
			return sent, &Poisoned{Key: k, EventID: changes[sent].EventID, Reason: legacy.ReasonTooLarge, Detail: err.Error()}
		case err != nil && tooLarge(err):
			return sent, &Poisoned{Key: k, Reason: legacy.ReasonTooLarge, Detail: err.Error()}
		case err != nil:
			return sent, fmt.Errorf("error signalling %s: %w", id, err)
		}
		m.cfg.Metrics.Signals.Inc()
		m.cfg.Metrics.SignalSize.Observe(float64(n))
		sent, first = sent+n, false
	}
	return sent, nil
}
