package adapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/store"
)

// How log-based capture works
//
// In logical mode (capture.mode: logical) the legacy table carries no
// trigger: legacy's transactions pay nothing but the WAL they write anyway
// (and, with REPLICA IDENTITY FULL, the old row of an update or delete).
// The capture leader of the mirror decodes the table's changes from a
// replication slot (the pgoutput plugin, on a publication limited to the
// legacy table, the attribute tables and the bridge's write marks) and
// writes them to the change log itself, in commit order, one bridge
// transaction per group of legacy transactions, with the slot's position
// in the same transaction. Everything downstream of the change log (commit
// epochs, per-report order, quarantine, re-drives, checkpoints, every other
// consumer) is the same in both modes.
//
//   - Gap-free and ordered. The slot sends whole transactions in commit
//     order; they are written in that order, so ids and commit epochs
//     follow it.
//   - Never lost, never doubled. The server is told a position is flushed
//     only once the change log's transaction holding it has committed; a
//     restart resumes from the stored position and skips what is there.
//   - One consumer. Only the mirror's leader decodes; a slot refuses a
//     second consumer anyway, so a new leader retries until the old one's
//     connection is gone.
//   - The snapshot handoff. A leader that finds no slot creates one with an
//     exported snapshot and backfills from that very snapshot, while
//     streaming starts at the slot's consistent point: every legacy
//     transaction is in exactly one of the two, as Debezium does it. A
//     backfill or re-drive asked for later reads a snapshot of its own; the
//     change log may not yet hold every transaction that snapshot sees, so
//     it leaves a floor: a change whose legacy transaction is visible in
//     the snapshot is skipped when it arrives, until the change log has
//     caught up with the snapshot.
//   - The bridge's own writes. The decoder cannot see session settings, so
//     the write-back inserts a write mark in its transaction; the decoder
//     sees that row and marks the whole transaction as the bridge's.

// Capture modes.
const (
	ModeTrigger = "trigger"
	ModeLogical = "logical"
)

// Logical configures log-based capture.
type Logical struct {
	// Slot is the replication slot. Default (empty): one named after the
	// database and the bridge schema (DefaultSlot), as slot names are
	// unique across the server's databases.
	Slot string
	// Publication is the publication the slot reads. Default: the bridge
	// schema's name followed by _capture.
	Publication string
}

var slotChars = regexp.MustCompile(`[^a-z0-9_]+`)

// DefaultSlot is the slot name for the bridge schema in database db:
// lower case, [a-z0-9_] only, at most 63 bytes.
func DefaultSlot(db, schema string) string {
	name := "dtebridge_" + slotChars.ReplaceAllString(strings.ToLower(db), "_") + "_" + slotChars.ReplaceAllString(strings.ToLower(schema), "_")
	if len(name) <= 63 {
		return name
	}
	h := fnv.New32a()
	h.Write([]byte(db + "\x00" + schema))
	return name[:54] + "_" + strconv.FormatUint(uint64(h.Sum32()), 36)
}

// SlotName returns the configured slot, or the default for the database q
// is connected to.
func (l *Logical) SlotName(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, schema string) (string, error) {
	if l.Slot != "" {
		return l.Slot, nil
	}
	var db string
	if err := q.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return "", fmt.Errorf("error naming the replication slot: %w", err)
	}
	return DefaultSlot(db, schema), nil
}

// SlotStatus is a replication slot as the server reports it.
type SlotStatus struct {
	Slot   string `json:"slot"`
	Exists bool   `json:"exists"`
	Active bool   `json:"active"`
	// RetainedBytes is the WAL the slot keeps the server from recycling.
	RetainedBytes int64 `json:"retained_wal_bytes"`
	// FlushLagBytes is how far the confirmed position trails the server's
	// WAL: what capture has not yet written to the change log.
	FlushLagBytes int64 `json:"flush_lag_bytes"`
	// ConfirmedFlush is the position capture has confirmed.
	ConfirmedFlush string `json:"confirmed_flush_lsn,omitempty"`
	// WALStatus is the server's wal_status: reserved, extended, unreserved
	// or lost (past max_slot_wal_keep_size: the slot is unusable).
	WALStatus string `json:"wal_status,omitempty"`
}

// Slot reads slot's status on q.
func Slot(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, slot string) (SlotStatus, error) {
	s := SlotStatus{Slot: slot}
	var confirmed, walStatus *string
	var retained, lag *int64
	err := q.QueryRow(ctx, `SELECT active,
		pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint,
		pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,
		confirmed_flush_lsn::text, wal_status
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&s.Active, &retained, &lag, &confirmed, &walStatus)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("error reading replication slot %s: %w", slot, err)
	}
	s.Exists = true
	if retained != nil {
		s.RetainedBytes = *retained
	}
	if lag != nil {
		s.FlushLagBytes = *lag
	}
	if confirmed != nil {
		s.ConfirmedFlush = *confirmed
	}
	if walStatus != nil {
		s.WALStatus = *walStatus
	}
	return s, nil
}

// decoder reads the legacy tables' changes from the replication slot and
// writes them to the change log. The mirror's capture leader runs one.
type decoder struct {
	st      *store.Store // on the pool
	schema  string
	slot    string
	pub     string
	channel string
	log     *slog.Logger
	m       *Metrics

	conn *pgconn.PgConn // the replication connection
	// start is where streaming starts; transactions that committed before
	// it are in the change log already.
	start pglogrepl.LSN
	// snapshot is the exported snapshot of a slot this decoder created,
	// until streaming starts.
	snapshot string

	relations map[uint32]*pglogrepl.RelationMessage
	warned    map[uint32]bool
}

// errSlotBusy means another process is reading the slot.
var errSlotBusy = errors.New("replication slot is in use")

// openDecoder connects for replication and makes sure the slot exists,
// creating it (with an exported snapshot) when it does not.
func openDecoder(ctx context.Context, st *store.Store, lc *Logical, log *slog.Logger, m *Metrics) (*decoder, error) {
	slot, err := lc.SlotName(ctx, st.Pool(), st.Schema())
	if err != nil {
		return nil, err
	}
	d := &decoder{st: st, schema: st.Schema(), slot: slot, pub: cmpOr(lc.Publication, st.Schema()+"_capture"), channel: st.Schema() + "_changes",
		log: log, m: m, relations: map[uint32]*pglogrepl.RelationMessage{}, warned: map[uint32]bool{}}
	var plugin string
	var sameDB bool
	var activePID *int32
	err = st.Pool().QueryRow(ctx, `SELECT plugin, database = current_database(), active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).
		Scan(&plugin, &sameDB, &activePID)
	exists := err == nil
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("error looking for replication slot %s: %w", slot, err)
	case plugin != "pgoutput" || !sameDB:
		return nil, &fatalError{fmt.Errorf("replication slot %s exists but is not a pgoutput slot of this database: set capture.slot to another name, or drop it (SELECT pg_drop_replication_slot('%s'))", slot, slot)}
	case activePID != nil:
		return nil, fmt.Errorf("%w: replication slot %s is read by server process %d (a former leader's connection not yet closed)", errSlotBusy, slot, *activePID)
	}
	cfg := st.Pool().Config().ConnConfig.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["application_name"] = "dtebridge capture"
	if d.conn, err = pgconn.ConnectConfig(ctx, cfg); err != nil {
		return nil, fmt.Errorf("error opening a replication connection (the role needs the REPLICATION attribute; see the README's section for DBAs): %w", err)
	}
	if !exists {
		res, err := pglogrepl.CreateReplicationSlot(ctx, d.conn, slot, "pgoutput",
			pglogrepl.CreateReplicationSlotOptions{SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
		if err != nil {
			d.close()
			return nil, fmt.Errorf("error creating replication slot %s: %w", slot, err)
		}
		if d.start, err = pglogrepl.ParseLSN(res.ConsistentPoint); err != nil {
			d.close()
			return nil, err
		}
		if err := st.ResetLoggedPositions(ctx, slot, res.ConsistentPoint); err != nil {
			d.close()
			return nil, err
		}
		d.snapshot = res.SnapshotName
		log.Info("replication slot created; backfilling from its snapshot", "slot", slot, "consistent_point", res.ConsistentPoint)
		return d, nil
	}
	pos, ok, err := st.LoggedPosition(ctx, slot)
	if err != nil {
		d.close()
		return nil, err
	}
	if ok {
		if d.start, err = pglogrepl.ParseLSN(pos); err != nil {
			d.close()
			return nil, err
		}
	}
	return d, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (d *decoder) close() {
	if d.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.conn.Close(ctx)
	}
}

// Decoder tuning: a group of legacy transactions is written in one bridge
// transaction once it holds groupRows changes or is groupAge old, or when
// the slot has sent nothing for idleWait.
const (
	groupRows   = 5000
	groupAge    = 50 * time.Millisecond
	idleWait    = 2 * time.Millisecond
	statusEvery = 10 * time.Second
)

// legacyTx is a legacy transaction being decoded.
type legacyTx struct {
	xid    uint32
	commit pglogrepl.LSN
	end    pglogrepl.LSN // the end of its commit record
	at     time.Time
	rows   []store.LoggedChange
	bridge bool
	skip   bool
}

// group is the decoded transactions not yet in the change log.
type group struct {
	txs   []*legacyTx
	rows  int
	since time.Time
	end   pglogrepl.LSN // end of the group's last transaction
}

// stream decodes from d.start until ctx ends or an error.
func (d *decoder) stream(ctx context.Context) error {
	pub := strings.ReplaceAll(pgx.Identifier{d.pub}.Sanitize(), "'", "''")
	if err := pglogrepl.StartReplication(ctx, d.conn, d.slot, d.start, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + pub + "'"}}); err != nil {
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == "55006" {
			return fmt.Errorf("%w: %v", errSlotBusy, err)
		}
		return fmt.Errorf("error starting replication from slot %s: %w", d.slot, err)
	}
	d.log.Info("streaming from replication slot", "slot", d.slot, "from", d.start)
	flushed := d.start // what the server may forget
	var cur *legacyTx
	var g group
	nextStatus := time.Now()
	var idleAt pglogrepl.LSN // the server has sent everything before it
	for {
		if time.Now().After(nextStatus) {
			if err := d.status(ctx, flushed); err != nil {
				return err
			}
			nextStatus = time.Now().Add(statusEvery)
		}
		deadline := nextStatus
		if len(g.txs) > 0 && cur == nil {
			deadline = time.Now().Add(idleWait)
			if time.Since(g.since) > groupAge || g.rows >= groupRows {
				deadline = time.Now()
			}
		}
		if len(g.txs) > 0 && cur == nil && !time.Now().Before(deadline) {
			if err := d.write(ctx, &g); err != nil {
				return err
			}
			flushed = max(flushed, g.end)
			g = group{}
			if err := d.status(ctx, flushed); err != nil {
				return err
			}
			continue
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := d.conn.ReceiveMessage(rctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pgconn.Timeout(err) {
			if len(g.txs) == 0 && cur == nil && idleAt > flushed {
				// Legacy is idle: nothing before idleAt is ours, so the
				// server may forget it. (The change log's own position
				// stays at the last transaction written: writing it here
				// would make WAL, and with it the next keepalive.)
				flushed = idleAt
				if err := d.status(ctx, flushed); err != nil {
					return err
				}
			}
			if len(g.txs) > 0 && cur == nil {
				g.since = time.Time{} // write now
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("error receiving from replication slot %s: %w", d.slot, err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication slot %s: %w", d.slot, pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyData:
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("error decoding a keepalive from slot %s: %w", d.slot, err)
				}
				if cur == nil && len(g.txs) == 0 {
					// Nothing is pending: the server has sent every
					// transaction before this point, so it may forget them.
					idleAt = max(idleAt, ka.ServerWALEnd)
					if idleAt > flushed {
						flushed = idleAt
						nextStatus = time.Now()
					}
				}
				if ka.ReplyRequested {
					nextStatus = time.Now()
				}
			case pglogrepl.XLogDataByteID:
				x, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return fmt.Errorf("error decoding WAL data from slot %s: %w", d.slot, err)
				}
				done, err := d.decode(x.WALData, &cur)
				if err != nil {
					return err
				}
				if done != nil {
					d.m.LogicalRead.Add(float64(len(done.rows)))
					if !done.skip && len(done.rows) > 0 {
						if len(g.txs) == 0 {
							g.since = time.Now()
						}
						g.txs = append(g.txs, done)
						g.rows += len(done.rows)
					}
					g.end = max(g.end, done.end)
					if len(g.txs) == 0 {
						// Skipped or empty: nothing to write, but the slot may
						// move past it.
						idleAt = max(idleAt, g.end)
					}
				}
			}
		}
	}
}

// decode handles one pgoutput message; it returns the transaction a
// COMMIT completes.
func (d *decoder) decode(data []byte, cur **legacyTx) (*legacyTx, error) {
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("error decoding a message from slot %s: %w", d.slot, err)
	}
	switch m := msg.(type) {
	case *pglogrepl.RelationMessage:
		d.relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		*cur = &legacyTx{xid: m.Xid, commit: m.FinalLSN, at: m.CommitTime, skip: m.FinalLSN < d.start}
	case *pglogrepl.CommitMessage:
		tx := *cur
		*cur = nil
		if tx == nil {
			return nil, fmt.Errorf("slot %s sent a COMMIT without a BEGIN", d.slot)
		}
		tx.end = m.TransactionEndLSN
		if tx.bridge {
			for i := range tx.rows {
				tx.rows[i].Origin = dtetype.OriginBridge
			}
		}
		return tx, nil
	case *pglogrepl.InsertMessage:
		return nil, d.row(*cur, m.RelationID, "I", nil, m.Tuple)
	case *pglogrepl.UpdateMessage:
		return nil, d.row(*cur, m.RelationID, "U", m.OldTuple, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		return nil, d.row(*cur, m.RelationID, "D", m.OldTuple, nil)
	}
	return nil, nil
}

// row adds a decoded row change to tx.
func (d *decoder) row(tx *legacyTx, rel uint32, op string, old, new *pglogrepl.TupleData) error {
	if tx == nil {
		return fmt.Errorf("slot %s sent a row change outside a transaction", d.slot)
	}
	r, ok := d.relations[rel]
	if !ok {
		return fmt.Errorf("slot %s sent a change of relation %d before describing it", d.slot, rel)
	}
	if r.Namespace == d.schema && r.RelationName == "write_marks" {
		tx.bridge = tx.bridge || op == "I"
		return nil
	}
	if tx.skip {
		return nil
	}
	if r.ReplicaIdentity != 'f' && !d.warned[rel] {
		d.warned[rel] = true
		d.log.Warn("legacy table is not REPLICA IDENTITY FULL: deleted rows arrive with their key only, and cannot be translated; run dtebridge install as the table's owner",
			"table", r.Namespace+"."+r.RelationName)
	}
	c := store.LoggedChange{Op: op, Source: r.Namespace + "." + r.RelationName, Origin: dtetype.OriginLegacy, TxTime: tx.at,
		SourceLSN: tx.commit.String(), SourceXID: uint64(tx.xid)}
	if old != nil {
		c.Old = tupleJSON(r, old, nil)
	}
	if new != nil {
		c.New = tupleJSON(r, new, old)
	}
	tx.rows = append(tx.rows, c)
	return nil
}

// write puts a group of decoded transactions in the change log, with the
// slot's new position, in one transaction, and wakes idle readers.
func (d *decoder) write(ctx context.Context, g *group) error {
	start := time.Now()
	err := d.st.InTx(ctx, func(tx *store.Store) error {
		// Legacy sends 32-bit transaction ids; the change log keeps full
		// ones (xid8). Each legacy transaction committed before this one
		// began, so it is the latest id at or below ours with those bits.
		cur, err := tx.CurrentXid(ctx)
		if err != nil {
			return err
		}
		rows := make([]store.LoggedChange, 0, g.rows)
		for _, t := range g.txs {
			full := cur&^0xffffffff | uint64(t.xid)
			if full >= cur {
				full -= 1 << 32
			}
			for _, r := range t.rows {
				r.SourceXID = full
				rows = append(rows, r)
			}
		}
		for len(rows) > 0 {
			n := min(len(rows), groupRows)
			if err := tx.WriteLogged(ctx, rows[:n]); err != nil {
				return err
			}
			rows = rows[n:]
		}
		if err := tx.SetLoggedPosition(ctx, d.slot, g.end.String()); err != nil {
			return err
		}
		return tx.NotifyReaders(ctx)
	})
	if err != nil {
		return err
	}
	d.m.LogicalWritten.Add(float64(g.rows))
	d.m.LogicalWriteSeconds.Observe(time.Since(start).Seconds())
	return nil
}

// status tells the server what the change log holds.
func (d *decoder) status(ctx context.Context, flushed pglogrepl.LSN) error {
	if err := pglogrepl.SendStandbyStatusUpdate(ctx, d.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: flushed, WALFlushPosition: flushed, WALApplyPosition: flushed}); err != nil {
		return fmt.Errorf("error confirming position %s to slot %s: %w", flushed, d.slot, err)
	}
	return nil
}

// Type OIDs whose text form is not a JSON string in to_jsonb.
const (
	oidBool        = 16
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOid         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// tupleJSON renders a decoded tuple as the capture trigger's to_jsonb
// would: numbers, booleans and JSON as themselves, timestamps in ISO 8601,
// everything else as its text. A TOASTed value the update did not change
// is not sent; it is taken from the old tuple, or left out.
func tupleJSON(r *pglogrepl.RelationMessage, t, old *pglogrepl.TupleData) []byte {
	var b bytes.Buffer
	b.WriteByte('{')
	first := true
	for i, c := range t.Columns {
		if i >= len(r.Columns) {
			break
		}
		col := r.Columns[i]
		data, kind := c.Data, c.DataType
		if kind == 'u' {
			if old == nil || i >= len(old.Columns) || old.Columns[i].DataType == 'u' {
				continue
			}
			data, kind = old.Columns[i].Data, old.Columns[i].DataType
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		name, _ := json.Marshal(col.Name)
		b.Write(name)
		b.WriteByte(':')
		if kind == 'n' {
			b.WriteString("null")
			continue
		}
		writeValue(&b, col.DataType, data)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// writeValue writes one column's text value as JSON.
func writeValue(b *bytes.Buffer, oid uint32, v []byte) {
	s := string(v)
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOid:
		b.WriteString(s)
		return
	case oidFloat4, oidFloat8, oidNumeric:
		if _, err := strconv.ParseFloat(s, 64); err == nil && !strings.ContainsAny(s, "nN") {
			b.WriteString(s)
			return
		}
	case oidBool:
		if s == "t" {
			b.WriteString("true")
		} else {
			b.WriteString("false")
		}
		return
	case oidJSON, oidJSONB:
		if json.Valid(v) {
			b.Write(v)
			return
		}
	case oidTimestamp, oidTimestamptz:
		s = isoTimestamp(s, oid == oidTimestamptz)
	}
	q, _ := json.Marshal(s)
	b.Write(q)
}

// isoTimestamp turns PostgreSQL's ISO text form of a timestamp
// ("2026-01-02 15:04:05.5+00") into to_jsonb's ("2026-01-02T15:04:05.5+00:00").
func isoTimestamp(s string, tz bool) string {
	if len(s) < 19 || s[10] != ' ' || strings.HasSuffix(s, " BC") {
		return s // infinity, or a year before 1
	}
	s = s[:10] + "T" + s[11:]
	if !tz {
		return s
	}
	if i := strings.LastIndexAny(s[19:], "+-"); i >= 0 {
		off := s[19+i:]
		if len(off) == 3 {
			s += ":00"
		}
	}
	return s
}

var validSlot = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)

// ErrCaptureBehind means log-based capture has not written legacy's
// transactions up to a point in time to the change log.
var ErrCaptureBehind = errors.New("log-based capture is behind legacy")

// WaitLogged waits up to timeout until the replication slot has passed
// WAL position lsn: every legacy transaction committed before it is in the
// change log.
func WaitLogged(ctx context.Context, st *store.Store, lc *Logical, lsn string, timeout time.Duration) error {
	slot, err := lc.SlotName(ctx, st.Pool(), st.Schema())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		var passed *bool
		var confirmed *string
		err := st.Pool().QueryRow(ctx, `SELECT confirmed_flush_lsn >= $2::pg_lsn, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot, lsn).
			Scan(&passed, &confirmed)
		missing := errors.Is(err, pgx.ErrNoRows)
		if missing && time.Now().After(deadline) {
			return fmt.Errorf("%w: replication slot %s does not exist: start dtebridge serve, which creates it", ErrCaptureBehind, slot)
		}
		if err != nil && !missing {
			return fmt.Errorf("error reading replication slot %s: %w", slot, err)
		}
		if passed != nil && *passed {
			return nil
		}
		if time.Now().After(deadline) {
			at := "nothing yet"
			if confirmed != nil {
				at = *confirmed
			}
			return fmt.Errorf("%w: replication slot %s has confirmed %s, legacy is at %s after %s (is serve running? dtebridge status shows the slot)", ErrCaptureBehind, slot, at, lsn, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WALNow returns the server's WAL insert position: every transaction
// committed so far committed before it.
func WALNow(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (string, error) {
	var lsn string
	if err := q.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		return "", fmt.Errorf("error reading the WAL position: %w", err)
	}
	return lsn, nil
}
