package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// ErrLostLeadership means another reader took over the checkpoint.
var ErrLostLeadership = errors.New("capture leadership lost: another reader took over")

// leaderLockKey names a consumer's leader lock.
func (s *Store) leaderLockKey(consumer string) string { return s.name + "/" + consumer }

// TryLeaderLock tries to take the consumer's leader lock, a session-level
// advisory lock, on the store's connection (bind it with On).
func (s *Store) TryLeaderLock(ctx context.Context, consumer string) (bool, error) {
	var ok bool
	if err := s.db.QueryRow(ctx, s.sql("TryLeaderLock"), s.leaderLockKey(consumer)).Scan(&ok); err != nil {
		return false, fmt.Errorf("error taking the leader lock: %w", err)
	}
	return ok, nil
}

// LeaderAlive reports whether some process holds the consumer's leader
// lock, that is, whether a capture reader is leading it now.
func (s *Store) LeaderAlive(ctx context.Context, consumer string) (bool, error) {
	var ok bool
	if err := s.db.QueryRow(ctx, s.sql("LeaderAlive"), s.leaderLockKey(consumer)).Scan(&ok); err != nil {
		return false, fmt.Errorf("error looking for a capture leader: %w", err)
	}
	return ok, nil
}

// SetWaiting asks writers to NOTIFY the consumer until until, or stops
// asking (nil).
func (s *Store) SetWaiting(ctx context.Context, consumer string, until *time.Time) error {
	if _, err := s.db.Exec(ctx, s.sql("SetWaiting"), consumer, until); err != nil {
		return fmt.Errorf("error updating the reader's wake-up request: %w", err)
	}
	return nil
}

// Checkpoint is a consumer's position in the change stream, as its leader
// keeps it.
type Checkpoint struct {
	Consumer string
	// Acked and Epoch are snapshots as text: every change visible in Acked
	// is acknowledged; Epoch bounds the epoch in progress, if any.
	Acked, Epoch *string
	// LastID is the last change acknowledged in the epoch in progress.
	LastID int64
	// Seq numbers delivered changes.
	Seq int64
	// Token is the leader epoch that fences out earlier leaders.
	Token int64
	// Backfill is set while a backfill is requested.
	Backfill bool
}

// TakeCheckpoint creates the consumer's checkpoint if needed and takes it
// over, fencing out any earlier leader.
func (s *Store) TakeCheckpoint(ctx context.Context, consumer, identity string) (*Checkpoint, error) {
	if _, err := s.db.Exec(ctx, s.sql("CreateCheckpoint"), consumer); err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error creating the %s checkpoint: %w", consumer, err)}
	}
	cp := &Checkpoint{Consumer: consumer}
	if err := s.db.QueryRow(ctx, s.sql("TakeCheckpoint"), consumer, identity).Scan(&cp.Acked, &cp.Epoch, &cp.LastID, &cp.Seq, &cp.Token, &cp.Backfill); err != nil {
		return nil, fmt.Errorf("error reading the %s checkpoint: %w", consumer, err)
	}
	return cp, nil
}

// NotInstalledError means the bridge schema is missing or incomplete.
type NotInstalledError struct{ Err error }

func (e *NotInstalledError) Error() string {
	return e.Err.Error() + " (is the bridge installed? run dtebridge install)"
}

// Unwrap returns the database error.
func (e *NotInstalledError) Unwrap() error { return e.Err }

// Requests reads what has been asked of the consumer's leader: a backfill,
// and whether re-drives are pending.
func (s *Store) Requests(ctx context.Context, consumer string) (backfill, redrives bool, err error) {
	if err := s.db.QueryRow(ctx, s.sql("Requests"), consumer).Scan(&backfill, &redrives); err != nil {
		return false, false, fmt.Errorf("error reading the %s checkpoint: %w", consumer, err)
	}
	return backfill, redrives, nil
}

// SaveCheckpoint persists cp, fenced by its token; backfilled also clears
// the backfill request and records its end.
func (s *Store) SaveCheckpoint(ctx context.Context, cp *Checkpoint, backfilled bool) error {
	q := s.sql("SaveCheckpoint")
	if backfilled {
		q = s.sql("SaveBackfillCheckpoint")
	}
	tag, err := s.db.Exec(ctx, q, cp.Consumer, cp.Acked, cp.Epoch, cp.LastID, cp.Seq, cp.Token)
	if err != nil {
		return fmt.Errorf("error saving the %s checkpoint: %w", cp.Consumer, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLostLeadership
	}
	return nil
}

// EpochSnap is a snapshot taken to bound an epoch (or a backfill, or a
// re-drive), with what was true in it.
type EpochSnap struct {
	// Snapshot is the snapshot, as text.
	Snapshot string
	// Redrives says whether re-drives are pending for the consumer.
	Redrives bool
	// Logged is how far the change log holds legacy's transactions as of
	// the snapshot under log-based capture (a WAL position); empty under
	// trigger capture.
	Logged string
	// WAL is the server's WAL insert position read just after the
	// snapshot was taken: every transaction visible in the snapshot
	// committed before it.
	WAL string
}

// EpochSnapshot takes the snapshot that bounds the next epoch.
func (s *Store) EpochSnapshot(ctx context.Context, consumer string) (EpochSnap, error) {
	var e EpochSnap
	var logged *string
	if err := s.db.QueryRow(ctx, s.sql("EpochSnapshot"), consumer).Scan(&e.Snapshot, &e.Redrives, &logged, &e.WAL); err != nil {
		return e, fmt.Errorf("error taking a snapshot: %w", err)
	}
	if logged != nil {
		e.Logged = *logged
	}
	return e, nil
}

// Change is a captured change as the capture trigger recorded it.
type Change struct {
	ID         int64
	Op         string
	Source     string
	Old, New   []byte
	Origin     string
	TxTime     time.Time
	CapturedAt time.Time
	// TxID is the legacy transaction's id (xid8, as text).
	TxID string
	// Logged means log-based capture wrote the change, after legacy's
	// transaction committed (TxID), in a transaction of its own.
	Logged bool
}

// Epoch reads the changes of one commit epoch (committed after acked and
// visible in epoch, after lastID) through a cursor, in id order. It runs in
// the store's transaction (bind it with On).
type Epoch struct {
	tx    DB
	fetch string
}

// OpenEpoch declares the epoch's cursor.
func (s *Store) OpenEpoch(ctx context.Context, acked, epoch string, lastID int64, batch int) (*Epoch, error) {
	if _, err := s.db.Exec(ctx, s.sql("DeclareEpoch"), acked, epoch, lastID); err != nil {
		return nil, fmt.Errorf("error opening the epoch: %w", err)
	}
	return &Epoch{tx: s.db, fetch: "FETCH " + strconv.Itoa(batch) + " FROM epoch"}, nil
}

// Next returns the next batch of changes, none at the end.
func (e *Epoch) Next(ctx context.Context) ([]Change, error) {
	rows, err := e.tx.Query(ctx, e.fetch)
	if err != nil {
		return nil, fmt.Errorf("error reading changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Change, error) {
		var c Change
		err := r.Scan(&c.ID, &c.Op, &c.Source, &c.Old, &c.New, &c.Origin, &c.TxTime, &c.CapturedAt, &c.TxID, &c.Logged)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("error reading changes: %w", err)
	}
	return out, nil
}

// RequestBackfill asks the consumer's leader for a new backfill.
func (s *Store) RequestBackfill(ctx context.Context, consumer string) error {
	if _, err := s.db.Exec(ctx, s.sql("RequestBackfill"), consumer); err != nil {
		return fmt.Errorf("error requesting a backfill: %w", err)
	}
	return nil
}

// Backlog is a consumer's unacknowledged committed changes.
type Backlog struct {
	Changes int64
	// Age is the age of the oldest, or 0.
	Age time.Duration
}

// BacklogOf measures a consumer's backlog. Before its first backfill every
// change counts.
func (s *Store) BacklogOf(ctx context.Context, consumer string) (Backlog, error) {
	var b Backlog
	var age float64
	if err := s.db.QueryRow(ctx, s.sql("Backlog"), consumer).Scan(&b.Changes, &age); err != nil {
		return b, fmt.Errorf("error measuring the backlog: %w", err)
	}
	b.Age = time.Duration(age * float64(time.Second))
	return b, nil
}

// PendingByReport returns, per report, since when the consumer has had
// changes of it unacknowledged. cycleCol and reportCol name the legacy
// columns that hold the report's key.
func (s *Store) PendingByReport(ctx context.Context, consumer, cycleCol, reportCol string) (map[dtetype.Key]time.Time, error) {
	rows, err := s.db.Query(ctx, s.sql("PendingByReport"), consumer, cycleCol, reportCol)
	if err != nil {
		return nil, fmt.Errorf("error reading the change backlog: %w", err)
	}
	return collectSince(rows, "error reading the change backlog")
}

func collectSince(rows pgx.Rows, what string) (map[dtetype.Key]time.Time, error) {
	defer rows.Close()
	out := map[dtetype.Key]time.Time{}
	for rows.Next() {
		var k dtetype.Key
		var since time.Time
		if err := rows.Scan(&k.CycleID, &k.ReportID, &since); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out[k] = since
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// Prune deletes changes every live consumer has acknowledged that are
// older than retention, in chunks, and returns how many it deleted. A
// consumer other than the mirror that has not renewed its checkpoint within
// lease is not live.
func (s *Store) Prune(ctx context.Context, retention, lease time.Duration) (int64, error) {
	var total int64
	for {
		tag, err := s.db.Exec(ctx, s.sql("Prune"), retention.Seconds(), lease.Seconds())
		if err != nil {
			return total, fmt.Errorf("error pruning changes: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < 10000 {
			return total, nil
		}
	}
}

// CheckpointStatus is a consumer's position, as dtebridge status shows it.
type CheckpointStatus struct {
	Consumer          string     `json:"consumer"`
	Leader            string     `json:"leader"`
	AckedSnapshot     string     `json:"acked_snapshot"`
	Seq               int64      `json:"seq"`
	BackfillRequested bool       `json:"backfill_requested"`
	BackfilledAt      *time.Time `json:"backfilled_at"`
	UpdatedAt         time.Time  `json:"updated_at"`
	// Expired means the consumer has not renewed its checkpoint within the
	// lease, so it no longer holds back pruning.
	Expired bool `json:"expired"`
}

// TouchCheckpoint renews a leader's checkpoint lease.
func (s *Store) TouchCheckpoint(ctx context.Context, cp *Checkpoint) error {
	tag, err := s.db.Exec(ctx, s.sql("TouchCheckpoint"), cp.Consumer, cp.Token)
	if err != nil {
		return fmt.Errorf("error renewing the %s checkpoint: %w", cp.Consumer, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLostLeadership
	}
	return nil
}

// Checkpoints lists every consumer's checkpoint, judging expiry by the
// consumer lease (capture.consumer_lease).
func (s *Store) Checkpoints(ctx context.Context, lease time.Duration) ([]CheckpointStatus, error) {
	rows, err := s.db.Query(ctx, s.sql("Checkpoints"), lease.Seconds())
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading checkpoints: %w", err)}
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CheckpointStatus, error) {
		var c CheckpointStatus
		err := r.Scan(&c.Consumer, &c.Leader, &c.AckedSnapshot, &c.Seq, &c.BackfillRequested, &c.BackfilledAt, &c.UpdatedAt, &c.Expired)
		return c, err
	})
}

// DropCheckpoint removes a consumer's checkpoint, so it no longer holds
// back retention.
func (s *Store) DropCheckpoint(ctx context.Context, consumer string) error {
	if _, err := s.db.Exec(ctx, s.sql("DropCheckpoint"), consumer); err != nil {
		return fmt.Errorf("error removing the %s checkpoint: %w", consumer, err)
	}
	return nil
}

// ChangeCount returns the number of changes in the change log.
func (s *Store) ChangeCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, s.sql("ChangeCount")).Scan(&n); err != nil {
		return 0, fmt.Errorf("error counting changes: %w", err)
	}
	return n, nil
}

// WakeCapture wakes an idle capture leader, so it serves a request now
// rather than at its next poll.
func (s *Store) WakeCapture(ctx context.Context) error {
	_, err := s.db.Exec(ctx, s.sql("WakeCapture"), s.name+"_changes")
	return err
}

// ReportChange is a captured change of one report, for diagnosis.
type ReportChange struct {
	ID         int64     `json:"id"`
	Op         string    `json:"op"`
	Origin     string    `json:"origin"`
	CapturedAt time.Time `json:"captured_at"`
}

// ReportChanges returns report k's captured changes still in the log;
// cycleCol and reportCol name the legacy columns that hold its key.
func (s *Store) ReportChanges(ctx context.Context, k dtetype.Key, cycleCol, reportCol string) ([]ReportChange, error) {
	rows, err := s.db.Query(ctx, s.sql("ReportChanges"), strconv.FormatInt(k.CycleID, 10), strconv.FormatInt(k.ReportID, 10), cycleCol, reportCol)
	if err != nil {
		return nil, fmt.Errorf("error reading the changes of %s: %w", k, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ReportChange, error) {
		var c ReportChange
		err := r.Scan(&c.ID, &c.Op, &c.Origin, &c.CapturedAt)
		return c, err
	})
}

// TxPhaseLabels returns the phase labels of report k's rows that legacy
// transaction txID changed (the labels before and after); cycleCol,
// reportCol and phaseCol name the legacy columns that hold them.
func (s *Store) TxPhaseLabels(ctx context.Context, txID string, k dtetype.Key, cycleCol, reportCol, phaseCol string) ([]string, error) {
	rows, err := s.db.Query(ctx, s.sql("TxPhaseLabels"), txID, cycleCol, reportCol,
		strconv.FormatInt(k.CycleID, 10), strconv.FormatInt(k.ReportID, 10), phaseCol)
	if err != nil {
		return nil, fmt.Errorf("error reading legacy transaction %s's changes to %s: %w", txID, k, err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
