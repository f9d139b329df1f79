package adapter

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// floor is a store.Floor, parsed: rows read in snapshot were delivered, so
// a logged change whose legacy transaction the snapshot sees is covered.
type floor struct {
	key  *dtetype.Key
	snap snapshot
	lsn  pglogrepl.LSN
	text store.Floor
}

// snapshot is a pg_snapshot: xmin:xmax:xip,...
type snapshot struct {
	xmin, xmax uint64
	xip        map[uint64]bool
}

func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("malformed snapshot %q", s)
	}
	var sn snapshot
	var err error
	if sn.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return sn, fmt.Errorf("malformed snapshot %q", s)
	}
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return sn, fmt.Errorf("malformed snapshot %q", s)
	}
	if parts[2] != "" {
		sn.xip = map[uint64]bool{}
		for _, x := range strings.Split(parts[2], ",") {
			v, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return sn, fmt.Errorf("malformed snapshot %q", s)
			}
			sn.xip[v] = true
		}
	}
	return sn, nil
}

// sees reports whether a committed transaction xid is visible in the
// snapshot, as pg_visible_in_snapshot does.
func (s snapshot) sees(xid uint64) bool {
	return xid < s.xmin || (xid < s.xmax && !s.xip[xid])
}

func parseFloor(f store.Floor) (floor, error) {
	sn, err := parseSnapshot(f.Snapshot)
	if err != nil {
		return floor{}, err
	}
	lsn, err := pglogrepl.ParseLSN(f.LSN)
	if err != nil {
		return floor{}, err
	}
	return floor{key: f.Key, snap: sn, lsn: lsn, text: f}, nil
}

// covered reports whether a floor covers raw, a change of report key (nil
// when it has none, or before it is known): its legacy transaction is
// visible in the snapshot of rows delivered for every report, or for its
// report.
func (l *leader) covered(raw *legacy.RawChange, key *dtetype.Key) bool {
	if !raw.Logged || len(l.floors) == 0 {
		return false
	}
	xid, err := strconv.ParseUint(raw.TxID, 10, 64)
	if err != nil {
		return false
	}
	for _, f := range l.floors {
		if (f.key == nil || (key != nil && *f.key == *key)) && f.snap.sees(xid) {
			return true
		}
	}
	return false
}

// addFloors records floors for rows delivered from snapshot snap (WAL
// position wal): for keys, or for every report when keys is nil. Only
// log-based capture needs them.
func (l *leader) addFloors(ctx context.Context, keys []dtetype.Key, snap, wal string) error {
	if l.cfg.Logical == nil {
		return nil
	}
	var fs []store.Floor
	if keys == nil {
		fs = append(fs, store.Floor{Snapshot: snap, LSN: wal})
	}
	for _, k := range keys {
		fs = append(fs, store.Floor{Key: &k, Snapshot: snap, LSN: wal})
	}
	if len(fs) == 0 {
		return nil
	}
	if !l.cfg.Ephemeral {
		if err := l.st.AddFloors(ctx, l.cfg.Consumer, keys, snap, wal); err != nil {
			return err
		}
	}
	for _, f := range fs {
		pf, err := parseFloor(f)
		if err != nil {
			return err
		}
		l.floors = append(l.floors, pf)
	}
	return nil
}

// dropFloors drops the floors the change log has caught up with: it
// holds every legacy transaction committed before logged, and the epoch
// just closed delivered them all.
func (l *leader) dropFloors(ctx context.Context, logged string) error {
	if logged == "" || len(l.floors) == 0 {
		return nil
	}
	pos, err := pglogrepl.ParseLSN(logged)
	if err != nil {
		return err
	}
	kept := l.floors[:0]
	for _, f := range l.floors {
		if f.lsn > pos {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(l.floors) {
		return nil
	}
	l.floors = kept
	if l.cfg.Ephemeral {
		return nil
	}
	return l.st.DropFloors(ctx, l.cfg.Consumer, logged)
}

// loadFloors reads the consumer's floors, at the start of leadership.
func (l *leader) loadFloors(ctx context.Context) error {
	l.floors = nil
	if l.cfg.Logical == nil || l.cfg.Ephemeral {
		return nil
	}
	fs, err := l.st.Floors(ctx, l.cfg.Consumer)
	if err != nil {
		return err
	}
	for _, f := range fs {
		pf, err := parseFloor(f)
		if err != nil {
			return err
		}
		l.floors = append(l.floors, pf)
	}
	return nil
}
