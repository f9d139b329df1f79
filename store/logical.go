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

// LoggedChange is a legacy change decoded from a replication slot, as
// log-based capture writes it to the change log.
type LoggedChange struct {
	Op       string
	Source   string
	Old, New []byte
	Origin   string
	// TxTime is when legacy's transaction committed; SourceXID is its id
	// (xid8) and SourceLSN its commit's WAL position.
	TxTime    time.Time
	SourceXID uint64
	SourceLSN string
}

// WriteLogged appends decoded changes to the change log, in order. Run it
// in the transaction that also records the slot's position.
func (s *Store) WriteLogged(ctx context.Context, changes []LoggedChange) error {
	n := len(changes)
	ops, sources, origins, lsns, xids := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	olds, news := make([]*string, n), make([]*string, n)
	times := make([]time.Time, n)
	for i, c := range changes {
		ops[i], sources[i], origins[i], lsns[i] = c.Op, c.Source, c.Origin, c.SourceLSN
		xids[i] = strconv.FormatUint(c.SourceXID, 10)
		times[i] = c.TxTime
		if c.Old != nil {
			o := string(c.Old)
			olds[i] = &o
		}
		if c.New != nil {
			v := string(c.New)
			news[i] = &v
		}
	}
	if _, err := s.db.Exec(ctx, s.sql("WriteLogged"), ops, sources, olds, news, origins, times, xids, lsns); err != nil {
		return fmt.Errorf("error writing decoded changes to the change log: %w", err)
	}
	return nil
}

// CurrentXid returns the running transaction's id (xid8), assigning one.
func (s *Store) CurrentXid(ctx context.Context) (uint64, error) {
	var x string
	if err := s.db.QueryRow(ctx, s.sql("CurrentXid")).Scan(&x); err != nil {
		return 0, err
	}
	return strconv.ParseUint(x, 10, 64)
}

// LoggedPosition returns how far slot's changes are in the change log (a
// WAL position as text), and whether the slot has a position at all.
func (s *Store) LoggedPosition(ctx context.Context, slot string) (string, bool, error) {
	var lsn string
	err := s.db.QueryRow(ctx, s.sql("LoggedPosition"), slot).Scan(&lsn)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("error reading the position of slot %s: %w", slot, err)
	}
	return lsn, true, nil
}

// SetLoggedPosition records that the change log holds slot's changes up to
// lsn; it never moves a position back.
func (s *Store) SetLoggedPosition(ctx context.Context, slot, lsn string) error {
	if _, err := s.db.Exec(ctx, s.sql("SetLoggedPosition"), slot, lsn); err != nil {
		return fmt.Errorf("error recording the position of slot %s: %w", slot, err)
	}
	return nil
}

// ResetLoggedPositions records a new slot's starting position and forgets
// every other slot's.
func (s *Store) ResetLoggedPositions(ctx context.Context, slot, lsn string) error {
	if _, err := s.db.Exec(ctx, s.sql("ResetLoggedPositions"), slot, lsn); err != nil {
		return fmt.Errorf("error recording the start of slot %s: %w", slot, err)
	}
	return nil
}

// MarkBridgeWrite marks the running transaction as the bridge's own
// write-back, so neither capture mode takes its changes for legacy's.
func (s *Store) MarkBridgeWrite(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, s.sql("MarkBridgeWrite"), dtetype.OriginBridge); err != nil {
		return fmt.Errorf("error marking the write-back's transaction: %w", err)
	}
	return nil
}

// PruneWriteMarks deletes write marks older than age: the decoder has long
// seen them.
func (s *Store) PruneWriteMarks(ctx context.Context, age time.Duration) error {
	if _, err := s.db.Exec(ctx, s.sql("PruneWriteMarks"), age.Seconds()); err != nil {
		return fmt.Errorf("error pruning write marks: %w", err)
	}
	return nil
}

// Floor is a snapshot whose rows were delivered (by a backfill, for every
// report, or a re-drive, for one): a change whose legacy transaction is
// visible in it, written to the change log later, is covered by those rows.
type Floor struct {
	// Key is the re-driven report; nil for a backfill's floor.
	Key      *dtetype.Key
	Snapshot string
	// LSN is the WAL position before which every transaction visible in
	// Snapshot committed: once the change log holds everything up to it,
	// the floor can go.
	LSN string
}

// AddFloors records floors at snapshot snap (WAL position lsn) for keys,
// or one for every report when keys is empty.
func (s *Store) AddFloors(ctx context.Context, consumer string, keys []dtetype.Key, snap, lsn string) error {
	cycles, reports := make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		cycles[i], reports[i] = k.CycleID, k.ReportID
	}
	if _, err := s.db.Exec(ctx, s.sql("AddFloors"), consumer, cycles, reports, snap, lsn); err != nil {
		return fmt.Errorf("error recording capture floors: %w", err)
	}
	return nil
}

// Floors returns the consumer's floors, oldest first.
func (s *Store) Floors(ctx context.Context, consumer string) ([]Floor, error) {
	rows, err := s.db.Query(ctx, s.sql("Floors"), consumer)
	if err != nil {
		return nil, fmt.Errorf("error reading capture floors: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Floor, error) {
		var f Floor
		var c, rep *int64
		if err := r.Scan(&c, &rep, &f.Snapshot, &f.LSN); err != nil {
			return f, err
		}
		if c != nil && rep != nil {
			f.Key = &dtetype.Key{CycleID: *c, ReportID: *rep}
		}
		return f, nil
	})
}

// DropFloors deletes the consumer's floors at or below lsn.
func (s *Store) DropFloors(ctx context.Context, consumer, lsn string) error {
	if _, err := s.db.Exec(ctx, s.sql("DropFloors"), consumer, lsn); err != nil {
		return fmt.Errorf("error dropping capture floors: %w", err)
	}
	return nil
}

// NotifyReaders wakes the readers waiting for changes, if any wait.
func (s *Store) NotifyReaders(ctx context.Context) error {
	if _, err := s.db.Exec(ctx, s.sql("NotifyReaders"), s.name+"_changes"); err != nil {
		return fmt.Errorf("error waking readers: %w", err)
	}
	return nil
}
