package reconcile

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// Scope limits a run. Zero fields do not limit it.
type Scope struct {
	Cycle *int64        `json:"cycle,omitempty"`
	Phase dtetype.Phase `json:"phase,omitempty"`
	// Since keeps the reports that changed on either side since then.
	Since *time.Time `json:"since,omitempty"`
	// Keys keeps these reports only (repair re-checks with it).
	Keys []dtetype.Key `json:"keys,omitempty"`
}

// Options configures a run; config resolves them (Config.ReconcileOptions).
// Store and Table are required.
type Options struct {
	// Store is the bridge schema.
	Store *store.Store
	// Table is the legacy table as configured.
	Table *legacy.Table
	Scope Scope
	// Logical, under log-based capture, is the capture's slot: a run
	// first waits until capture has written every legacy commit it sees.
	Logical *adapter.Logical
	// LagGrace is how long a report may be behind before it is stale
	// rather than in flight.
	LagGrace time.Duration
	// DateTolerance is the largest date difference that still agrees.
	DateTolerance time.Duration
	// Expected are the accepted differences.
	Expected []Rule
	// Exclude lists phases not to compare. Phases in legacy mode, which the
	// shadow does not follow, are always excluded: Run reads the modes in
	// its own snapshot.
	Exclude []dtetype.Phase
	// Persist records the run and tracks divergences across runs.
	Persist bool
	// Order is the definition's phase order, in which the report lists
	// phases (others after, by name).
	Order []dtetype.Phase
	// Progress, if set, is called as rows are compared.
	Progress func(done, total int64)
	// Now is the clock. Default: time.Now.
	Now func() time.Time
	// Incremental compares only the reports written on either side since
	// the snapshot of the latest full or incremental run (see
	// incremental.go). Without such a run to build on, or when what the
	// verdicts depend on beyond the rows changed since, the run is full.
	Incremental bool
	// Retention is how long the change log keeps acknowledged changes
	// (capture.retention): an incremental run whose base is older than
	// half of it runs in full. 0: not checked.
	Retention time.Duration
	// Snapshot, if set, is an exported snapshot (pg_export_snapshot) to
	// compare in, so that two runs judge the same state.
	Snapshot string
	// Spill is how many divergences a run holds in memory. A run that
	// finds more writes them, sorted, to temporary files, in chunks of
	// Spill, and reads them back merged (Report.All): its memory does not
	// grow with the number of divergences. Default: DefaultSpill.
	Spill int
}

// PhaseReport is one phase's figures.
type PhaseReport struct {
	Phase       dtetype.Phase    `json:"phase"`
	Compared    int64            `json:"compared"`
	Consistent  int64            `json:"consistent"`
	InFlight    int64            `json:"in_flight"`
	Consistency float64          `json:"consistency"`
	Unexpected  map[string]int64 `json:"unexpected"`
	Expected    int64            `json:"expected"`
}

// Report is the result of a run. Its JSON form is documented by
// ReportSchema and stays stable.
type Report struct {
	RunID       int64     `json:"run_id"`
	StartedAt   time.Time `json:"started_at"`
	FinishedAt  time.Time `json:"finished_at"`
	Scope       Scope     `json:"scope"`
	RowsScanned int64     `json:"rows_scanned"`
	// ChecksumsDiffer counts the reports whose checksums differ between
	// the sides: the only ones compared key by key.
	ChecksumsDiffer int64         `json:"checksums_differ"`
	Compared        int64         `json:"compared"`
	Consistent      int64         `json:"consistent"`
	InFlight        int64         `json:"in_flight"`
	Consistency     float64       `json:"consistency"`
	Phases          []PhaseReport `json:"phases"`
	// Counts are unexpected divergences by kind; ExpectedByRule, the
	// accepted ones by rule.
	Counts         map[string]int64 `json:"counts"`
	ExpectedByRule map[string]int64 `json:"expected_by_rule"`
	Unexpected     int64            `json:"unexpected"`
	Expected       int64            `json:"expected"`
	// New and Resolved compare with the previous persisted runs.
	New      int64 `json:"new"`
	Resolved int64 `json:"resolved"`
	// Divergences are the run's divergences in key order, when it found at
	// most Options.Spill of them; a run that found more keeps them in
	// temporary files and leaves this nil. All reads them either way, and
	// WriteJSON lists them all.
	Divergences []dtetype.Divergence `json:"divergences"`
	Repair      *RepairReport        `json:"repair,omitempty"`
	Deep        *DeepReport          `json:"deep,omitempty"`
	// Kind is full (every report), incremental (the reports written since
	// BaseRun, Touched of them) or scoped (Scope).
	Kind    string `json:"kind"`
	BaseRun int64  `json:"base_run,omitempty"`
	Touched *int64 `json:"touched,omitempty"`
	// FullBecause says why a run asked to be incremental ran in full.
	FullBecause string `json:"full_because,omitempty"`

	// inFlightReports were not looked at: their open divergences stay open.
	inFlightReports []dtetype.Key
	// keys, when not nil, are the only reports the run looked at.
	keys map[dtetype.Key]bool
	// snapshot and fingerprint are recorded for the next incremental run.
	snapshot, fingerprint string
	// spool holds the run's divergences: in memory until Divergences
	// takes them at the end of the run, or in files past Options.Spill.
	spool *spool
}

// All yields the run's divergences in key order, from memory or from the
// files of a run that spilled them. The error, if any, comes last.
func (r *Report) All() iter.Seq2[dtetype.Divergence, error] {
	if r.spool != nil && (r.spool.spilled() || r.spool.closed) {
		return r.spool.all()
	}
	return func(yield func(dtetype.Divergence, error) bool) {
		for _, d := range r.Divergences {
			if !yield(d, nil) {
				return
			}
		}
	}
}

// Spilled reports whether the run's divergences are in temporary files
// (Divergences is nil then).
func (r *Report) Spilled() bool { return r.spool != nil && r.spool.spilled() }

// Close removes the temporary files of a run that spilled its
// divergences; All then fails. A report no longer referenced has them
// removed too, when the garbage collector finds it. The divergences of a
// run that held them in memory stay.
func (r *Report) Close() error {
	if r.spool == nil {
		return nil
	}
	return r.spool.close()
}

// addLate adds a divergence found after the run (the deep check); settle
// must follow.
func (r *Report) addLate(d dtetype.Divergence) {
	if r.Spilled() {
		r.spool.add(d)
		return
	}
	r.Divergences = append(r.Divergences, d)
}

// settle puts late divergences in order: in the files of a spilled run,
// or among the others in memory.
func (r *Report) settle() error {
	if r.Spilled() {
		return r.spool.finish()
	}
	if r.spool != nil {
		slices.SortFunc(r.Divergences, func(a, b dtetype.Divergence) int { return r.spool.order(&a, &b) })
	}
	return nil
}

// Looked reports whether the run looked at k's report: in scope, not in
// flight.
func (r *Report) Looked(k dtetype.Key) bool {
	sc := r.Scope
	return (sc.Cycle == nil || *sc.Cycle == k.CycleID) && (r.keys == nil || r.keys[k]) &&
		sc.Phase == "" && sc.Since == nil && !slices.Contains(r.inFlightReports, k)
}

// key3 is one compared key.
type key3 struct {
	k dtetype.Key
	p dtetype.Phase
}

// sides are the compared values of one key.
type sides struct {
	State        dtetype.State
	Status       dtetype.Status
	PlannedStart *time.Time
	PlannedEnd   *time.Time
	ActualStart  *time.Time
	ActualEnd    *time.Time
	StartedBy    string
	CompletedBy  string
}

// Run compares every legacy key in scope with the shadow projection.
func Run(ctx context.Context, o Options) (_ *Report, err error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	for i := range o.Expected {
		if err := o.Expected[i].Validate(); err != nil {
			return nil, err
		}
	}
	if o.Incremental && (o.Scope.Cycle != nil || o.Scope.Phase != "" || o.Scope.Since != nil || o.Scope.Keys != nil) {
		return nil, fmt.Errorf("an incremental run looks at every report written since the last run: it takes no scope (cycle, phase, since, keys)")
	}
	r := &Report{StartedAt: o.Now(), Scope: o.Scope, Counts: map[string]int64{}, ExpectedByRule: map[string]int64{}, Kind: store.RunScoped}
	r.spool = newSpool(o.Spill, func(a, b *dtetype.Divergence) int { return divergenceOrder(o.Order, a, b) })
	defer func() {
		if err != nil {
			r.Close() // a failed run leaves no files behind
		}
	}()
	if o.Scope.Keys != nil {
		r.keys = keySet(o.Scope.Keys)
	}
	// The run's transaction and the checksums of the shadow's side and of
	// legacy's rows per phase, at once: a smaller pool would wait forever.
	if n := o.Store.Pool().Config().MaxConns; n < 3 {
		return nil, fmt.Errorf("reconcile needs 3 database connections at once, and the pool allows %d: raise pool_max_conns in --database-url", n)
	}
	conn, err := o.Store.Pool().Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("error connecting: %w", err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback(context.Background())
	if o.Snapshot != "" {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(o.Snapshot, "'", "")+"'"); err != nil {
			return nil, fmt.Errorf("error importing snapshot %s: %w", o.Snapshot, err)
		}
	}
	if _, err := tx.Exec(ctx, runSettings); err != nil {
		return nil, err
	}
	modes, err := o.Store.On(tx).Modes(ctx)
	if err != nil {
		return nil, err
	}
	for p, m := range modes {
		if m.Mode == dtetype.ModeLegacy && !slices.Contains(o.Exclude, p) {
			o.Exclude = append(o.Exclude, p)
		}
	}

	c := &run{o: &o, tx: tx, r: r, now: o.Now(), perPhase: map[dtetype.Phase]*PhaseReport{},
		marked: map[key3]bool{}, inFlight: map[key3]bool{}, quarantineListed: map[dtetype.Key]bool{}}
	if c.baseline, c.baselineAt, err = o.Store.On(tx).Baseline(ctx); err != nil {
		return nil, err
	}
	if err := c.plan(ctx); err != nil {
		return nil, err
	}
	types, err := legacy.TableColumns(ctx, tx, o.Table.Name)
	if err != nil {
		return nil, err
	}
	if c.q, err = newQueries(&o, types); err != nil {
		return nil, err
	}
	for _, step := range []func(context.Context) error{c.lag, c.quarantine, c.openConflicts, c.touched, c.checksums, c.compare, c.violations, c.listConflicts, c.attributes} {
		if err := step(ctx); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, err
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	if o.Persist {
		if err := persist(ctx, o.Store, r, o.Exclude, o.Scope.Keys); err != nil {
			return nil, err
		}
	}
	r.FinishedAt = o.Now()
	return r, nil
}

// runSettings are a run's transactions' settings. Times are compared and
// hashed in UTC. Sorting and hashing 10^6 keys wants more than the default
// work_mem, or PostgreSQL sorts on disk; this is the server's memory, for
// the transaction only. JIT compilation of the checksums' expressions cost
// more than it saved at 900,000 rows (its cost crosses jit_above_cost
// there), so it is off.
const runSettings = "SET LOCAL timezone = 'UTC'; SET LOCAL work_mem = '256MB'; SET LOCAL jit = off"

// run is the state of one reconcile run.
type run struct {
	o   *Options
	q   *queries
	tx  pgx.Tx
	r   *Report
	now time.Time

	// behindSince is, per report, since when it has had changes the shadow
	// has not applied; behindPhases narrows that to phases where known.
	behindSince map[dtetype.Key]time.Time
	quarantined map[dtetype.Key]string
	// conflicts are the open authority conflicts in scope: a legacy write
	// the new engine did not accept explains the differences it causes.
	conflicts  map[key3]store.OpenConflict
	legacyRows map[dtetype.Phase]int64
	perPhase   map[dtetype.Phase]*PhaseReport
	// marked are keys of quarantined reports that differ without a
	// divergence of their own: the report's one quarantined divergence
	// stands for them.
	marked   map[key3]bool
	inFlight map[key3]bool
	// quarantineListed says, per quarantined report, whether its one
	// quarantined divergence is unexpected.
	quarantineListed map[dtetype.Key]bool
	// filtered: the comparison looks at the reports whose checksums
	// differ, not at every report.
	filtered bool
	dupExtra map[dtetype.Phase]int64
	// baseline holds the phases with duplicate rows at install.
	baseline   map[dtetype.Key]map[dtetype.Phase]int
	baselineAt *time.Time
	orphans    map[dtetype.Phase]int64
	// base is the run an incremental run builds on.
	base *store.IncrementalBase
}

func (c *run) phase(p dtetype.Phase) *PhaseReport {
	pr := c.perPhase[p]
	if pr == nil {
		pr = &PhaseReport{Phase: p, Unexpected: map[string]int64{}}
		c.perPhase[p] = pr
	}
	return pr
}

// lag finds the reports the shadow is behind on: changes capture has not
// handed to the mirror yet, and changes handed over but not yet applied.
func (c *run) lag(ctx context.Context) error {
	c.behindSince = map[dtetype.Key]time.Time{}
	add := func(k dtetype.Key, since time.Time) {
		if old, ok := c.behindSince[k]; !ok || since.Before(old) {
			c.behindSince[k] = since
		}
	}
	st := c.o.Store.On(c.tx)
	pendingIn := st
	if c.o.Logical != nil {
		// Under log-based capture a legacy commit reaches the change log
		// moments after it is visible: wait until the change log holds
		// every commit this run's snapshot sees, then look for pending
		// changes in a snapshot that sees what capture wrote meanwhile.
		var wal string
		if err := c.tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&wal); err != nil {
			return err
		}
		if err := adapter.WaitLogged(ctx, c.o.Store, c.o.Logical, wal, max(c.o.LagGrace, 10*time.Second)); err != nil {
			return fmt.Errorf("reconcile cannot judge what capture has not seen: %w", err)
		}
		pendingIn = c.o.Store
	}
	pending, err := pendingIn.PendingByReport(ctx, store.MirrorConsumer, c.o.Table.Columns.Cycle, c.o.Table.Columns.Report)
	if err != nil {
		return err
	}
	for k, since := range pending {
		add(k, since)
	}
	behind, err := st.BehindReports(ctx)
	if err != nil {
		return err
	}
	for _, b := range behind {
		add(b.Key, b.Since)
	}
	// Reports behind within the grace period are in flight, every phase.
	var cycles, reports []int64
	for k, since := range c.behindSince {
		if c.now.Sub(since) <= c.o.LagGrace {
			cycles, reports = append(cycles, k.CycleID), append(reports, k.ReportID)
		}
	}
	if len(cycles) == 0 {
		return nil
	}
	args := pgx.NamedArgs{"cycles": cycles, "reports": reports}
	for k, v := range c.q.args {
		args[k] = v
	}
	rows, err := c.tx.Query(ctx, c.q.phasesOf, args)
	if err != nil {
		return fmt.Errorf("error reading in-flight reports: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k dtetype.Key
		var p string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &p); err != nil {
			return err
		}
		c.inFlight[key3{k, dtetype.Phase(p)}] = true
	}
	return rows.Err()
}

func (c *run) quarantine(ctx context.Context) error {
	var err error
	c.quarantined, err = c.o.Store.On(c.tx).QuarantinedReports(ctx)
	return err
}

// attributes compares the report attributes each shadow judges by with
// legacy's (legacy.attributes), report by report.
func (c *run) attributes(ctx context.Context) error {
	if len(c.o.Table.Attributes) == 0 {
		return nil
	}
	legacyAttrs, err := c.legacyAttributes(ctx)
	if err != nil {
		return err
	}
	shadowAttrs, err := c.o.Store.On(c.tx).ShadowAttributes(ctx)
	if err != nil {
		return err
	}
	keys := slices.Collect(maps.Keys(legacyAttrs))
	for k := range shadowAttrs {
		if _, ok := legacyAttrs[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, keyOrder)
	sc := c.o.Scope
	for _, k := range keys {
		l, s := legacyAttrs[k], shadowAttrs[k]
		if maps.Equal(l, s) || (sc.Cycle != nil && k.CycleID != *sc.Cycle) || !c.inKeys(k) {
			continue
		}
		if behind, _, _ := c.behind(k); behind {
			continue // the shadow has not caught up: in flight, not divergent
		}
		d := dtetype.Divergence{Key: k, Phase: "*", Kind: dtetype.KindAttributesMismatch, Legacy: renderAttrs(l), Shadow: renderAttrs(s),
			Detail: "the shadow judges its when conditions by attributes legacy no longer holds"}
		c.addReportLevel(d)
	}
	return nil
}

// legacyAttributes reads legacy's attributes of the reports in scope: of
// the run's reports only when it is limited to some, else of every report.
func (c *run) legacyAttributes(ctx context.Context) (map[dtetype.Key]map[string]string, error) {
	if c.r.keys != nil {
		return c.o.Table.ReadAttributes(ctx, c.tx, slices.Collect(maps.Keys(c.r.keys)))
	}
	rows, err := c.tx.Query(ctx, c.o.Table.AllAttributesSQL())
	if err != nil {
		return nil, fmt.Errorf("error reading report attributes (legacy.attributes): %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Key]map[string]string{}
	for rows.Next() {
		var k dtetype.Key
		var a map[string]string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &a); err != nil {
			return nil, err
		}
		out[k] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error reading report attributes (legacy.attributes): %w", err)
	}
	return out, nil
}

// inKeys reports whether k is among the reports the run is limited to (or
// the run is not limited to some).
func (c *run) inKeys(k dtetype.Key) bool { return c.r.keys == nil || c.r.keys[k] }

func keySet(keys []dtetype.Key) map[dtetype.Key]bool {
	m := make(map[dtetype.Key]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// addReportLevel records a divergence of a whole report (phase "*"): it
// counts against no phase's consistency.
func (c *run) addReportLevel(d dtetype.Divergence) {
	expect(c.o.Expected, &d)
	c.r.spool.add(d)
}

// count counts a divergence the run keeps, in its phase's figures too.
func (c *run) count(d *dtetype.Divergence) {
	c.r.tally(d)
	if pr := c.phase(d.Phase); d.Expected {
		pr.Expected++
	} else {
		pr.Unexpected[d.Kind]++
	}
}

// tally counts a divergence in the report's totals.
func (r *Report) tally(d *dtetype.Divergence) {
	if d.Expected {
		r.Expected++
		r.ExpectedByRule[d.Rule]++
	} else {
		r.Unexpected++
		r.Counts[d.Kind]++
	}
}

// expect marks d expected by the first rule that accepts it.
func expect(rules []Rule, d *dtetype.Divergence) {
	for i := range rules {
		if rules[i].Matches(d) {
			d.Rule, d.Expected = rules[i].Name, true
			return
		}
	}
}

func renderAttrs(a map[string]string) string {
	if len(a) == 0 {
		return "none"
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(a)) {
		parts = append(parts, n+"="+a[n])
	}
	return strings.Join(parts, " ")
}

// openConflicts reads the open authority conflicts in scope.
func (c *run) openConflicts(ctx context.Context) error {
	open, err := c.o.Store.On(c.tx).OpenConflicts(ctx)
	if err != nil {
		return err
	}
	c.conflicts = map[key3]store.OpenConflict{}
	sc := c.o.Scope
	for _, oc := range open {
		if (sc.Cycle != nil && oc.Key.CycleID != *sc.Cycle) || (sc.Phase != "" && oc.Phase != sc.Phase) || !c.inKeys(oc.Key) {
			continue
		}
		c.conflicts[key3{oc.Key, oc.Phase}] = oc
	}
	return nil
}

// listConflicts reports every open authority conflict, also those whose
// legacy write happens to agree with the engine: each is open until a
// revert or a rollback resolves it.
func (c *run) listConflicts(context.Context) error {
	for _, k3 := range slices.SortedFunc(maps.Keys(c.conflicts), func(a, b key3) int {
		if a.k != b.k {
			return keyOrder(a.k, b.k)
		}
		return strings.Compare(string(a.p), string(b.p))
	}) {
		c.add(k3, conflictDivergence(k3, c.conflicts[k3]))
	}
	return nil
}

// keyOrder orders keys by cycle, then report.
func keyOrder(a, b dtetype.Key) int {
	switch {
	case a.CycleID < b.CycleID || (a.CycleID == b.CycleID && a.ReportID < b.ReportID):
		return -1
	case a == b:
		return 0
	}
	return 1
}

func conflictDivergence(k3 key3, oc store.OpenConflict) dtetype.Divergence {
	return dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindAuthorityConflict, Legacy: oc.LegacyValue, Shadow: "engine is authoritative",
		Detail: oc.Detail}
}

// checksums narrows the comparison down to the reports that differ, as
// data-diff's checksums do: per report, its rows and the sum of their
// hashes, computed on both sides in parallel from one exported snapshot
// and merged in key order as they stream (memory does not grow with the
// reports). The projection stores each row's hash (row_hash); legacy's
// are computed in the query. Only the reports whose checksums differ are
// compared key by key, through the tables' key indexes, so a 1% divergent
// table no longer sorts and joins every row. A per-report checksum costs
// one pass; a first level per (cycle, phase) saved nothing where
// divergences are spread (every group differs, and the second level read
// every row again).
func (c *run) checksums(ctx context.Context) error {
	var snap string
	if err := c.tx.QueryRow(ctx, "SELECT pg_export_snapshot()").Scan(&snap); err != nil {
		return fmt.Errorf("error sharing the snapshot: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	legacy, shadowSide := make(chan []reportSum, 4), make(chan []reportSum, 4)
	// A query that fails stops the others: the merge then ends early. A
	// side's stream closes however it ends, even before its query started.
	// Legacy's error comes first: when the run's transaction fails, the
	// others fail to import its snapshot.
	var sideErrs [3]error
	var wg sync.WaitGroup
	side := func(i int, what string, out chan []reportSum, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			if out != nil {
				close(out)
			}
			if sideErrs[i] = wrapErr(what, err); err != nil {
				cancel()
			}
		}()
	}
	// Legacy's rows per phase, for the compared figures, are counted on a
	// third connection meanwhile; a run limited to some reports counts them
	// in the pass that sums them.
	legacyRows := map[dtetype.Phase]int64{}
	perPhase := func(label string, n int64) { legacyRows[c.phaseOf(label)] += n }
	legacyQuery, legacyPerPhase := c.q.ReportSumsLegacy, func(string, int64) {}
	if c.o.Scope.Keys != nil {
		legacyQuery, legacyPerPhase = c.q.ReportSumsLegacyKeyed, perPhase
	} else {
		side(2, "error counting legacy rows", nil, func() error {
			return c.onSnapshot(ctx, snap, func(tx pgx.Tx) error {
				rows, err := tx.Query(ctx, c.q.PhaseRows, c.q.args)
				if err != nil {
					return err
				}
				defer rows.Close()
				for rows.Next() {
					var label string
					var n int64
					if err := rows.Scan(&label, &n); err != nil {
						return err
					}
					perPhase(label, n)
				}
				return rows.Err()
			})
		})
	}
	side(0, "error summing legacy rows", legacy, func() error {
		return streamSums(ctx, c.tx, legacyQuery, c.q.args, legacy, legacyPerPhase)
	})
	side(1, "error summing the shadow projection", shadowSide, func() error {
		return c.onSnapshot(ctx, snap, func(tx pgx.Tx) error {
			return streamSums(ctx, tx, c.q.ReportSumsShadow, c.q.args, shadowSide, func(string, int64) {})
		})
	})
	var kc, kr []int64
	reports := 0
	l, s := newSumReader(legacy), newSumReader(shadowSide)
	for l.ok || s.ok {
		reports++
		switch o := compareSums(l, s); {
		case o < 0:
			kc, kr = append(kc, l.cur.k.CycleID), append(kr, l.cur.k.ReportID)
			l.next()
		case o > 0:
			kc, kr = append(kc, s.cur.k.CycleID), append(kr, s.cur.k.ReportID)
			s.next()
		default:
			if l.cur.s != s.cur.s {
				kc, kr = append(kc, l.cur.k.CycleID), append(kr, l.cur.k.ReportID)
			}
			l.next()
			s.next()
		}
	}
	wg.Wait()
	var first error
	for _, err := range sideErrs {
		if err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if first != nil {
		return first
	}
	c.legacyRows = legacyRows
	for _, n := range legacyRows {
		c.r.RowsScanned += n
	}
	c.r.ChecksumsDiffer = int64(len(kc))
	// Most reports differ: comparing everything is cheaper than looking
	// each one up. The list of those that differ (16 bytes a report) is
	// what a run holds that grows with the divergences.
	c.filtered = len(kc)*2 <= reports
	if c.filtered {
		c.q.args["group_cycles"], c.q.args["group_reports"] = kc, kr
	}
	return nil
}

// phaseOf is the phase a legacy label maps to, as the comparison's SQL
// maps it: a label the mapping lacks stays itself, marked with "?".
func (c *run) phaseOf(label string) dtetype.Phase {
	if p, ok := c.o.Table.Phases.Get(label); ok {
		return p
	}
	return dtetype.Phase("?" + label)
}

// sum is a checksum: rows and the exact sum of their hashes, in decimal.
type sum struct {
	rows int64
	hash string
}

// reportSum is one report's checksum.
type reportSum struct {
	k dtetype.Key
	s sum
}

// streamSums sends what the checksums query yields to out, in batches; a
// row of rows per phase label (its key NULL) goes to perPhase.
func streamSums(ctx context.Context, q legacy.Querier, query string, args pgx.NamedArgs, out chan<- []reportSum, perPhase func(label string, n int64)) error {
	rows, err := q.Query(ctx, query, args)
	if err != nil {
		return err
	}
	defer rows.Close()
	batch := make([]reportSum, 0, 1024)
	for rows.Next() {
		var cycle, report *int64
		var label *string
		var r reportSum
		if err := rows.Scan(&cycle, &report, &r.s.rows, &r.s.hash, &label); err != nil {
			return err
		}
		if cycle == nil || report == nil {
			if label == nil {
				return fmt.Errorf("a checksum without a report")
			}
			perPhase(*label, r.s.rows)
			continue
		}
		r.k = dtetype.Key{CycleID: *cycle, ReportID: *report}
		if batch = append(batch, r); len(batch) == cap(batch) {
			select {
			case out <- batch:
			case <-ctx.Done():
				return ctx.Err()
			}
			batch = make([]reportSum, 0, 1024)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		select {
		case out <- batch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// sumReader reads one side's checksums in key order.
type sumReader struct {
	in    <-chan []reportSum
	batch []reportSum
	cur   reportSum
	ok    bool
}

func newSumReader(in <-chan []reportSum) *sumReader {
	r := &sumReader{in: in}
	r.next()
	return r
}

func (r *sumReader) next() {
	for len(r.batch) == 0 {
		b, open := <-r.in
		if !open {
			r.ok = false
			return
		}
		r.batch = b
	}
	r.cur, r.batch, r.ok = r.batch[0], r.batch[1:], true
}

// compareSums orders the two readers' current keys; a reader at its end
// comes last.
func compareSums(l, s *sumReader) int {
	switch {
	case !s.ok:
		return -1
	case !l.ok:
		return 1
	}
	return keyOrder(l.cur.k, s.cur.k)
}

// wrapErr says what failed; a side stopped because the other failed keeps
// its context.Canceled.
func wrapErr(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// onSnapshot runs fn in a read-only transaction on a second connection, in
// the snapshot snap exported by the run's transaction.
func (c *run) onSnapshot(ctx context.Context, snap string, fn func(pgx.Tx) error) error {
	conn, err := c.o.Store.Pool().Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+strings.ReplaceAll(snap, "'", "")+"'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, runSettings); err != nil {
			return err
		}
		return fn(tx)
	})
}

// compare streams the keys that differ, in key order, through a cursor.
func (c *run) compare(ctx context.Context) error {
	c.dupExtra, c.orphans = map[dtetype.Phase]int64{}, map[dtetype.Phase]int64{}
	if c.filtered && c.r.ChecksumsDiffer == 0 {
		if c.o.Progress != nil {
			c.o.Progress(1, 1)
		}
		return nil // every checksum agrees
	}
	var total int64
	for _, n := range c.legacyRows {
		total += n
	}
	query := c.q.Compare
	if c.filtered {
		query = c.q.CompareGroups
	}
	if _, err := c.tx.Exec(ctx, "DECLARE reconcile NO SCROLL CURSOR FOR "+query, c.q.args); err != nil {
		return fmt.Errorf("error comparing: %w", err)
	}
	var done int64
	for {
		rows, err := c.tx.Query(ctx, "FETCH 5000 FROM reconcile")
		if err != nil {
			return fmt.Errorf("error comparing: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			var k dtetype.Key
			var phase string
			var hasLegacy, hasShadow bool
			var nrows int64
			var l, s sides
			var lState, lStatus, sState, sStatus *string
			var lx legacyRow
			if err := rows.Scan(&k.CycleID, &k.ReportID, &phase, &hasLegacy, &hasShadow, &nrows,
				&lState, &lStatus, &l.PlannedStart, &l.PlannedEnd, &l.ActualStart, &l.ActualEnd, &l.StartedBy, &l.CompletedBy,
				&sState, &sStatus, &s.PlannedStart, &s.PlannedEnd, &s.ActualStart, &s.ActualEnd, &s.StartedBy, &s.CompletedBy,
				&lx.UpdatedAt, &lx.BaseState, &lx.StatusOverridden); err != nil {
				rows.Close()
				return err
			}
			l.State, l.Status = dtetype.State(deref(lState)), dtetype.Status(deref(lStatus))
			s.State, s.Status = dtetype.State(deref(sState)), dtetype.Status(deref(sStatus))
			lx.Rows = nrows
			c.classify(key3{k, dtetype.Phase(phase)}, hasLegacy, hasShadow, &lx, &l, &s)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("error comparing: %w", err)
		}
		done += int64(n)
		if c.o.Progress != nil {
			c.o.Progress(min(done, total), total)
		}
		if n == 0 {
			break
		}
	}
	if c.o.Progress != nil {
		c.o.Progress(total, total)
	}
	_, err := c.tx.Exec(ctx, "CLOSE reconcile")
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// behind reports whether key's report is behind, and whether for longer
// than the grace period.
func (c *run) behind(k dtetype.Key) (behind, stale bool, since time.Time) {
	since, behind = c.behindSince[k]
	return behind, behind && c.now.Sub(since) > c.o.LagGrace, since
}

// add records a divergence, unless the key is in flight or its phase is
// excluded.
func (c *run) add(k3 key3, d dtetype.Divergence) {
	if c.inFlight[k3] || slices.Contains(c.o.Exclude, k3.p) {
		return
	}
	// A report behind the stream, or waiting behind its quarantined changes,
	// explains the differences found by comparing its rows: they are
	// reported as that, once per report. Facts the shadow recorded (rule
	// violations) and facts of legacy (duplicate rows) keep their own kind.
	if slices.Contains(comparisonKinds, d.Kind) {
		behind, stale, since := c.behind(k3.k)
		reasons, quarantined := c.quarantined[k3.k]
		oc, conflict := c.conflicts[k3]
		switch {
		case conflict:
			// The legacy write the engine did not accept is the cause: one
			// authority_conflict, not the mismatches it makes.
			d = conflictDivergence(k3, oc)
		case behind && stale:
			d = dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindStale, Legacy: d.Legacy, Shadow: d.Shadow,
				Detail: fmt.Sprintf("the shadow has been behind since %s, longer than the %s grace", since.Format(time.RFC3339), c.o.LagGrace)}
		case quarantined:
			if listed, ok := c.quarantineListed[k3.k]; ok {
				if listed {
					c.marked[k3] = true // counted, listed once per report
				}
				return
			}
			d.Kind, d.Detail = dtetype.KindQuarantined, "the report has changes in quarantine ("+reasons+"); the shadow waits behind them"
		}
	}
	// One divergence per key and kind: the spool keeps the first.
	expect(c.o.Expected, &d)
	if d.Kind == dtetype.KindQuarantined {
		c.quarantineListed[k3.k] = !d.Expected
	}
	c.r.spool.add(d)
}

// comparisonKinds are found by comparing legacy's rows with the shadow's.
var comparisonKinds = []string{dtetype.KindMissingInShadow, dtetype.KindOrphanInShadow, dtetype.KindStateMismatch,
	dtetype.KindStatusMismatch, dtetype.KindDatesMismatch, dtetype.KindActorMismatch}

func (c *run) classify(k3 key3, hasLegacy, hasShadow bool, lx *legacyRow, l, s *sides) {
	if nrows := lx.Rows; nrows > 1 {
		c.dupExtra[k3.p] += nrows - 1
		// Duplicates legacy held at install are old and known; more rows
		// than that were added since, and are reported apart.
		if base := int64(c.baseline[k3.k][k3.p]); nrows <= base {
			c.add(k3, dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindDuplicateRows, Legacy: fmt.Sprintf("%d rows", nrows), Shadow: "follows the oldest",
				Detail: fmt.Sprintf("legacy has %d rows for this phase, as it had when the bridge was installed; the application and the shadow use the oldest", nrows)})
		} else {
			was := fmt.Sprintf("%d when the bridge was installed", max(base, 1))
			if c.baselineAt == nil {
				was = "no baseline was recorded (install the bridge with this version to record one)"
			}
			c.add(k3, dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindDuplicateRowsAdded, Legacy: fmt.Sprintf("%d rows", nrows), Shadow: "follows the oldest",
				Detail: fmt.Sprintf("legacy has %d rows for this phase, %s: a duplicate row was added since; the application and the shadow use the oldest", nrows, was)})
		}
	}
	switch {
	case !hasShadow:
		c.add(k3, dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindMissingInShadow, Legacy: string(l.State), Shadow: "-",
			Detail: "legacy has this phase; the shadow projection does not"})
		return
	case !hasLegacy:
		c.orphans[k3.p]++
		c.add(k3, dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindOrphanInShadow, Legacy: "-", Shadow: string(s.State),
			Detail: "the shadow projection has this phase; legacy has no row for it"})
		return
	}
	// One changed row is one divergence, whatever it changed: the first
	// kind it shows (state, status, dates, actors) names it, Also the
	// others, Fields every field that differs.
	var found []dtetype.Divergence
	if l.State != s.State {
		found = append(found, dtetype.Divergence{Kind: dtetype.KindStateMismatch, Legacy: string(l.State), Shadow: string(s.State)})
	}
	if l.Status != s.Status {
		if d := legacyStatusInconsistent(k3, lx, l); d != nil {
			c.add(k3, *d) // legacy's own data, reported apart
		} else {
			found = append(found, dtetype.Divergence{Kind: dtetype.KindStatusMismatch, Legacy: string(l.Status), Shadow: string(s.Status)})
		}
	}
	if !sameTime(l.PlannedStart, s.PlannedStart, c.o.DateTolerance) || !sameTime(l.PlannedEnd, s.PlannedEnd, c.o.DateTolerance) ||
		!sameTime(l.ActualStart, s.ActualStart, c.o.DateTolerance) || !sameTime(l.ActualEnd, s.ActualEnd, c.o.DateTolerance) {
		found = append(found, dtetype.Divergence{Kind: dtetype.KindDatesMismatch, Legacy: dates(l), Shadow: dates(s)})
	}
	if l.StartedBy != s.StartedBy || l.CompletedBy != s.CompletedBy {
		found = append(found, dtetype.Divergence{Kind: dtetype.KindActorMismatch, Legacy: actors(l), Shadow: actors(s)})
	}
	if len(found) == 0 {
		return
	}
	d := found[0]
	d.Key, d.Phase = k3.k, k3.p
	for _, f := range found[1:] {
		d.Also = append(d.Also, f.Kind)
	}
	d.Detail, d.Fields = fieldDiffNames(l, s)
	c.add(k3, d)
}

// legacyRow is what reconcile reads of the legacy row beyond the compared
// fields: how many rows the phase has, and what legacy's own schedule rule
// needs.
type legacyRow struct {
	Rows             int64
	UpdatedAt        *time.Time
	BaseState        dtetype.State
	StatusOverridden bool
}

// legacyStatusInconsistent returns the divergence for a schedule status
// legacy stored against its own rule: no override explains it, and the
// rule, applied to the row's own dates when legacy last wrote it, gives
// another status. Nil when the stored status is what the rule gives (or
// the rule cannot be applied).
func legacyStatusInconsistent(k3 key3, lx *legacyRow, l *sides) *dtetype.Divergence {
	if lx.StatusOverridden || lx.UpdatedAt == nil || lx.BaseState == "" || !l.Status.Valid() {
		return nil
	}
	var end time.Time
	if l.PlannedEnd != nil {
		end = *l.PlannedEnd
	}
	rule := dtetype.LegacyScheduleStatus(*lx.UpdatedAt, lx.BaseState == dtetype.StateCompleted, end)
	if rule == l.Status {
		return nil
	}
	planned := "none"
	if l.PlannedEnd != nil {
		planned = dtetype.FormatTime(*l.PlannedEnd)
	}
	return &dtetype.Divergence{Key: k3.k, Phase: k3.p, Kind: dtetype.KindLegacyStatusInconsistent, Legacy: string(l.Status), Shadow: string(rule),
		Detail: fmt.Sprintf("legacy stored %s with no override, but its own schedule rule gives %s: state %s, planned end %s, row last written %s; "+
			"the shadow follows the rule, and repair cannot change what legacy stored", l.Status, rule, lx.BaseState, planned, dtetype.FormatTime(*lx.UpdatedAt))}
}

func sameTime(a, b *time.Time, tol time.Duration) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	d := a.Sub(*b)
	return d <= tol && d >= -tol
}

func dates(s *sides) string {
	f := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return dtetype.FormatTime(*t)
	}
	return fmt.Sprintf("planned %s..%s actual %s..%s", f(s.PlannedStart), f(s.PlannedEnd), f(s.ActualStart), f(s.ActualEnd))
}

func actors(s *sides) string {
	return fmt.Sprintf("started_by %s completed_by %s", orDash(s.StartedBy), orDash(s.CompletedBy))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fieldDiffNames renders the per-field differences of a row, and names
// the fields. It runs once per divergent row, so it walks the struct's
// fields itself: go-cmp, which projectionDiff uses, calls time.Time's
// Equal by reflection on a goroutine of its own, and took a sixth of a
// run with 100,000 divergences.
func fieldDiffNames(l, s *sides) (string, []string) {
	var diffs, names []string
	vl, vs := reflect.ValueOf(l).Elem(), reflect.ValueOf(s).Elem()
	for i := range vl.NumField() {
		a, b := vl.Field(i), vs.Field(i)
		if sameField(a, b) {
			continue
		}
		name := vl.Type().Field(i).Name
		diffs = append(diffs, fmt.Sprintf("%s: legacy %s, shadow %s", name, shown(a), shown(b)))
		names = append(names, name)
	}
	if len(diffs) == 0 {
		return "no field differs", nil
	}
	return strings.Join(diffs, "; "), names
}

// sameField compares one field of sides: times by instant, the rest (all
// strings) by value.
func sameField(a, b reflect.Value) bool {
	if a.Kind() == reflect.Pointer {
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return a.Interface().(*time.Time).Equal(*b.Interface().(*time.Time))
	}
	return a.String() == b.String()
}

// fieldDiff renders the per-field differences.
func fieldDiff(l, s *sides) string {
	out, _ := fieldDiffNames(l, s)
	return out
}

// projectionDiff lists the fields in which a workflow's phase (as it would
// be projected) and its stored projection differ, times at the
// microsecond PostgreSQL keeps.
func projectionDiff(workflow, projection store.ProjectedPhase) (out string) {
	defer func() {
		if r := recover(); r != nil {
			out = fmt.Sprintf("(field diff unavailable: %v)", r)
		}
	}()
	r := fieldReporter{a: "workflow", b: "projection"}
	micro := cmp.Comparer(func(a, b time.Time) bool { return a.Truncate(time.Microsecond).Equal(b.Truncate(time.Microsecond)) })
	if cmp.Equal(workflow, projection, micro, cmp.Reporter(&r)) {
		return ""
	}
	return strings.Join(r.diffs, "; ")
}

// fieldReporter collects go-cmp's differences as "Field: a X, b Y".
type fieldReporter struct {
	a, b  string
	path  cmp.Path
	diffs []string
	names []string
}

func (r *fieldReporter) PushStep(ps cmp.PathStep) { r.path = append(r.path, ps) }
func (r *fieldReporter) PopStep()                 { r.path = r.path[:len(r.path)-1] }

func (r *fieldReporter) Report(rs cmp.Result) {
	if rs.Equal() {
		return
	}
	vl, vs := r.path.Last().Values()
	name := strings.TrimLeft(r.path.String(), "*")
	r.diffs = append(r.diffs, fmt.Sprintf("%s: %s %s, %s %s", name, r.a, shown(vl), r.b, shown(vs)))
	r.names = append(r.names, name)
}

// shown renders one side's value of a field.
func shown(v reflect.Value) string {
	if !v.IsValid() || ((v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) && v.IsNil()) {
		return "none"
	}
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	if t, ok := v.Interface().(time.Time); ok {
		return dtetype.FormatTime(t)
	}
	if v.Kind() == reflect.String {
		if v.String() == "" {
			return "none"
		}
		return strconv.Quote(v.String())
	}
	return fmt.Sprint(v.Interface())
}

// violations carries the shadow's recorded rule violations.
func (c *run) violations(ctx context.Context) error {
	rows, err := c.tx.Query(ctx, c.q.Violations, c.q.args)
	if err != nil {
		return fmt.Errorf("error reading rule violations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k dtetype.Key
		var phase, rule, detail, event string
		if err := rows.Scan(&k.CycleID, &k.ReportID, &phase, &rule, &detail, &event); err != nil {
			return err
		}
		c.add(key3{k, dtetype.Phase(phase)}, dtetype.Divergence{Key: k, Phase: dtetype.Phase(phase), Kind: dtetype.KindRuleViolation, Legacy: "allowed", Shadow: rule,
			Detail: rule + ": " + detail + " (change " + event + ")"})
	}
	return rows.Err()
}

// finish computes the figures, counting the divergences as they are read
// back in order, without repeats: a key is divergent when one of its own
// is unexpected (or marked so).
func (c *run) finish() error {
	r := c.r
	if err := r.spool.finish(); err != nil {
		return err
	}
	divergent := map[dtetype.Phase]int64{}
	var cur key3
	curDivergent, started := false, false
	flush := func() {
		if started && (curDivergent || c.marked[cur]) {
			divergent[cur.p]++
		}
		delete(c.marked, cur)
	}
	for d, err := range r.spool.all() {
		if err != nil {
			return err
		}
		c.count(&d)
		if k3 := (key3{d.Key, d.Phase}); !started || k3 != cur {
			flush()
			cur, curDivergent, started = k3, false, true
		}
		curDivergent = curDivergent || (!d.Expected && d.Phase != "*")
	}
	flush()
	for k3 := range c.marked {
		divergent[k3.p]++
	}
	inFlight := map[dtetype.Phase]int64{}
	for k3 := range c.inFlight {
		inFlight[k3.p]++
	}
	phases := map[dtetype.Phase]bool{}
	for _, m := range []map[dtetype.Phase]int64{c.legacyRows, c.orphans, divergent, inFlight} {
		for p := range m {
			phases[p] = true
		}
	}
	pos := func(p dtetype.Phase) int { return phasePos(c.o.Order, p) }
	for _, p := range slices.SortedFunc(maps.Keys(phases), func(a, b dtetype.Phase) int {
		if pa, pb := pos(a), pos(b); pa != pb {
			return pa - pb
		}
		return strings.Compare(string(a), string(b))
	}) {
		if slices.Contains(c.o.Exclude, p) {
			continue
		}
		pr := c.phase(p)
		pr.InFlight = inFlight[p]
		pr.Compared = max(0, c.legacyRows[p]-c.dupExtra[p]+c.orphans[p]-pr.InFlight)
		pr.Consistent = max(0, pr.Compared-divergent[p])
		pr.Consistency = ratio(pr.Consistent, pr.Compared)
		r.Phases = append(r.Phases, *pr)
		r.Compared += pr.Compared
		r.Consistent += pr.Consistent
		r.InFlight += pr.InFlight
	}
	r.Consistency = ratio(r.Consistent, r.Compared)
	reports := map[dtetype.Key]bool{}
	for k3 := range c.inFlight {
		reports[k3.k] = true
	}
	r.inFlightReports = slices.SortedFunc(maps.Keys(reports), func(a, b dtetype.Key) int {
		if a.CycleID != b.CycleID {
			return cmpInt(a.CycleID, b.CycleID)
		}
		return cmpInt(a.ReportID, b.ReportID)
	})
	if !r.spool.spilled() {
		r.Divergences = r.spool.divergences()
	}
	if r.Divergences == nil && !r.spool.spilled() {
		r.Divergences = []dtetype.Divergence{}
	}
	return nil
}

// phasePos is p's position in the definition's order; phases not in it
// come after.
func phasePos(order []dtetype.Phase, p dtetype.Phase) int {
	if i := slices.Index(order, p); i >= 0 {
		return i
	}
	return len(order)
}

// divergenceOrder orders divergences by report, phase (in the definition's
// order) and kind.
func divergenceOrder(order []dtetype.Phase, a, b *dtetype.Divergence) int {
	switch {
	case a.Key.CycleID != b.Key.CycleID:
		return cmpInt(a.Key.CycleID, b.Key.CycleID)
	case a.Key.ReportID != b.Key.ReportID:
		return cmpInt(a.Key.ReportID, b.Key.ReportID)
	case a.Phase != b.Phase:
		if pa, pb := phasePos(order, a.Phase), phasePos(order, b.Phase); pa != pb {
			return pa - pb
		}
		return strings.Compare(string(a.Phase), string(b.Phase))
	}
	return strings.Compare(a.Kind, b.Kind)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}
