package adapter

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// How the reader stays gap-free and ordered
//
// A sequence value is taken when the trigger runs, not when the transaction
// commits, so changes become visible out of id order: a reader that follows
// "id > last" skips a change whose transaction commits after a later id was
// read. The reader therefore delivers by commit epochs. Each epoch is bounded
// by a snapshot (pg_current_snapshot). The changes of epoch k are exactly
// those whose transaction is visible in snapshot S(k) and not in S(k-1):
//
//   - Gap-free. A committed transaction is visible in every snapshot taken
//     after its commit, so it falls in exactly one epoch, the first whose
//     snapshot sees it. Rows of aborted or running transactions are invisible.
//   - Exactly once in effect. The checkpoint stores the acknowledged snapshot,
//     the epoch in progress and the last id acknowledged in it. An epoch's
//     contents never change, so a restart redelivers at most the one batch
//     that was not acknowledged.
//   - Ordered. Within an epoch, changes go in id order. Two changes to the same
//     row are ordered by the row lock: the second writer's trigger runs after
//     the first transaction commits, so it has the larger id and the same or
//     a later epoch. Ordering by (xid, id) instead would put a long
//     transaction's change ahead of an earlier-committed one on the same row.
//   - Not blocked by long transactions. A transaction held open for minutes
//     delays only its own changes, not everyone else's.
//
// The rows of epoch k are found through the xid index: a transaction not
// visible in S(k-1) has an xid at or above its xmax, or is in its xip list.
//
// Re-drives ride the same epochs. A report's shadow is rebuilt from legacy
// truth (a repair, a rollback, a quarantine resync) by reading its rows in
// the very snapshot that bounds an epoch: the leader opens that epoch in a
// REPEATABLE READ transaction, delivers its changes, then the re-driven
// reports' rows as that transaction sees them. Every change the rows
// reflect was delivered before them, and every later change comes in a
// later epoch, so the resync lands in order with the stream, under the
// stream's own sequence numbers, whatever legacy does meanwhile.

// ErrLostLeadership means another reader took over the checkpoint.
var ErrLostLeadership = store.ErrLostLeadership

// Batch is a group of translated changes delivered to a Consumer.
type Batch struct {
	// Changes are in delivery order.
	Changes []dtetype.PhaseChange
	// Backfill is the snapshot id when the batch is part of a backfill.
	Backfill string
	// Last marks the final batch of a backfill.
	Last bool
	// Rejected are changes that do not translate, given to readers that do
	// not own the quarantine (every consumer but the mirror) instead of
	// being quarantined.
	Rejected []Rejected
	// History lists the reports whose legacy rows a backfill has now
	// delivered in full (a backfill reads report by report): their shadows
	// judge the history those rows record, once.
	History []dtetype.Key
	// Migrate, for reports of a re-drive, names the definition (id@version)
	// their shadows move to.
	Migrate map[dtetype.Key]string
	// Resync, if set, makes the batch a re-drive: for each report in it,
	// the report's changes in the batch are all its legacy rows, which
	// replace what its shadow holds, and the value is the sequence number
	// the re-drive is delivered under.
	Resync map[dtetype.Key]int64
}

// Rejected is a change a reader could not translate, with why.
type Rejected struct {
	EventID string            `json:"event_id"`
	Reason  string            `json:"reason"`
	Detail  string            `json:"detail"`
	Raw     *legacy.RawChange `json:"raw"`
	Key     *dtetype.Key      `json:"key,omitempty"`
}

// Consumer receives the change stream. Returning nil acknowledges the batch;
// an error makes the reader deliver the same changes again later.
type Consumer interface {
	Deliver(ctx context.Context, b Batch) error
}

// ConsumerFunc adapts a function to Consumer.
type ConsumerFunc func(ctx context.Context, b Batch) error

// Deliver calls f.
func (f ConsumerFunc) Deliver(ctx context.Context, b Batch) error { return f(ctx, b) }

// ReaderConfig configures a Reader. A nil config is ready to use.
type ReaderConfig struct {
	// Consumer names the checkpoint. Default: store.MirrorConsumer. Only
	// the mirror's reader owns the quarantine (and the re-drives): other
	// consumers get what they cannot translate as Batch.Rejected.
	Consumer string
	// Ephemeral readers (capture tail) keep their position in memory only:
	// they take no checkpoint, no leader lock and no wake-up requests, so
	// nothing of theirs outlives them or holds back pruning. They start
	// with a backfill of every row.
	Ephemeral bool
	// BatchSize is the most changes per batch. Default: 2000.
	BatchSize int
	// KnownDefinition, if set, says whether the consumer can move a shadow
	// to definition key (id@version): a re-drive that asks for one it
	// cannot fails, saying so.
	KnownDefinition func(key string) bool
	// PollInterval is how long an idle reader waits for a NOTIFY before it
	// looks anyway. Default: 1s.
	PollInterval time.Duration
	// StandbyInterval is how often a standby tries to take leadership.
	// Default: 1s.
	StandbyInterval time.Duration
	// Retention is how long acknowledged changes are kept. Default: 168h.
	// Negative: never prune.
	Retention time.Duration
	// ConsumerLease is how long a consumer other than the mirror may go
	// without renewing its checkpoint before it no longer holds back
	// pruning (a crashed capture tail --keep, say); config gives it. The
	// mirror's checkpoint never expires. Zero: no consumer expires.
	ConsumerLease time.Duration
	// MaintenanceInterval is how often the leader prunes and measures the
	// backlog. Default: 10s.
	MaintenanceInterval time.Duration
	// RetryBackoff caps the wait between redeliveries to a failing consumer.
	// Default: 10s.
	RetryBackoff time.Duration
	// Identity names this reader in the checkpoint. Default: host:pid.
	Identity string
	// Logger receives operational messages. Default: discard.
	Logger *slog.Logger
	// Metrics receives the reader's metrics. Default: unregistered metrics.
	Metrics *Metrics
	// Logical, when set, selects log-based capture (capture.mode:
	// logical): the mirror's leader decodes the replication slot into the
	// change log, and every reader skips what a backfill or re-drive has
	// covered (see logical.go).
	Logical *Logical
}

// Reader delivers captured changes to one consumer, gap-free and in order.
// Any number of readers may run; one leads (by advisory lock) and the others
// wait as hot standbys.
type Reader struct {
	st *store.Store
	// tr translates; a reload swaps it (SetTranslator) between batches.
	tr    atomic.Pointer[legacy.Translator]
	table *legacy.Table
	cfg   ReaderConfig
	log   *slog.Logger
	m     *Metrics

	leading atomic.Bool
	// failingSince is when deliveries to the consumer began to fail (unix
	// nanoseconds; 0 while they work), and lastFailure why.
	failingSince atomic.Int64
	lastFailure  atomic.Value
}

// DeliveryFailing returns since when deliveries to the consumer have been
// failing, and the last error; zero while they work.
func (r *Reader) DeliveryFailing() (time.Time, string) {
	since := r.failingSince.Load()
	if since == 0 {
		return time.Time{}, ""
	}
	msg, _ := r.lastFailure.Load().(string)
	return time.Unix(0, since), msg
}

// failing records a failed delivery.
func (r *Reader) failing(err error) {
	r.lastFailure.Store(err.Error())
	r.failingSince.CompareAndSwap(0, time.Now().UnixNano())
	r.m.DeliveryFailing.Set(time.Since(time.Unix(0, r.failingSince.Load())).Seconds())
}

// delivering records a delivery that worked.
func (r *Reader) delivering() {
	r.failingSince.Store(0)
	r.m.DeliveryFailing.Set(0)
}

// NewReader returns a reader of the change log in st, translating with tr.
func NewReader(st *store.Store, tr *legacy.Translator, cfg *ReaderConfig) *Reader {
	c := ReaderConfig{}
	if cfg != nil {
		c = *cfg
	}
	c.Consumer = cmp.Or(c.Consumer, store.MirrorConsumer)
	c.BatchSize = cmp.Or(max(c.BatchSize, 0), 2000)
	c.PollInterval = cmp.Or(max(c.PollInterval, 0), time.Second)
	c.StandbyInterval = cmp.Or(max(c.StandbyInterval, 0), time.Second)
	c.Retention = cmp.Or(c.Retention, 168*time.Hour)
	if c.ConsumerLease <= 0 {
		c.ConsumerLease = 1 << 62 // never
	}
	c.MaintenanceInterval = cmp.Or(max(c.MaintenanceInterval, 0), 10*time.Second)
	c.RetryBackoff = cmp.Or(max(c.RetryBackoff, 0), 10*time.Second)
	if c.Identity == "" {
		host, _ := os.Hostname()
		c.Identity = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	r := &Reader{st: st, table: tr.Table(), cfg: c, log: c.Logger, m: c.Metrics}
	r.tr.Store(tr)
	return r
}

// SetTranslator makes the reader translate with tr from its next batch on:
// a reloaded mapping. The table it reads stays the one it started with.
func (r *Reader) SetTranslator(tr *legacy.Translator) { r.tr.Store(tr) }

// Leading reports whether this reader holds capture leadership now.
func (r *Reader) Leading() bool { return r.leading.Load() }

// Run campaigns for leadership and, while leading, delivers changes to c. It
// returns when ctx ends (with ctx's error) or on an error that retrying
// cannot fix. Connection failures and lost leadership send it back to
// standby.
func (r *Reader) Run(ctx context.Context, c Consumer) error {
	for {
		err := r.campaign(ctx, c)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var fatal *fatalError
		if errors.As(err, &fatal) {
			return fatal.err
		}
		if err != nil {
			r.log.Warn("capture reader stepped down", "error", err)
			r.m.Errors.WithLabelValues("reader").Inc()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.StandbyInterval):
		}
	}
}

// fatalError is an error retrying cannot fix, such as a missing schema.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }

// campaign tries once to become leader and leads until an error.
func (r *Reader) campaign(ctx context.Context, c Consumer) error {
	conn, err := pgx.ConnectConfig(ctx, r.st.Pool().Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("error connecting: %w", err)
	}
	defer conn.Close(context.Background())
	if !r.cfg.Ephemeral {
		ok, err := r.st.On(conn).TryLeaderLock(ctx, r.cfg.Consumer)
		if err != nil {
			return err
		}
		if !ok {
			return nil // another reader leads; stay on standby
		}
	}
	r.leading.Store(true)
	r.m.Leader.Set(1)
	defer func() {
		r.leading.Store(false)
		r.m.Leader.Set(0)
		r.delivering() // a standby delivers nothing, so nothing of its fails
	}()
	r.log.Info("capture leadership taken", "consumer", r.cfg.Consumer, "identity", r.cfg.Identity)
	// A failing decoder ends the leadership with its error.
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	l := &leader{Reader: r, conn: conn, on: r.st.On(conn), c: c}
	if r.cfg.Logical != nil && l.ownsQuarantine() {
		d, err := openDecoder(ctx, r.st, r.cfg.Logical, r.log, r.m)
		if err != nil {
			return err
		}
		defer d.close()
		l.decoder = d
		var wg sync.WaitGroup
		started := false
		l.startDecoder = func() {
			if started {
				return
			}
			started = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.stream(lctx); lctx.Err() == nil {
					cancel(fmt.Errorf("log-based capture: %w", err))
				}
			}()
		}
		defer func() {
			cancel(nil)
			wg.Wait()
		}()
	}
	err = l.run(lctx)
	if ctx.Err() == nil && context.Cause(lctx) != nil && !errors.Is(context.Cause(lctx), context.Canceled) {
		return context.Cause(lctx)
	}
	return err
}

// leader is a reader while it holds the leader lock on conn.
type leader struct {
	*Reader
	conn *pgx.Conn
	on   *store.Store // the store on conn
	c    Consumer
	cp   *store.Checkpoint
	held map[dtetype.Key]bool
	// backfillPending is the report a running backfill's last batch ended
	// on: its rows may go on in the next batch.
	backfillPending *dtetype.Key

	// redrives is set when re-drives are pending.
	redrives bool
	// waiting is whether this reader has asked writers to notify it, until
	// waitingUntil.
	waiting      bool
	waitingUntil time.Time

	// Log-based capture: the decoder this leader runs (the mirror's), the
	// snapshot its new slot exported, for the backfill to read, and the
	// floors backfills and re-drives left.
	decoder      *decoder
	startDecoder func()
	floors       []floor
	// epochLogged is how far the change log held legacy's transactions as
	// of the epoch in progress's snapshot.
	epochLogged string
}

// waitingLease is how long a reader's request for NOTIFYs lasts; an idle
// reader renews it, and a dead one's lapses, so writers stop notifying.
const waitingLease = 5 * time.Second

// setWaiting asks writers to notify this reader, or stops asking. It writes
// only on a change, or to renew the lease.
func (l *leader) setWaiting(ctx context.Context, on bool) error {
	if (on == l.waiting && !on) || l.cfg.Ephemeral {
		return nil
	}
	var until *time.Time
	if on {
		u := time.Now().Add(waitingLease)
		until = &u
	}
	if err := l.st.SetWaiting(ctx, l.cfg.Consumer, until); err != nil {
		return err
	}
	l.waiting = on
	if until != nil {
		l.waitingUntil = *until
	}
	return nil
}

func (l *leader) run(ctx context.Context) error {
	if _, err := l.conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.st.Schema() + "_changes"}.Sanitize()); err != nil {
		return fmt.Errorf("error listening: %w", err)
	}
	l.held = map[dtetype.Key]bool{}
	if l.cfg.Ephemeral {
		if _, err := l.st.Version(ctx); err != nil {
			return &fatalError{err}
		}
		l.cp = &store.Checkpoint{Consumer: l.cfg.Consumer}
	} else {
		cp, err := l.on.TakeCheckpoint(ctx, l.cfg.Consumer, l.cfg.Identity)
		var ni *store.NotInstalledError
		if errors.As(err, &ni) {
			return &fatalError{err}
		}
		if err != nil {
			return err
		}
		l.cp = cp
	}
	if l.ownsQuarantine() {
		var err error
		if l.held, err = l.st.HeldKeys(ctx); err != nil {
			return err
		}
	}
	if err := l.loadFloors(ctx); err != nil {
		return err
	}
	if l.decoder != nil {
		if l.decoder.snapshot != "" {
			// A new slot: the backfill reads its exported snapshot and
			// starts the decoder once it has.
			l.cp.Backfill = true
		} else {
			l.startDecoder()
		}
	}
	nextMaintenance := time.Now()
	backoff := 100 * time.Millisecond
	for {
		if l.cp.Acked == nil || l.cp.Backfill {
			if err := l.backfill(ctx); err != nil {
				return err
			}
		}
		n, err := l.runEpoch(ctx)
		if err == nil {
			err = l.deliverReleased(ctx)
		}
		var ce *consumerError
		if errors.As(err, &ce) {
			l.failing(ce.err)
			l.log.Warn("consumer failed; will redeliver", "error", ce.err, "retry_in", backoff)
			l.m.Errors.WithLabelValues("consumer").Inc()
			// The backlog keeps being measured while the consumer fails, so
			// its size and age show the stall.
			if time.Now().After(nextMaintenance) {
				if err := l.maintain(ctx); err != nil {
					return err
				}
				nextMaintenance = time.Now().Add(l.cfg.MaintenanceInterval)
			}
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			backoff = min(backoff*2, l.cfg.RetryBackoff)
			continue
		}
		if err != nil {
			return err
		}
		l.delivering()
		backoff = 100 * time.Millisecond
		if time.Now().After(nextMaintenance) {
			if err := l.maintain(ctx); err != nil {
				return err
			}
			nextMaintenance = time.Now().Add(l.cfg.MaintenanceInterval)
		}
		if n > 0 || l.redrives {
			if err := l.setWaiting(ctx, false); err != nil {
				return err
			}
			continue
		}
		// Idle: ask writers for a NOTIFY, look once more (a change may have
		// committed before they saw the request), then wait or poll.
		if !l.waiting || time.Until(l.waitingUntil) < waitingLease/2 {
			first := !l.waiting
			if err := l.setWaiting(ctx, true); err != nil {
				return err
			}
			if first {
				continue
			}
		}
		wctx, cancel := context.WithTimeout(ctx, l.cfg.PollInterval)
		_, err = l.conn.WaitForNotification(wctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("error waiting for changes: %w", err)
		}
		if err := l.refreshRequests(ctx); err != nil {
			return err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// consumerError wraps a consumer's refusal of a batch.
type consumerError struct{ err error }

func (e *consumerError) Error() string { return "consumer: " + e.err.Error() }

// ownsQuarantine reports whether this reader quarantines what it cannot
// translate (and delivers what a retry releases): the mirror's alone.
func (l *leader) ownsQuarantine() bool {
	return l.cfg.Consumer == store.MirrorConsumer && !l.cfg.Ephemeral
}

// refreshRequests picks up a backfill requested by dtebridge backfill, and
// pending re-drives.
func (l *leader) refreshRequests(ctx context.Context) error {
	if l.cfg.Ephemeral {
		return nil
	}
	var err error
	l.cp.Backfill, l.redrives, err = l.on.Requests(ctx, l.cfg.Consumer)
	return err
}

// save persists the checkpoint, fenced by the leader token.
func (l *leader) save(ctx context.Context, backfilled bool) error {
	if l.cfg.Ephemeral {
		return nil
	}
	return l.st.SaveCheckpoint(ctx, l.cp, backfilled)
}

// runEpoch delivers the current epoch, choosing a new one first if none is in
// progress, and returns how many changes it read. A new epoch with re-drives
// pending is opened in a REPEATABLE READ transaction, whose snapshot is the
// epoch's bound and in which the re-driven reports' rows are read.
func (l *leader) runEpoch(ctx context.Context) (int, error) {
	opts := pgx.TxOptions{}
	redrive := false
	if l.cp.Epoch == nil {
		es, err := l.on.EpochSnapshot(ctx, l.cfg.Consumer)
		if err != nil {
			return 0, err
		}
		l.redrives = es.Redrives
		if es.Redrives {
			redrive, opts = true, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
		} else {
			if l.cp.Acked != nil && *l.cp.Acked == es.Snapshot {
				return 0, nil // nothing has committed since the last epoch
			}
			// The epoch is saved with its first acknowledged batch. Until then
			// a restart simply chooses a later epoch, which contains this one.
			l.cp.Epoch, l.cp.LastID, l.epochLogged = &es.Snapshot, 0, es.Logged
		}
	} else {
		l.epochLogged = "" // resumed: what the change log held then is unknown
	}
	tx, err := l.conn.BeginTx(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("error starting the epoch: %w", err)
	}
	defer tx.Rollback(context.Background())
	var es store.EpochSnap
	if redrive {
		// In REPEATABLE READ the first query takes the transaction's
		// snapshot, and pg_current_snapshot returns it.
		if es, err = l.on.On(tx).EpochSnapshot(ctx, l.cfg.Consumer); err != nil {
			return 0, err
		}
		l.cp.Epoch, l.cp.LastID, l.epochLogged = &es.Snapshot, 0, es.Logged
	}
	total := 0
	if *l.cp.Acked != *l.cp.Epoch {
		ep, err := l.on.On(tx).OpenEpoch(ctx, *l.cp.Acked, *l.cp.Epoch, l.cp.LastID, l.cfg.BatchSize)
		if err != nil {
			return 0, err
		}
		for {
			changes, err := ep.Next(ctx)
			if err != nil {
				return total, err
			}
			if len(changes) == 0 {
				break
			}
			total += len(changes)
			l.m.Read.Add(float64(len(changes)))
			raws := make([]*legacy.RawChange, len(changes))
			for i, c := range changes {
				raws[i] = &legacy.RawChange{ID: c.ID, Op: c.Op, Source: c.Source, Old: c.Old, New: c.New, Origin: c.Origin, TxTime: c.TxTime, CapturedAt: c.CapturedAt, TxID: c.TxID, Logged: c.Logged}
			}
			if err := l.process(ctx, raws, ""); err != nil {
				return total, err
			}
			if len(changes) < l.cfg.BatchSize {
				break // a short batch is the epoch's last: one checkpoint write closes it
			}
			l.cp.LastID = changes[len(changes)-1].ID
			if err := l.save(ctx, false); err != nil {
				return total, err
			}
		}
	}
	if redrive {
		if err := l.redrive(ctx, tx, es); err != nil {
			return total, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return total, fmt.Errorf("error closing the epoch: %w", err)
	}
	l.cp.Acked, l.cp.Epoch, l.cp.LastID = l.cp.Epoch, nil, 0
	if err := l.dropFloors(ctx, l.epochLogged); err != nil {
		return total, err
	}
	if total == 0 && !redrive {
		// Nothing to acknowledge: the next epoch's save records the newer
		// snapshot, and an idle reader writes nothing.
		return 0, nil
	}
	return total, l.save(ctx, false)
}

// redriveBatch is how many re-drive requests one epoch serves.
const redriveBatch = 200

// redrive serves pending re-drives at the epoch bounded by snap: it reads
// the reports' legacy rows in tx, whose snapshot is snap, and delivers
// them as resyncs. A report with changes in quarantine is not re-driven:
// its held changes would arrive after the resync and overwrite it.
func (l *leader) redrive(ctx context.Context, tx pgx.Tx, es store.EpochSnap) error {
	snap := es.Snapshot
	pending, err := l.st.PendingRedrives(ctx, l.cfg.Consumer, redriveBatch)
	if err != nil {
		return err
	}
	// An operator may have resolved quarantined changes since the held
	// reports were read.
	if l.held, err = l.st.HeldKeys(ctx); err != nil {
		return err
	}
	ids := map[dtetype.Key][]int64{}
	migrate := map[dtetype.Key]string{}
	var keys []dtetype.Key
	for _, p := range pending {
		if p.Definition != "" && l.cfg.KnownDefinition != nil && !l.cfg.KnownDefinition(p.Definition) {
			if err := l.st.FinishRedrives(ctx, []int64{p.ID}, 0, 0,
				"definition "+p.Definition+" is not loaded by the running serve: add its file to definitions in the config and restart serve"); err != nil {
				return err
			}
			continue
		}
		if p.Definition != "" {
			migrate[p.Key] = p.Definition
		}
		if l.held[p.Key] {
			if err := l.st.FinishRedrives(ctx, []int64{p.ID}, 0, 0,
				"the report has changes in quarantine; resolve them first (dtebridge quarantine list)"); err != nil {
				return err
			}
			continue
		}
		if _, ok := ids[p.Key]; !ok {
			keys = append(keys, p.Key)
		}
		ids[p.Key] = append(ids[p.Key], p.ID)
	}
	if len(keys) == 0 {
		return nil
	}
	cycles, reports := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		cycles[i], reports[i] = k.CycleID, k.ReportID
	}
	rows, err := tx.Query(ctx, l.table.SnapshotSQL(true), cycles, reports)
	if err != nil {
		return fmt.Errorf("error reading legacy rows to re-drive: %w", err)
	}
	var raws []*legacy.RawChange
	for rows.Next() {
		raw, err := l.table.ScanSnapshot(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("error reading legacy rows to re-drive: %w", err)
		}
		raws = append(raws, raw)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error reading legacy rows to re-drive: %w", err)
	}
	tag := snapshotID(snap)
	b := Batch{Resync: map[dtetype.Key]int64{}, Migrate: migrate}
	seq := l.cp.Seq
	count := map[dtetype.Key]int{}
	failed := map[dtetype.Key]string{}
	var changes []dtetype.PhaseChange
	for _, raw := range raws {
		res := l.tr.Load().Translate(raw)
		switch {
		case res.Ignored:
			continue
		case res.Err != nil && res.HasKey:
			// A report's rows are re-driven whole or not at all.
			failed[res.Key] = fmt.Sprintf("legacy row %s does not translate (%s): fix the row or the mapping, then re-drive it", raw.RowKey, res.Err)
			continue
		case res.Err != nil || res.Change == nil:
			continue
		}
		seq++
		c := *res.Change
		c.EventID, c.Seq = "r"+tag+":"+raw.RowKey, seq
		changes = append(changes, c)
	}
	for _, c := range changes {
		if failed[c.Key] == "" {
			b.Changes = append(b.Changes, c)
			count[c.Key]++
		}
	}
	for _, k := range keys {
		if failed[k] == "" {
			seq++
			b.Resync[k] = seq
		}
	}
	if err := l.c.Deliver(ctx, b); err != nil {
		var pe *PoisonError
		if !errors.As(err, &pe) {
			return &consumerError{err}
		}
		for _, p := range pe.Poisoned {
			failed[p.Key] = "Temporal refuses the report's rows: " + p.Detail
		}
	}
	resynced := []dtetype.Key{}
	for _, k := range keys {
		if failed[k] == "" {
			resynced = append(resynced, k)
		}
	}
	if err := l.addFloors(ctx, resynced, snap, es.WAL); err != nil {
		return err
	}
	l.cp.Seq = seq
	for _, k := range keys {
		if err := l.st.FinishRedrives(ctx, ids[k], b.Resync[k], count[k], failed[k]); err != nil {
			return err
		}
	}
	l.log.Info("reports re-driven from legacy", "reports", len(keys), "rows", len(b.Changes))
	return nil
}

// snapshotID is a short stable id of a snapshot, for event ids.
func snapshotID(snap string) string {
	h := fnv.New64a()
	h.Write([]byte(snap))
	return strconv.FormatUint(h.Sum64(), 36)
}

// process translates raws, quarantines what cannot be translated (and what
// is held behind it), and delivers the rest. It advances l.cp.Seq.
func (l *leader) process(ctx context.Context, raws []*legacy.RawChange, backfill string) error {
	var out []dtetype.PhaseChange
	var q []quarantined
	var rejected []Rejected
	seq := l.cp.Seq
	var keys []dtetype.Key // each raw's report, in order, where it has one
	var attributes []attributeChange
	for _, raw := range raws {
		seq++
		if l.covered(raw, nil) {
			l.m.Covered.Inc()
			continue // a backfill delivered the rows it made
		}
		if a, ok := l.attributeChange(raw); ok {
			attributes = append(attributes, a)
			continue
		}
		res := l.tr.Load().Translate(raw)
		if res.HasKey && l.covered(raw, &res.Key) {
			l.m.Covered.Inc()
			continue // a re-drive delivered the report's rows it made
		}
		if res.HasKey {
			keys = append(keys, res.Key)
		}
		if res.Ignored {
			l.m.Ignored.Inc()
			continue
		}
		eventID := eventID(raw, backfill)
		switch {
		case res.HasKey && l.held[res.Key]:
			q = append(q, quarantined{eventID: eventID, raw: raw, seq: seq, res: res,
				err: &legacy.TranslateError{Reason: legacy.ReasonHeld, Detail: fmt.Sprintf("report %s has earlier changes in quarantine", res.Key)}})
		case res.Err != nil && !l.ownsQuarantine():
			var key *dtetype.Key
			if res.HasKey {
				key = &res.Key
			}
			rejected = append(rejected, Rejected{EventID: eventID, Reason: res.Err.Reason, Detail: res.Err.Detail, Raw: raw, Key: key})
		case res.Err != nil:
			q = append(q, quarantined{eventID: eventID, raw: raw, seq: seq, res: res, err: res.Err})
			if res.HasKey {
				l.held[res.Key] = true
			}
		default:
			pc := res.Change
			pc.EventID, pc.Seq = eventID, seq
			out = append(out, *pc)
		}
	}
	if err := l.quarantine(ctx, q); err != nil {
		return err
	}
	if err := l.redriveAttributes(ctx, attributes); err != nil {
		return err
	}
	var history []dtetype.Key
	var pending *dtetype.Key
	if backfill != "" {
		history, pending = backfillComplete(keys, l.backfillPending)
	}
	if len(out) > 0 || len(rejected) > 0 || backfill != "" {
		err := l.c.Deliver(ctx, Batch{Changes: out, Backfill: backfill, Rejected: rejected, History: history})
		var pe *PoisonError
		switch {
		case errors.As(err, &pe) && !l.ownsQuarantine():
			return &consumerError{err}
		case errors.As(err, &pe):
			// Everything else was delivered: quarantine what Temporal
			// refuses for good, with the rest of its report behind it.
			if out, err = l.quarantinePoisoned(ctx, out, raws, backfill, pe); err != nil {
				return err
			}
		case err != nil:
			return &consumerError{err}
		}
	}
	now := time.Now()
	for i := range out {
		l.m.Lag.Observe(now.Sub(out[i].CapturedAt).Seconds())
	}
	l.m.Delivered.Add(float64(len(out)))
	l.cp.Seq = seq
	if backfill != "" {
		l.backfillPending = pending
	}
	return nil
}

// attributeChange is a captured change to a table report attributes come
// from: the report it belongs to (and the cycle, for a per-cycle one).
type attributeChange struct {
	report int64
	cycle  *int64
}

// attributeChange reports whether raw is a change to an attribute table
// (legacy.attributes), and whose.
func (l *leader) attributeChange(raw *legacy.RawChange) (attributeChange, bool) {
	if raw.Source == "" || len(l.table.Attributes) == 0 || raw.Op == "S" {
		return attributeChange{}, false
	}
	var a attributeChange
	var ok bool
	for _, row := range [][]byte{raw.New, raw.Old} {
		if len(row) > 0 && string(row) != "null" {
			if a.report, a.cycle, ok = l.table.AttributeReport(raw.Source, row); ok {
				return a, true
			}
		}
	}
	return a, false
}

// redriveAttributes re-drives the shadows of the reports whose attributes
// legacy changed, every cycle of them: the re-drive, served at the next
// epoch boundary, carries the rows and the attributes as they are then, in
// order with the stream. Only the mirror's leader does; other consumers
// only watch.
func (l *leader) redriveAttributes(ctx context.Context, changes []attributeChange) error {
	if len(changes) == 0 || !l.ownsQuarantine() {
		return nil
	}
	var reports []int64
	for _, a := range changes {
		if !slices.Contains(reports, a.report) {
			reports = append(reports, a.report)
		}
	}
	rows, err := l.st.Pool().Query(ctx, l.table.KeysOfReportsSQL(), reports)
	if err != nil {
		return fmt.Errorf("error reading the reports whose attributes changed: %w", err)
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dtetype.Key, error) {
		var k dtetype.Key
		return k, r.Scan(&k.CycleID, &k.ReportID)
	})
	if err != nil {
		return fmt.Errorf("error reading the reports whose attributes changed: %w", err)
	}
	var keys []dtetype.Key
	for _, k := range all {
		for _, a := range changes {
			if a.report == k.ReportID && (a.cycle == nil || *a.cycle == k.CycleID) && !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if _, err := l.st.RequestRedrives(ctx, store.RedriveRequest{Keys: keys, Reason: store.RedriveAttributes, RequestedBy: "capture"}); err != nil {
		return err
	}
	l.redrives = true
	l.m.AttributeRedrives.Add(float64(len(keys)))
	return nil
}

// backfillComplete says which reports a backfill batch completes: the
// backfill reads report by report, so every report the batch holds is
// complete but the last, which may go on in the next batch, and the one
// left pending by the batch before is complete unless this batch goes on
// with it. It returns them and the report now pending.
func backfillComplete(raws []dtetype.Key, pending *dtetype.Key) ([]dtetype.Key, *dtetype.Key) {
	var keys []dtetype.Key
	if pending != nil {
		keys = append(keys, *pending)
	}
	for _, k := range raws {
		if len(keys) == 0 || keys[len(keys)-1] != k {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	last := keys[len(keys)-1]
	return keys[:len(keys)-1], &last
}

// splitPoisoned splits changes a consumer was given into those it
// delivered and those it did not: for each poisoned report, the refused
// change and its report's later changes.
func splitPoisoned(out []dtetype.PhaseChange, pe *PoisonError) (delivered, refused []dtetype.PhaseChange, first map[dtetype.Key]Poisoned) {
	first = map[dtetype.Key]Poisoned{}
	for _, p := range pe.Poisoned {
		first[p.Key] = p
	}
	reached := map[dtetype.Key]bool{}
	for _, c := range out {
		p, poisoned := first[c.Key]
		if !poisoned || (!reached[c.Key] && c.EventID != p.EventID) {
			delivered = append(delivered, c)
			continue
		}
		reached[c.Key] = true
		refused = append(refused, c)
	}
	return delivered, refused, first
}

// quarantinePoisoned puts in quarantine, for each poisoned report, the
// change Temporal refused (reason too_large) and its report's later changes
// of the batch (held), marks the report held, and returns the changes that
// were delivered.
func (l *leader) quarantinePoisoned(ctx context.Context, out []dtetype.PhaseChange, raws []*legacy.RawChange, backfill string, pe *PoisonError) ([]dtetype.PhaseChange, error) {
	delivered, refused, first := splitPoisoned(out, pe)
	rawOf := map[string]*legacy.RawChange{}
	for _, r := range raws {
		rawOf[eventID(r, backfill)] = r
	}
	var q []quarantined
	for _, c := range refused {
		e := quarantined{eventID: c.EventID, raw: rawOf[c.EventID], seq: c.Seq, res: legacy.Result{Key: c.Key, HasKey: true},
			err: &legacy.TranslateError{Reason: legacy.ReasonHeld, Detail: fmt.Sprintf("report %s has an earlier change Temporal refuses", c.Key)}}
		if p := first[c.Key]; c.EventID == p.EventID {
			e.err = &legacy.TranslateError{Reason: p.Reason, Detail: "Temporal refuses this change for good: " + p.Detail}
		}
		q = append(q, e)
		l.held[c.Key] = true
	}
	return delivered, l.quarantine(ctx, q)
}

// eventID is stable across redelivery: the change id for captured changes,
// the snapshot and row for backfilled rows.
func eventID(raw *legacy.RawChange, backfill string) string {
	if backfill == "" {
		return "c" + strconv.FormatInt(raw.ID, 10)
	}
	return "s" + backfill + ":" + raw.RowKey
}

type quarantined struct {
	eventID string
	raw     *legacy.RawChange
	seq     int64
	res     legacy.Result
	err     *legacy.TranslateError
}

// quarantine records changes with their raw values.
func (l *leader) quarantine(ctx context.Context, q []quarantined) error {
	if len(q) == 0 {
		return nil
	}
	entries := make([]store.Quarantined, 0, len(q))
	for _, e := range q {
		raw, err := json.Marshal(e.raw)
		if err != nil {
			return err
		}
		var key *dtetype.Key
		if e.res.HasKey {
			k := e.res.Key
			key = &k
		}
		var changeID *int64
		if e.raw.ID != 0 {
			changeID = &e.raw.ID
		}
		entries = append(entries, store.Quarantined{EventID: e.eventID, ChangeID: changeID, Key: key, Reason: e.err.Reason,
			Detail: e.err.Detail, Raw: raw, Seq: e.seq})
	}
	if err := l.st.Quarantine(ctx, entries); err != nil {
		return err
	}
	for _, e := range q {
		l.m.Quarantined.WithLabelValues(e.err.Reason).Inc()
		l.log.Warn("change quarantined", "event_id", e.eventID, "reason", e.err.Reason, "detail", e.err.Detail)
	}
	return nil
}

// backfill emits every legacy row from one consistent snapshot, then joins
// the stream at that snapshot: changes visible in it are covered by the rows
// emitted, and exactly the others follow in the stream.
func (l *leader) backfill(ctx context.Context) error {
	tx, err := l.conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("error starting backfill: %w", err)
	}
	defer tx.Rollback(context.Background())
	imported := l.decoder != nil && l.decoder.snapshot != ""
	if imported {
		// A new slot's backfill reads the snapshot the slot exported:
		// streaming starts at the slot's consistent point, so every legacy
		// transaction is in exactly one of the two.
		if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT "+quoteLiteral(l.decoder.snapshot)); err != nil {
			return fmt.Errorf("error reading the replication slot's snapshot: %w", err)
		}
	}
	es, err := l.on.On(tx).EpochSnapshot(ctx, l.cfg.Consumer)
	if err != nil {
		return fmt.Errorf("error taking the backfill snapshot: %w", err)
	}
	if l.decoder != nil {
		l.startDecoder() // the snapshot is ours now, and the slot may stream
		l.decoder.snapshot = ""
	}
	snap := es.Snapshot
	id := snapshotID(snap)
	l.backfillPending = nil
	l.log.Info("backfill started", "table", l.table.Name, "snapshot", snap)
	if _, err := tx.Exec(ctx, "DECLARE backfill NO SCROLL CURSOR FOR "+l.table.SnapshotSQL(false)); err != nil {
		return fmt.Errorf("error reading %s: %w", l.table.Name, err)
	}
	fetch := "FETCH " + strconv.Itoa(l.cfg.BatchSize) + " FROM backfill"
	rowsRead := 0
	for {
		rows, err := tx.Query(ctx, fetch)
		if err != nil {
			return fmt.Errorf("error reading %s: %w", l.table.Name, err)
		}
		var raws []*legacy.RawChange
		for rows.Next() {
			raw, err := l.table.ScanSnapshot(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("error reading %s: %w", l.table.Name, err)
			}
			raws = append(raws, raw)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("error reading %s: %w", l.table.Name, err)
		}
		if len(raws) == 0 {
			break
		}
		rowsRead += len(raws)
		if err := l.processUntilAcked(ctx, raws, id); err != nil {
			return err
		}
	}
	var last []dtetype.Key
	if l.backfillPending != nil {
		last = []dtetype.Key{*l.backfillPending}
	}
	if err := l.c.Deliver(ctx, Batch{Backfill: id, Last: true, History: last}); err != nil {
		return fmt.Errorf("consumer refused the end of backfill: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error finishing backfill: %w", err)
	}
	if !imported {
		if err := l.addFloors(ctx, nil, snap, es.WAL); err != nil {
			return err
		}
	}
	l.cp.Acked, l.cp.Epoch, l.cp.LastID, l.cp.Backfill = &snap, nil, 0, false
	if err := l.save(ctx, true); err != nil {
		return err
	}
	l.m.Backfills.Inc()
	l.log.Info("backfill finished; streaming from its snapshot", "rows", rowsRead, "snapshot", snap)
	return nil
}

// processUntilAcked delivers a backfill batch, retrying a failing consumer:
// a backfill cannot resume mid-way, so it waits rather than start over.
func (l *leader) processUntilAcked(ctx context.Context, raws []*legacy.RawChange, backfill string) error {
	backoff := 100 * time.Millisecond
	for {
		err := l.process(ctx, raws, backfill)
		var ce *consumerError
		if !errors.As(err, &ce) {
			return err
		}
		l.failing(ce.err)
		l.log.Warn("consumer failed during backfill; retrying", "error", ce.err, "retry_in", backoff)
		l.m.Errors.WithLabelValues("consumer").Inc()
		if err := sleep(ctx, backoff); err != nil {
			return err
		}
		backoff = min(backoff*2, l.cfg.RetryBackoff)
	}
}

// maintain prunes acknowledged changes past retention and measures the
// backlog.
func (l *leader) maintain(ctx context.Context) error {
	if l.cfg.Ephemeral {
		return nil // it owns nothing to maintain
	}
	// A live consumer renews its lease, so pruning waits for it.
	if err := l.st.TouchCheckpoint(ctx, l.cp); err != nil {
		return err
	}
	if l.cfg.Retention > 0 {
		n, err := l.st.Prune(ctx, l.cfg.Retention, l.cfg.ConsumerLease)
		if err != nil {
			return err
		}
		l.m.Pruned.Add(float64(n))
	}
	if l.ownsQuarantine() {
		// The decoder saw each mark within moments; an hour is ample.
		if err := l.st.PruneWriteMarks(ctx, time.Hour); err != nil {
			return err
		}
	}
	if err := l.refreshRequests(ctx); err != nil {
		return err
	}
	b, err := l.st.BacklogOf(ctx, l.cfg.Consumer)
	if err != nil {
		return err
	}
	l.m.Backlog.Set(float64(b.Changes))
	l.m.BacklogAge.Set(b.Age.Seconds())
	return nil
}
