package legacysim

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
)

// SimConfig configures a simulation. A nil config is ready to use.
type SimConfig struct {
	// Profile is the legacy profile of the database. Default: Seed.
	Profile *Profile
	// Reports is the number of reports to create. Default: 200.
	Reports int
	// ReportsPerCycle is how many reports share a test cycle. Default: 50.
	ReportsPerCycle int
	// Rate is the traffic rate in operations per second; 0 means as fast as
	// the database allows. Default: 50.
	Rate float64
	// Duration is how long the traffic runs at Rate. Default: 20s.
	Duration time.Duration
	// Ops is the number of traffic operations. Default: Rate × Duration. The
	// count, not the clock, ends a run, so a run is reproducible even when the
	// database cannot keep up with Rate.
	Ops int64
	// Seed seeds the random choices. With Concurrency 1, the same seed gives
	// the same operations in the same order. Default: 1.
	Seed uint64
	// Concurrency is the number of concurrent writers. Each owns a share of
	// the reports. Default: 4.
	Concurrency int
	// Now is the legacy application's clock. Default: time.Now.
	Now func() time.Time
	// Progress, if set, is called (from any goroutine) as operations finish.
	Progress func(done, total int64)
}

// The operation kinds a simulation reports.
const (
	OpCreateReport       = "create_report"
	OpStart              = "start"
	OpStartKeepStatus    = "start_keep_status"
	OpStartOnlyIfNull    = "start_only_if_null"
	OpStartOutOfOrder    = "start_out_of_order"
	OpComplete           = "complete"
	OpCompleteStatusOnly = "complete_status_only"
	OpOverride           = "override"
	OpClearOverride      = "clear_override"
	OpReopenStatus       = "reopen_status"
	OpReopenState        = "reopen_state"
	OpReopenApproval     = "reopen_approval"
	OpReopenReset        = "reopen_reset"
	OpSubmitForApproval  = "submit_for_approval"
	OpRefresh            = "refresh"
	OpDuplicateRow       = "duplicate_row"
	OpBulkReschedule     = "bulk_reschedule"
	OpGateProbe          = "gate_probe"
)

// Summary is what a simulation did and what it left in the database.
type Summary struct {
	Profile     string  `json:"profile"`
	Seed        uint64  `json:"seed"`
	Concurrency int     `json:"concurrency"`
	Cycles      int     `json:"cycles"`
	Reports     int     `json:"reports"`
	ElapsedSecs float64 `json:"elapsed_seconds"`
	// Ops counts the operations that were applied, by kind.
	Ops map[string]int64 `json:"ops"`
	// Rejected counts the operations a legacy gate refused, by kind.
	Rejected map[string]int64 `json:"rejected"`
	// BulkRows is the number of rows the bulk operations updated.
	BulkRows int64 `json:"bulk_rows"`
	// Rows counts workflow_phases rows by phase label and base state label,
	// as the simulation left them.
	Rows map[string]map[string]int64 `json:"rows"`
}

// TotalOps returns the number of operations applied.
func (s *Summary) TotalOps() int64 {
	var n int64
	for _, v := range s.Ops {
		n += v
	}
	return n
}

// simRow is the simulator's view of one row.
type simRow struct {
	id       int64
	phase    int // index in the profile's chain
	label    string
	state    dtetype.State
	override *dtetype.State
	status   string // legacy status column
}

func (r *simRow) effective() dtetype.State {
	if r.override != nil {
		return *r.override
	}
	return r.state
}

// simReport is the simulator's view of one report's workflow.
type simReport struct {
	key     dtetype.Key
	primary []*simRow // by chain index: the row the application works on
	dups    []*simRow
}

type worker struct {
	m       *Model
	cfg     *SimConfig
	rng     *rand.Rand
	reports []*simReport
	cycles  []int64
	ops     map[string]int64
	rej     map[string]int64
	bulk    int64
}

// Simulate creates reports and drives legacy traffic through the model on db.
// The database must hold the profile's legacy schema.
func Simulate(ctx context.Context, db DB, cfg *SimConfig) (*Summary, error) {
	c := *cmp.Or(cfg, &SimConfig{})
	c.Profile = cmp.Or(c.Profile, Seed)
	c.Reports = cmp.Or(c.Reports, 200)
	c.ReportsPerCycle = cmp.Or(c.ReportsPerCycle, 50)
	c.Duration = cmp.Or(c.Duration, 20*time.Second)
	c.Seed = cmp.Or(c.Seed, 1)
	c.Concurrency = cmp.Or(c.Concurrency, 4)
	if cfg == nil || (cfg.Rate == 0 && cfg.Ops == 0) {
		c.Rate = cmp.Or(c.Rate, 50)
	}
	if c.Ops == 0 {
		c.Ops = int64(c.Rate * c.Duration.Seconds())
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.Reports < 0 || c.Ops < 0 || c.Rate < 0 || c.Concurrency < 0 || c.ReportsPerCycle < 0:
		return nil, errors.New("simulation sizes must not be negative")
	case c.Concurrency > c.Reports:
		c.Concurrency = c.Reports
	}
	m := NewModel(db, c.Profile, &ModelConfig{Now: c.Now})
	began := time.Now()
	if err := m.CreateUsers(ctx); err != nil {
		return nil, err
	}

	// Cycles started 0 to 70 days ago, so phases are found in every schedule
	// status.
	rng := rand.New(rand.NewPCG(c.Seed, 0))
	ncycles := (c.Reports + c.ReportsPerCycle - 1) / c.ReportsPerCycle
	cycles := make([]int64, ncycles)
	for i := range cycles {
		start := c.Now().AddDate(0, 0, -rng.IntN(71))
		id, err := m.CreateCycle(ctx, fmt.Sprintf("Cycle %d (sim seed %d)", i+1, c.Seed), start)
		if err != nil {
			return nil, err
		}
		cycles[i] = id
	}

	workers := make([]*worker, c.Concurrency)
	for i := range workers {
		workers[i] = &worker{m: m, cfg: &c, cycles: cycles, rng: rand.New(rand.NewPCG(c.Seed, uint64(i+1))),
			ops: map[string]int64{}, rej: map[string]int64{}}
	}
	total := int64(c.Reports) + c.Ops
	var done atomic.Int64
	tick := func() {
		n := done.Add(1)
		if c.Progress != nil {
			c.Progress(n, total)
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i, w := range workers {
		// Report j belongs to worker j mod Concurrency.
		var mine []int
		for j := i; j < c.Reports; j += c.Concurrency {
			mine = append(mine, j)
		}
		quota := c.Ops / int64(c.Concurrency)
		if int64(i) < c.Ops%int64(c.Concurrency) {
			quota++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.run(ctx, mine, quota, i == 0, tick); err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}

	s := &Summary{Profile: c.Profile.Name, Seed: c.Seed, Concurrency: c.Concurrency, Cycles: ncycles, Reports: c.Reports,
		Ops: map[string]int64{}, Rejected: map[string]int64{}, Rows: map[string]map[string]int64{},
		ElapsedSecs: time.Since(began).Seconds()}
	for _, w := range workers {
		for k, v := range w.ops {
			s.Ops[k] += v
		}
		for k, v := range w.rej {
			s.Rejected[k] += v
		}
		s.BulkRows += w.bulk
		for _, r := range w.reports {
			for _, row := range append(append([]*simRow{}, r.primary...), r.dups...) {
				if s.Rows[row.label] == nil {
					s.Rows[row.label] = map[string]int64{}
				}
				s.Rows[row.label][c.Profile.State(row.state)]++
			}
		}
	}
	return s, nil
}

func (w *worker) run(ctx context.Context, reports []int, quota int64, bulk bool, tick func()) error {
	p := w.cfg.Profile
	for _, j := range reports {
		cycle := w.cycles[j%len(w.cycles)]
		id, err := w.m.CreateReport(ctx, fmt.Sprintf("Report %04d", j+1), []string{"FRB", "OCC", "FDIC"}[j%3])
		if err != nil {
			return err
		}
		// Roughly one report in three was created by an older version of the
		// application, with alias labels, where the profile has them.
		aliases := w.rng.IntN(3) == 0
		rows, err := w.m.AddReport(ctx, dtetype.Key{CycleID: cycle, ReportID: id}, AddOptions{Tester: int64(100 + j%20), Aliases: aliases})
		if err != nil {
			return err
		}
		r := &simReport{key: dtetype.Key{CycleID: cycle, ReportID: id}, primary: make([]*simRow, len(p.Chain))}
		for _, row := range rows {
			r.primary[p.Phase(row.PhaseName)] = &simRow{id: row.PhaseID, phase: p.Phase(row.PhaseName)}
		}
		w.apply(r, rows)
		w.reports = append(w.reports, r)
		w.ops[OpCreateReport]++
		tick()
	}
	if len(w.reports) == 0 {
		return nil
	}
	began := time.Now()
	interval := time.Duration(0)
	if w.cfg.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(w.cfg.Concurrency) / w.cfg.Rate)
	}
	for k := int64(0); k < quota; k++ {
		if interval > 0 {
			due := began.Add(time.Duration(k) * interval)
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-time.After(d):
				}
			}
		}
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		if err := w.step(ctx, bulk); err != nil {
			return err
		}
		tick()
	}
	return nil
}

// apply updates the simulator's view from rows the model wrote.
func (w *worker) apply(r *simReport, rows []Row) {
	p := w.cfg.Profile
	for _, row := range rows {
		var sr *simRow
		for _, c := range append(append([]*simRow{}, r.primary...), r.dups...) {
			if c.id == row.PhaseID {
				sr = c
			}
		}
		if sr == nil {
			sr = &simRow{id: row.PhaseID, phase: p.Phase(row.PhaseName)}
			r.dups = append(r.dups, sr)
		}
		sr.label = row.PhaseName
		sr.state, _ = p.StateOf(row.State)
		sr.override = nil
		if row.StateOverride != nil {
			s, _ := p.StateOf(*row.StateOverride)
			sr.override = &s
		}
		if row.Status != nil {
			sr.status = *row.Status
		}
	}
}

// weighted operation choices; forward progress dominates.
var choices = []struct {
	kind   string
	weight int
}{
	{"forward", 62},
	{OpStartOutOfOrder, 4},
	{OpOverride, 4},
	{OpClearOverride, 3},
	{"reopen", 5},
	{OpCompleteStatusOnly, 3},
	{OpSubmitForApproval, 2},
	{OpRefresh, 8},
	{OpDuplicateRow, 1},
	{OpGateProbe, 3},
	{OpBulkReschedule, 1},
}

var totalWeight = func() int {
	n := 0
	for _, c := range choices {
		n += c.weight
	}
	return n
}()

// step performs one traffic operation.
func (w *worker) step(ctx context.Context, bulk bool) error {
	r := w.reports[w.rng.IntN(len(w.reports))]
	n := w.rng.IntN(totalWeight)
	kind := choices[len(choices)-1].kind
	for _, c := range choices {
		if n < c.weight {
			kind = c.kind
			break
		}
		n -= c.weight
	}
	user := int64(1 + w.rng.IntN(50))
	ok, err := w.try(ctx, r, kind, user, bulk)
	if err != nil || ok {
		return err
	}
	// The chosen kind does not apply to this report right now: progress it
	// instead, or touch it when it is finished.
	if ok, err = w.try(ctx, r, "forward", user, bulk); err != nil || ok {
		return err
	}
	_, err = w.try(ctx, r, OpRefresh, user, bulk)
	return err
}

// try performs an operation of kind on r if it applies, and reports whether
// it did.
func (w *worker) try(ctx context.Context, r *simReport, kind string, user int64, bulk bool) (bool, error) {
	p := w.cfg.Profile
	ref := func(i int) Ref { return Ref{Key: r.key, Phase: p.Chain[i].Label} }
	pick := func(match func(*simRow) bool) int {
		var idx []int
		for i, row := range r.primary {
			if match(row) {
				idx = append(idx, i)
			}
		}
		if len(idx) == 0 {
			return -1
		}
		return idx[w.rng.IntN(len(idx))]
	}
	var rows []Row
	var err error
	switch kind {
	case "forward":
		// Complete the earliest phase in progress, or start the earliest
		// phase whose predecessor is complete.
		for i, row := range r.primary {
			if row.state == dtetype.StateInProgress {
				kind = OpComplete
				rows, err = w.m.Complete(ctx, ref(i), user, CompleteOptions{})
				break
			}
			if row.state == dtetype.StateNotStarted && (i == 0 || r.primary[i-1].state == dtetype.StateCompleted) &&
				w.gateOpen(r, i) {
				kind, rows, err = w.start(ctx, ref(i), user)
				break
			}
		}
		if kind == "forward" {
			return false, nil
		}
	case OpStartOutOfOrder:
		i := pick(func(row *simRow) bool {
			_, gated := gates[p.Chain[row.phase].Label]
			return row.state == dtetype.StateNotStarted && !gated && row.phase > 0 &&
				r.primary[row.phase-1].state != dtetype.StateCompleted
		})
		if i < 0 {
			return false, nil
		}
		rows, err = w.m.Start(ctx, ref(i), user, StartOptions{})
	case OpOverride:
		i := pick(func(*simRow) bool { return true })
		o := OverrideOptions{Reason: []string{"agreed with CDO", "regulator extension", "data late from provider", "done offline"}[w.rng.IntN(4)]}
		switch w.rng.IntN(3) {
		case 0:
			o.State = &dtetype.States()[w.rng.IntN(3)]
		case 1:
			o.Status = &dtetype.Statuses()[w.rng.IntN(3)]
		default:
			o.State, o.Status = &dtetype.States()[w.rng.IntN(3)], &dtetype.Statuses()[w.rng.IntN(3)]
		}
		rows, err = w.m.Override(ctx, ref(i), user, o)
	case OpClearOverride:
		i := pick(func(row *simRow) bool { return row.override != nil })
		if i < 0 {
			return false, nil
		}
		rows, err = w.m.ClearOverride(ctx, ref(i))
	case "reopen":
		i := pick(func(row *simRow) bool { return row.state != dtetype.StateNotStarted })
		if i < 0 {
			return false, nil
		}
		forms := []ReopenForm{ReopenState, ReopenReset}
		if p.StatusColumn {
			forms = ReopenForms()
		}
		form := forms[w.rng.IntN(len(forms))]
		kind = map[ReopenForm]string{ReopenStatus: OpReopenStatus, ReopenState: OpReopenState,
			ReopenApproval: OpReopenApproval, ReopenReset: OpReopenReset}[form]
		rows, err = w.m.Reopen(ctx, ref(i), form)
	case OpCompleteStatusOnly, OpSubmitForApproval:
		if !p.StatusColumn {
			return false, nil
		}
		i := pick(func(row *simRow) bool { return row.state == dtetype.StateInProgress })
		if i < 0 {
			return false, nil
		}
		if kind == OpSubmitForApproval {
			rows, err = w.m.SubmitForApproval(ctx, ref(i))
		} else {
			rows, err = w.m.Complete(ctx, ref(i), user, CompleteOptions{StatusOnly: true})
		}
	case OpRefresh:
		rows, err = w.m.Refresh(ctx, ref(w.rng.IntN(len(p.Chain))))
	case OpDuplicateRow:
		if p.UniquePhase {
			return false, nil
		}
		rows, err = w.m.Duplicate(ctx, ref(w.rng.IntN(len(p.Chain))))
	case OpGateProbe:
		// Someone tries to start a gated phase before its gate is met.
		i := pick(func(row *simRow) bool {
			_, gated := gates[p.Chain[row.phase].Label]
			return gated && row.state == dtetype.StateNotStarted && !w.gateOpen(r, row.phase)
		})
		if i < 0 {
			return false, nil
		}
		rows, err = w.m.Start(ctx, ref(i), user, StartOptions{})
		if err == nil {
			return false, fmt.Errorf("legacy model let %s start with its gate unmet", ref(i))
		}
	case OpBulkReschedule:
		if !bulk {
			return false, nil
		}
		var n int64
		n, err = w.m.BulkReschedule(ctx, w.cycles[w.rng.IntN(len(w.cycles))], 1+w.rng.IntN(14))
		if err != nil {
			return false, err
		}
		w.bulk += n
		w.ops[kind]++
		return true, nil
	}
	if errors.Is(err, ErrGate) {
		w.rej[kind]++
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("simulated %s: %w", kind, err)
	}
	w.apply(r, rows)
	w.ops[kind]++
	return true, nil
}

// gateOpen reports whether the legacy gate of chain index i is met, as far
// as the simulator knows.
func (w *worker) gateOpen(r *simReport, i int) bool {
	needs, ok := gates[w.cfg.Profile.Chain[i].Label]
	if !ok {
		return true
	}
	return r.primary[w.cfg.Profile.Phase(needs)].effective() == dtetype.StateCompleted
}

// start picks one of the application's start paths.
func (w *worker) start(ctx context.Context, ref Ref, user int64) (string, []Row, error) {
	n := w.rng.IntN(20)
	switch {
	case n == 0 && w.cfg.Profile.StatusColumn:
		rows, err := w.m.Start(ctx, ref, user, StartOptions{KeepStatus: true})
		return OpStartKeepStatus, rows, err
	case n == 1:
		rows, err := w.m.Start(ctx, ref, user, StartOptions{OnlyIfNull: true})
		return OpStartOnlyIfNull, rows, err
	default:
		rows, err := w.m.Start(ctx, ref, user, StartOptions{})
		return OpStart, rows, err
	}
}
