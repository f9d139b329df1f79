package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/synapsedte/dtebridge/dtetype"
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

// ErrLostLeadership means another reader took over the checkpoint.
var ErrLostLeadership = errors.New("capture leadership lost: another reader took over")

// Batch is a group of translated changes delivered to a Consumer.
type Batch struct {
	// Changes are in delivery order.
	Changes []dtetype.PhaseChange
	// Backfill is the snapshot id when the batch is part of a backfill.
	Backfill string
	// Last marks the final batch of a backfill.
	Last bool
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
	// Capture locates the bridge schema and the legacy table.
	Capture *CaptureConfig
	// Consumer names the checkpoint. Default: mirror.
	Consumer string
	// BatchSize is the most changes per batch. Default: 500.
	BatchSize int
	// PollInterval is how long an idle reader waits for a NOTIFY before it
	// looks anyway. Default: 1s.
	PollInterval time.Duration
	// StandbyInterval is how often a standby tries to take leadership.
	// Default: 1s.
	StandbyInterval time.Duration
	// Retention is how long acknowledged changes are kept. Default: 168h.
	// Negative: never prune.
	Retention time.Duration
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
}

// Reader delivers captured changes to one consumer, gap-free and in order.
// Any number of readers may run; one leads (by advisory lock) and the others
// wait as hot standbys.
type Reader struct {
	pool *pgxpool.Pool
	tr   *Translator
	cfg  ReaderConfig
	cap  *CaptureConfig
	log  *slog.Logger
	m    *Metrics

	schema string // quoted
}

// NewReader returns a reader of the change table on pool.
func NewReader(pool *pgxpool.Pool, tr *Translator, cfg *ReaderConfig) *Reader {
	c := ReaderConfig{}
	if cfg != nil {
		c = *cfg
	}
	c.Capture = c.Capture.withDefaults()
	if c.Consumer == "" {
		c.Consumer = "mirror"
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.StandbyInterval <= 0 {
		c.StandbyInterval = time.Second
	}
	if c.Retention == 0 {
		c.Retention = 168 * time.Hour
	}
	if c.MaintenanceInterval <= 0 {
		c.MaintenanceInterval = 10 * time.Second
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 10 * time.Second
	}
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
	return &Reader{pool: pool, tr: tr, cfg: c, cap: c.Capture, log: c.Logger, m: c.Metrics,
		schema: pgx.Identifier{c.Capture.Schema}.Sanitize()}
}

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
	conn, err := pgx.ConnectConfig(ctx, r.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("error connecting: %w", err)
	}
	defer conn.Close(context.Background())
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(hashtext('dtebridge.capture'), hashtext($1))`,
		r.cap.Schema+"/"+r.cfg.Consumer).Scan(&ok); err != nil {
		return fmt.Errorf("error taking the leader lock: %w", err)
	}
	if !ok {
		return nil // another reader leads; stay on standby
	}
	r.m.Leader.Set(1)
	defer r.m.Leader.Set(0)
	r.log.Info("capture leadership taken", "consumer", r.cfg.Consumer, "identity", r.cfg.Identity)
	l := &leader{Reader: r, conn: conn, c: c}
	return l.run(ctx)
}

// checkpoint mirrors a checkpoints row.
type checkpoint struct {
	acked, epoch *string // snapshots as text
	lastID       int64
	seq          int64
	token        int64
	backfill     bool
}

// leader is a reader while it holds the leader lock on conn.
type leader struct {
	*Reader
	conn *pgx.Conn
	c    Consumer
	cp   checkpoint
	held map[dtetype.Key]bool

	// waiting is whether this reader has asked writers to notify it, until
	// waitingUntil.
	waiting      bool
	waitingUntil time.Time
}

// waitingLease is how long a reader's request for NOTIFYs lasts; an idle
// reader renews it, and a dead one's lapses, so writers stop notifying.
const waitingLease = 5 * time.Second

// setWaiting asks writers to notify this reader, or stops asking. It writes
// only on a change, or to renew the lease.
func (l *leader) setWaiting(ctx context.Context, on bool) error {
	if on == l.waiting && !on {
		return nil
	}
	var until *time.Time
	if on {
		u := time.Now().Add(waitingLease)
		until = &u
	}
	_, err := l.pool.Exec(ctx, "INSERT INTO "+l.schema+`.readers (consumer, waiting_until) VALUES ($1, $2)
		ON CONFLICT (consumer) DO UPDATE SET waiting_until = excluded.waiting_until`, l.cfg.Consumer, until)
	if err != nil {
		return fmt.Errorf("error updating the reader's wake-up request: %w", err)
	}
	l.waiting = on
	if until != nil {
		l.waitingUntil = *until
	}
	return nil
}

func (l *leader) run(ctx context.Context) error {
	if _, err := l.conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.cap.channel()}.Sanitize()); err != nil {
		return fmt.Errorf("error listening: %w", err)
	}
	if err := l.takeCheckpoint(ctx); err != nil {
		return err
	}
	if err := l.loadHeld(ctx); err != nil {
		return err
	}
	nextMaintenance := time.Now()
	backoff := 100 * time.Millisecond
	for {
		if l.cp.acked == nil || l.cp.backfill {
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
		backoff = 100 * time.Millisecond
		if time.Now().After(nextMaintenance) {
			if err := l.maintain(ctx); err != nil {
				return err
			}
			nextMaintenance = time.Now().Add(l.cfg.MaintenanceInterval)
		}
		if n > 0 {
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

// takeCheckpoint creates the checkpoint row if needed and fences out any
// earlier leader by bumping leader_epoch.
func (l *leader) takeCheckpoint(ctx context.Context) error {
	q := "INSERT INTO " + l.schema + `.checkpoints (consumer) VALUES ($1) ON CONFLICT (consumer) DO NOTHING`
	if _, err := l.conn.Exec(ctx, q, l.cfg.Consumer); err != nil {
		return &fatalError{fmt.Errorf("error creating the %s checkpoint (is the bridge installed? run dtebridge install): %w", l.cfg.Consumer, err)}
	}
	q = "UPDATE " + l.schema + `.checkpoints SET leader_epoch = leader_epoch + 1, leader = $2, updated_at = now()
		WHERE consumer = $1
		RETURNING acked_snapshot::text, epoch_snapshot::text, epoch_last_id, seq, leader_epoch, backfill_requested_at IS NOT NULL`
	cp := &l.cp
	if err := l.conn.QueryRow(ctx, q, l.cfg.Consumer, l.cfg.Identity).Scan(&cp.acked, &cp.epoch, &cp.lastID, &cp.seq, &cp.token, &cp.backfill); err != nil {
		return fmt.Errorf("error reading the %s checkpoint: %w", l.cfg.Consumer, err)
	}
	return nil
}

// refreshRequests picks up a backfill requested by dtebridge backfill.
func (l *leader) refreshRequests(ctx context.Context) error {
	q := "SELECT backfill_requested_at IS NOT NULL FROM " + l.schema + ".checkpoints WHERE consumer = $1"
	if err := l.conn.QueryRow(ctx, q, l.cfg.Consumer).Scan(&l.cp.backfill); err != nil {
		return fmt.Errorf("error reading the %s checkpoint: %w", l.cfg.Consumer, err)
	}
	return nil
}

// save persists the checkpoint, fenced by the leader token.
func (l *leader) save(ctx context.Context, extra string) error {
	q := "UPDATE " + l.schema + `.checkpoints SET acked_snapshot = $2::pg_snapshot, epoch_snapshot = $3::pg_snapshot,
		epoch_last_id = $4, seq = $5, updated_at = now()` + extra + `
		WHERE consumer = $1 AND leader_epoch = $6`
	tag, err := l.pool.Exec(ctx, q, l.cfg.Consumer, l.cp.acked, l.cp.epoch, l.cp.lastID, l.cp.seq, l.cp.token)
	if err != nil {
		return fmt.Errorf("error saving the %s checkpoint: %w", l.cfg.Consumer, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLostLeadership
	}
	return nil
}

func (l *leader) loadHeld(ctx context.Context) error {
	l.held = map[dtetype.Key]bool{}
	rows, err := l.pool.Query(ctx, "SELECT DISTINCT cycle_id, report_id FROM "+l.schema+
		".quarantine WHERE delivered_at IS NULL AND cycle_id IS NOT NULL AND report_id IS NOT NULL")
	if err != nil {
		return fmt.Errorf("error reading quarantine: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var k dtetype.Key
		if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
			return err
		}
		l.held[k] = true
	}
	return rows.Err()
}

const changeColumns = "id, op, source, old_row, new_row, origin, tx_time, captured_at"

func scanRaw(rows pgx.Rows) (*RawChange, error) {
	var c RawChange
	var old, nw []byte
	if err := rows.Scan(&c.ID, &c.Op, &c.Source, &old, &nw, &c.Origin, &c.TxTime, &c.CapturedAt); err != nil {
		return nil, err
	}
	c.Old, c.New = old, nw
	return &c, nil
}

// runEpoch delivers the current epoch, choosing a new one first if none is in
// progress, and returns how many changes it read.
func (l *leader) runEpoch(ctx context.Context) (int, error) {
	if l.cp.epoch == nil {
		var snap string
		if err := l.conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
			return 0, fmt.Errorf("error taking a snapshot: %w", err)
		}
		if l.cp.acked != nil && *l.cp.acked == snap {
			return 0, nil // nothing has committed since the last epoch
		}
		// The epoch is saved with its first acknowledged batch. Until then a
		// restart simply chooses a later epoch, which contains this one.
		l.cp.epoch, l.cp.lastID = &snap, 0
	}
	tx, err := l.conn.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("error starting the epoch: %w", err)
	}
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, "DECLARE epoch NO SCROLL CURSOR FOR SELECT "+changeColumns+" FROM "+l.schema+`.changes
		WHERE (xid >= pg_snapshot_xmax($1::pg_snapshot) OR xid IN (SELECT pg_snapshot_xip($1::pg_snapshot)))
		  AND pg_visible_in_snapshot(xid, $2::pg_snapshot)
		  AND id > $3
		ORDER BY id`, *l.cp.acked, *l.cp.epoch, l.cp.lastID)
	if err != nil {
		return 0, fmt.Errorf("error opening the epoch: %w", err)
	}
	total := 0
	fetch := "FETCH " + strconv.Itoa(l.cfg.BatchSize) + " FROM epoch"
	for {
		rows, err := tx.Query(ctx, fetch)
		if err != nil {
			return total, fmt.Errorf("error reading changes: %w", err)
		}
		var raws []*RawChange
		for rows.Next() {
			c, err := scanRaw(rows)
			if err != nil {
				rows.Close()
				return total, fmt.Errorf("error reading changes: %w", err)
			}
			raws = append(raws, c)
		}
		if err := rows.Err(); err != nil {
			return total, fmt.Errorf("error reading changes: %w", err)
		}
		if len(raws) == 0 {
			break
		}
		total += len(raws)
		l.m.Read.Add(float64(len(raws)))
		if err := l.process(ctx, raws, ""); err != nil {
			return total, err
		}
		if len(raws) < l.cfg.BatchSize {
			break // a short batch is the epoch's last: one checkpoint write closes it
		}
		l.cp.lastID = raws[len(raws)-1].ID
		if err := l.save(ctx, ""); err != nil {
			return total, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return total, fmt.Errorf("error closing the epoch: %w", err)
	}
	l.cp.acked, l.cp.epoch, l.cp.lastID = l.cp.epoch, nil, 0
	if total == 0 {
		// Nothing to acknowledge: the next epoch's save records the newer
		// snapshot, and an idle reader writes nothing.
		return 0, nil
	}
	return total, l.save(ctx, "")
}

// process translates raws, quarantines what cannot be translated (and what
// is held behind it), and delivers the rest. It advances l.cp.seq.
func (l *leader) process(ctx context.Context, raws []*RawChange, backfill string) error {
	var out []dtetype.PhaseChange
	var q []quarantined
	seq := l.cp.seq
	for _, raw := range raws {
		seq++
		res := l.tr.Translate(raw)
		if res.Ignored {
			l.m.Ignored.Inc()
			continue
		}
		eventID := eventID(raw, backfill)
		switch {
		case res.HasKey && l.held[res.Key]:
			q = append(q, quarantined{eventID: eventID, raw: raw, seq: seq, res: res,
				err: &TranslateError{ReasonHeld, fmt.Sprintf("report %s has earlier changes in quarantine", res.Key)}})
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
	if len(out) > 0 || backfill != "" {
		if err := l.c.Deliver(ctx, Batch{Changes: out, Backfill: backfill}); err != nil {
			return &consumerError{err}
		}
	}
	now := time.Now()
	for i := range out {
		l.m.Lag.Observe(now.Sub(out[i].CapturedAt).Seconds())
	}
	l.m.Delivered.Add(float64(len(out)))
	l.cp.seq = seq
	return nil
}

// eventID is stable across redelivery: the change id for captured changes,
// the snapshot and row for backfilled rows.
func eventID(raw *RawChange, backfill string) string {
	if backfill == "" {
		return "c" + strconv.FormatInt(raw.ID, 10)
	}
	return "s" + backfill + ":" + raw.RowKey
}

type quarantined struct {
	eventID string
	raw     *RawChange
	seq     int64
	res     Result
	err     *TranslateError
}

// quarantine records changes with their raw values. Recording is idempotent,
// so a redelivered batch does not duplicate them.
func (l *leader) quarantine(ctx context.Context, q []quarantined) error {
	if len(q) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, e := range q {
		raw, err := json.Marshal(e.raw)
		if err != nil {
			return err
		}
		var cycle, report *int64
		if e.res.HasKey {
			cycle, report = &e.res.Key.CycleID, &e.res.Key.ReportID
		}
		var changeID *int64
		if e.raw.ID != 0 {
			changeID = &e.raw.ID
		}
		batch.Queue("INSERT INTO "+l.schema+`.quarantine (event_id, change_id, cycle_id, report_id, reason, detail, raw, seq)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (event_id) DO NOTHING`,
			e.eventID, changeID, cycle, report, e.err.Reason, e.err.Detail, raw, e.seq)
	}
	if err := l.pool.SendBatch(ctx, batch).Close(); err != nil {
		return fmt.Errorf("error writing quarantine: %w", err)
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
	var snap string
	if err := tx.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&snap); err != nil {
		return fmt.Errorf("error taking the backfill snapshot: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte(snap))
	id := strconv.FormatUint(h.Sum64(), 36)
	table := l.cap.tableIdent().Sanitize()
	keys := make([]string, len(l.cap.Key))
	for i, k := range l.cap.Key {
		keys[i] = "t." + pgx.Identifier{k}.Sanitize()
	}
	l.log.Info("backfill started", "table", l.cap.Table, "snapshot", snap)
	if _, err := tx.Exec(ctx, "DECLARE backfill NO SCROLL CURSOR FOR SELECT to_jsonb(t), concat_ws(',', "+
		strings.Join(keys, ", ")+"), now() FROM "+table+" t ORDER BY "+strings.Join(keys, ", ")); err != nil {
		return fmt.Errorf("error reading %s: %w", l.cap.Table, err)
	}
	fetch := "FETCH " + strconv.Itoa(l.cfg.BatchSize) + " FROM backfill"
	rowsRead := 0
	for {
		rows, err := tx.Query(ctx, fetch)
		if err != nil {
			return fmt.Errorf("error reading %s: %w", l.cap.Table, err)
		}
		var raws []*RawChange
		for rows.Next() {
			var row []byte
			var key string
			var at time.Time
			if err := rows.Scan(&row, &key, &at); err != nil {
				rows.Close()
				return fmt.Errorf("error reading %s: %w", l.cap.Table, err)
			}
			raws = append(raws, &RawChange{Op: "S", Source: l.cap.Table, RowKey: key, New: row, Origin: dtetype.OriginLegacy, TxTime: at, CapturedAt: at})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("error reading %s: %w", l.cap.Table, err)
		}
		if len(raws) == 0 {
			break
		}
		rowsRead += len(raws)
		if err := l.processUntilAcked(ctx, raws, id); err != nil {
			return err
		}
	}
	if err := l.c.Deliver(ctx, Batch{Backfill: id, Last: true}); err != nil {
		return fmt.Errorf("consumer refused the end of backfill: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("error finishing backfill: %w", err)
	}
	l.cp.acked, l.cp.epoch, l.cp.lastID, l.cp.backfill = &snap, nil, 0, false
	if err := l.save(ctx, ", backfill_requested_at = NULL, backfilled_at = now()"); err != nil {
		return err
	}
	l.m.Backfills.Inc()
	l.log.Info("backfill finished; streaming from its snapshot", "rows", rowsRead, "snapshot", snap)
	return nil
}

// processUntilAcked delivers a backfill batch, retrying a failing consumer:
// a backfill cannot resume mid-way, so it waits rather than start over.
func (l *leader) processUntilAcked(ctx context.Context, raws []*RawChange, backfill string) error {
	backoff := 100 * time.Millisecond
	for {
		err := l.process(ctx, raws, backfill)
		var ce *consumerError
		if !errors.As(err, &ce) {
			return err
		}
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
	if l.cfg.Retention > 0 {
		n, err := Prune(ctx, l.pool, l.cap, l.cfg.Retention)
		if err != nil {
			return err
		}
		l.m.Pruned.Add(float64(n))
	}
	if err := l.refreshRequests(ctx); err != nil {
		return err
	}
	b, err := BacklogOf(ctx, l.pool, l.cap, l.cfg.Consumer)
	if err != nil {
		return err
	}
	l.m.Backlog.Set(float64(b.Changes))
	l.m.BacklogAge.Set(b.Age.Seconds())
	return nil
}

// RequestBackfill asks the leading reader of consumer to take a new backfill
// at its next maintenance pass (or at its start, if none runs).
func RequestBackfill(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, consumer string) error {
	cfg = cfg.withDefaults()
	_, err := db.Exec(ctx, `INSERT INTO `+pgx.Identifier{cfg.Schema}.Sanitize()+`.checkpoints AS c (consumer, backfill_requested_at)
		VALUES ($1, now()) ON CONFLICT (consumer) DO UPDATE SET backfill_requested_at = now()`, consumer)
	if err != nil {
		return fmt.Errorf("error requesting a backfill: %w", err)
	}
	return nil
}

// Backlog is the consumer's unacknowledged committed changes.
type Backlog struct {
	Changes int64
	// Age is the age of the oldest, or 0.
	Age time.Duration
}

// BacklogOf measures a consumer's backlog. Before the first backfill every
// change counts.
func BacklogOf(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, consumer string) (Backlog, error) {
	cfg = cfg.withDefaults()
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	var b Backlog
	var age float64
	err := db.QueryRow(ctx, `WITH cp AS (SELECT acked_snapshot s FROM `+schema+`.checkpoints WHERE consumer = $1)
		SELECT count(*), coalesce(extract(epoch FROM now() - min(captured_at)), 0)::float8 FROM `+schema+`.changes
		WHERE (SELECT s FROM cp) IS NULL
		   OR xid >= pg_snapshot_xmax((SELECT s FROM cp)) OR xid IN (SELECT pg_snapshot_xip((SELECT s FROM cp)))`,
		consumer).Scan(&b.Changes, &age)
	if err != nil {
		return b, fmt.Errorf("error measuring the backlog: %w", err)
	}
	b.Age = time.Duration(age * float64(time.Second))
	return b, nil
}

// Prune deletes changes that every consumer has acknowledged and that are
// older than retention, in chunks, and returns how many it deleted.
func Prune(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, retention time.Duration) (int64, error) {
	cfg = cfg.withDefaults()
	schema := pgx.Identifier{cfg.Schema}.Sanitize()
	var total int64
	for {
		tag, err := db.Exec(ctx, `DELETE FROM `+schema+`.changes WHERE id IN (
			SELECT id FROM `+schema+`.changes
			WHERE xid < (SELECT min(pg_snapshot_xmin(acked_snapshot)) FROM `+schema+`.checkpoints)
			  AND NOT EXISTS (SELECT 1 FROM `+schema+`.checkpoints WHERE acked_snapshot IS NULL)
			  AND captured_at < now() - make_interval(secs => $1)
			LIMIT 10000)`, retention.Seconds())
		if err != nil {
			return total, fmt.Errorf("error pruning changes: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}

// Checkpoint is a consumer's position, as dtebridge status shows it.
type Checkpoint struct {
	Consumer          string     `json:"consumer"`
	Leader            string     `json:"leader"`
	AckedSnapshot     string     `json:"acked_snapshot"`
	Seq               int64      `json:"seq"`
	BackfillRequested bool       `json:"backfill_requested"`
	BackfilledAt      *time.Time `json:"backfilled_at,omitempty"`
	UpdatedAt         time.Time  `json:"updated_at"`
}

// Checkpoints lists every consumer's checkpoint.
func Checkpoints(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig) ([]Checkpoint, error) {
	cfg = cfg.withDefaults()
	rows, err := db.Query(ctx, `SELECT consumer, coalesce(leader, ''), coalesce(acked_snapshot::text, ''), seq,
		backfill_requested_at IS NOT NULL, backfilled_at, updated_at FROM `+pgx.Identifier{cfg.Schema}.Sanitize()+`.checkpoints ORDER BY consumer`)
	if err != nil {
		return nil, fmt.Errorf("error reading checkpoints (is the bridge installed? run dtebridge install): %w", err)
	}
	defer rows.Close()
	var out []Checkpoint
	for rows.Next() {
		var c Checkpoint
		if err := rows.Scan(&c.Consumer, &c.Leader, &c.AckedSnapshot, &c.Seq, &c.BackfillRequested, &c.BackfilledAt, &c.UpdatedAt); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DropCheckpoint removes a consumer's checkpoint, so it no longer holds back
// retention.
func DropCheckpoint(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig, consumer string) error {
	cfg = cfg.withDefaults()
	_, err := db.Exec(ctx, `DELETE FROM `+pgx.Identifier{cfg.Schema}.Sanitize()+`.checkpoints WHERE consumer = $1`, consumer)
	return err
}

// ChangeCount returns the number of changes in the change table.
func ChangeCount(ctx context.Context, db *pgxpool.Pool, cfg *CaptureConfig) (int64, error) {
	cfg = cfg.withDefaults()
	var n int64
	err := db.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{cfg.Schema}.Sanitize()+`.changes`).Scan(&n)
	return n, err
}
