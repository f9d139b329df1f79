package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Modes returns every phase's mode that has been set.
func (s *Store) Modes(ctx context.Context) (map[dtetype.Phase]dtetype.Mode, error) {
	rows, err := s.db.Query(ctx, s.sql("Modes"))
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading cutover modes: %w", err)}
	}
	defer rows.Close()
	out := map[dtetype.Phase]dtetype.Mode{}
	for rows.Next() {
		var m dtetype.Mode
		var at time.Time
		if err := rows.Scan(&m.Phase, &m.Mode, &m.Percent, &at, &m.UpdatedBy); err != nil {
			return nil, err
		}
		m.UpdatedAt = &at
		out[m.Phase] = m
	}
	return out, rows.Err()
}

// LockMode takes the cutover lock for phase and returns its mode; run it in
// a transaction (InTx), which holds the lock until it ends.
func (s *Store) LockMode(ctx context.Context, phase dtetype.Phase) (dtetype.Mode, error) {
	if _, err := s.db.Exec(ctx, s.sql("CutoverLock"), s.name); err != nil {
		return dtetype.Mode{}, err
	}
	m := dtetype.Mode{Phase: phase, Mode: dtetype.ModeShadow}
	var at time.Time
	err := s.db.QueryRow(ctx, s.sql("ModeForUpdate"), string(phase)).Scan(&m.Mode, &m.Percent, &at, &m.UpdatedBy)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return m, nil
	case err != nil:
		return m, fmt.Errorf("error reading the mode of %s: %w", phase, err)
	}
	m.UpdatedAt = &at
	return m, nil
}

// Owner returns phase's mode and whether report k is pinned to the new
// engine, read in one statement (the write-back reads it in its own
// transaction).
func (s *Store) Owner(ctx context.Context, k dtetype.Key, phase dtetype.Phase) (dtetype.Mode, bool, error) {
	m := dtetype.Mode{Phase: phase}
	var promoted bool
	if err := s.db.QueryRow(ctx, s.sql("Owned"), string(phase), k.CycleID, k.ReportID).Scan(&m.Mode, &m.Percent, &promoted); err != nil {
		return m, false, fmt.Errorf("error reading the mode of %s: %w", phase, err)
	}
	return m, promoted, nil
}

// Promoted returns, per phase, the reports pinned to the new engine.
func (s *Store) Promoted(ctx context.Context) (map[dtetype.Phase]map[dtetype.Key]bool, error) {
	rows, err := s.db.Query(ctx, s.sql("Promoted"))
	if err != nil {
		return nil, fmt.Errorf("error reading promoted reports: %w", err)
	}
	defer rows.Close()
	out := map[dtetype.Phase]map[dtetype.Key]bool{}
	for rows.Next() {
		var p dtetype.Phase
		var k dtetype.Key
		if err := rows.Scan(&p, &k.CycleID, &k.ReportID); err != nil {
			return nil, err
		}
		if out[p] == nil {
			out[p] = map[dtetype.Key]bool{}
		}
		out[p][k] = true
	}
	return out, rows.Err()
}

// Pin pins reports to the new engine for phase.
func (s *Store) Pin(ctx context.Context, phase dtetype.Phase, keys []dtetype.Key) error {
	cs, rs := splitKeys(keys)
	_, err := s.db.Exec(ctx, s.sql("Pin"), cs, rs, string(phase))
	return err
}

// ReleaseAll unpins every report of phase and returns them.
func (s *Store) ReleaseAll(ctx context.Context, phase dtetype.Phase) ([]dtetype.Key, error) {
	rows, err := s.db.Query(ctx, s.sql("ReleaseAll"), string(phase))
	if err != nil {
		return nil, err
	}
	return collectKeys(rows)
}

// ResolveConflicts resolves the open authority conflicts of phase.
func (s *Store) ResolveConflicts(ctx context.Context, phase dtetype.Phase) error {
	_, err := s.db.Exec(ctx, s.sql("ResolveConflicts"), string(phase))
	return err
}

// SetMode records phase's new mode and returns when it was set.
func (s *Store) SetMode(ctx context.Context, m dtetype.Mode) (time.Time, error) {
	var at time.Time
	err := s.db.QueryRow(ctx, s.sql("SetMode"), string(m.Phase), m.Mode, m.Percent, m.UpdatedBy).Scan(&at)
	return at, err
}

// LogEntry is one audited mode change.
type LogEntry struct {
	ID          int64           `json:"id"`
	At          time.Time       `json:"at"`
	Actor       string          `json:"actor"`
	Phase       dtetype.Phase   `json:"phase"`
	FromMode    string          `json:"from_mode"`
	ToMode      string          `json:"to_mode"`
	FromPercent int             `json:"from_percent"`
	ToPercent   int             `json:"to_percent"`
	Reason      string          `json:"reason"`
	Forced      bool            `json:"forced"`
	Gate        json.RawMessage `json:"gate"`
}

// LogMode appends a mode change to the audit log and returns its id.
func (s *Store) LogMode(ctx context.Context, e LogEntry) (int64, error) {
	var id int64
	err := s.db.QueryRow(ctx, s.sql("LogMode"), e.Actor, string(e.Phase), e.FromMode, e.ToMode, e.FromPercent, e.ToPercent, e.Reason, e.Forced, []byte(e.Gate)).Scan(&id)
	return id, err
}

// History returns the audit log, newest first, optionally for one phase.
func (s *Store) History(ctx context.Context, phase dtetype.Phase, limit int) ([]LogEntry, error) {
	rows, err := s.db.Query(ctx, s.sql("History"), string(phase), limit)
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error reading the cutover log: %w", err)}
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (LogEntry, error) {
		var e LogEntry
		var gate []byte
		err := r.Scan(&e.ID, &e.At, &e.Actor, &e.Phase, &e.FromMode, &e.ToMode, &e.FromPercent, &e.ToPercent, &e.Reason, &e.Forced, &gate)
		e.Gate = gate
		return e, err
	})
	if out == nil {
		out = []LogEntry{}
	}
	return out, err
}

// RecordConflict records a legacy write to a phase and report the new
// engine owns as an open authority_conflict divergence, and reports
// whether it is new (a redelivered change, same detail, is not).
func (s *Store) RecordConflict(ctx context.Context, k dtetype.Key, phase dtetype.Phase, legacyValue, detail string) (bool, error) {
	var id int64
	err := s.db.QueryRow(ctx, s.sql("RecordConflict"), k.CycleID, k.ReportID, string(phase), legacyValue, detail).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("error recording an authority conflict: %w", err)
	}
	return true, nil
}

// ResolveConflict resolves report k's open authority conflict in phase,
// adding note to its detail.
func (s *Store) ResolveConflict(ctx context.Context, k dtetype.Key, phase dtetype.Phase, note string) error {
	if _, err := s.db.Exec(ctx, s.sql("ResolveConflict"), k.CycleID, k.ReportID, string(phase), note); err != nil {
		return fmt.Errorf("error resolving the authority conflict of %s %s: %w", k, phase, err)
	}
	return nil
}

// OpenConflict is an authority conflict not yet resolved.
type OpenConflict struct {
	Key         dtetype.Key
	Phase       dtetype.Phase
	LegacyValue string
	Detail      string
}

// OpenConflicts returns every open authority conflict.
func (s *Store) OpenConflicts(ctx context.Context) ([]OpenConflict, error) {
	rows, err := s.db.Query(ctx, s.sql("OpenConflicts"))
	if err != nil {
		return nil, fmt.Errorf("error reading authority conflicts: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenConflict, error) {
		var c OpenConflict
		return c, r.Scan(&c.Key.CycleID, &c.Key.ReportID, &c.Phase, &c.LegacyValue, &c.Detail)
	})
}

// Command is an engine command as the audit records it.
type Command struct {
	ID     string        `json:"id"`
	Key    dtetype.Key   `json:"key"`
	Phase  dtetype.Phase `json:"phase"`
	Action string        `json:"action"`
	Actor  string        `json:"actor"`
	// Role is the role the actor acted in, as resolved.
	Role   string `json:"role"`
	Reason string `json:"reason"`
	// Rows are the legacy rows the command wrote, by key.
	Rows      []string  `json:"rows"`
	AppliedAt time.Time `json:"applied_at"`
}

// Claim outcomes.
var (
	// ErrCommandApplied means the command id has been applied already.
	ErrCommandApplied = errors.New("command already applied")
	// ErrCommandIDReused means the command id was used for another command.
	ErrCommandIDReused = errors.New("command id reused")
)

// ClaimCommand records c as applied, in the write-back's transaction. It
// returns ErrCommandApplied if c's id was applied before, and
// ErrCommandIDReused if that id names another report, phase or action.
func (s *Store) ClaimCommand(ctx context.Context, c Command) error {
	tag, err := s.db.Exec(ctx, s.sql("ClaimCommand"), c.ID, c.Key.CycleID, c.Key.ReportID, string(c.Phase), c.Action, c.Actor, c.Role, c.Reason)
	if err != nil {
		return err
	}
	if tag.RowsAffected() > 0 {
		return nil
	}
	var same bool
	if err := s.db.QueryRow(ctx, s.sql("SameCommand"), c.ID, c.Key.CycleID, c.Key.ReportID, string(c.Phase), c.Action).Scan(&same); err != nil {
		return err
	}
	if !same {
		return ErrCommandIDReused
	}
	return ErrCommandApplied
}

// SetCommandRows records the legacy rows a command wrote.
func (s *Store) SetCommandRows(ctx context.Context, id string, rows []string) error {
	if rows == nil {
		rows = []string{}
	}
	_, err := s.db.Exec(ctx, s.sql("CommandRows"), id, rows)
	return err
}

// CommandRows returns the legacy rows an applied command wrote.
func (s *Store) CommandRows(ctx context.Context, id string) ([]string, error) {
	var rows []string
	if err := s.db.QueryRow(ctx, s.sql("CommandWritten"), id).Scan(&rows); err != nil {
		return nil, fmt.Errorf("error reading command %s: %w", id, err)
	}
	return rows, nil
}

// Commands returns the most recent applied commands, of one report if k
// is set.
func (s *Store) Commands(ctx context.Context, k *dtetype.Key, limit int) ([]Command, error) {
	var cycle, report *int64
	if k != nil {
		cycle, report = &k.CycleID, &k.ReportID
	}
	rows, err := s.db.Query(ctx, s.sql("Commands"), cycle, report, limit)
	if err != nil {
		return nil, fmt.Errorf("error reading commands: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) {
		var c Command
		err := r.Scan(&c.ID, &c.Key.CycleID, &c.Key.ReportID, &c.Phase, &c.Action, &c.Actor, &c.Role, &c.Reason, &c.Rows, &c.AppliedAt)
		return c, err
	})
	if out == nil {
		out = []Command{}
	}
	return out, err
}

func splitKeys(keys []dtetype.Key) (cycles, reports []int64) {
	cycles, reports = make([]int64, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		cycles[i], reports[i] = k.CycleID, k.ReportID
	}
	return cycles, reports
}

// Refusal is an engine command that was refused, and why.
type Refusal struct {
	Command
	// Rule is what refused it (role_not_allowed, deadline_exceeded, ...).
	Rule    string    `json:"rule"`
	Message string    `json:"message"`
	At      time.Time `json:"refused_at"`
}

// RecordRefusal records a refused command. Refusals are audit, not state:
// the same command id may be refused several times, and applied later.
func (s *Store) RecordRefusal(ctx context.Context, c Command, rule, message string) error {
	if _, err := s.db.Exec(ctx, s.sql("RecordRefusal"), c.ID, c.Key.CycleID, c.Key.ReportID, string(c.Phase), c.Action, c.Actor, c.Role, c.Reason,
		rule, message); err != nil {
		return fmt.Errorf("error recording the refusal of command %s: %w", c.ID, err)
	}
	return nil
}

// Refusals returns the most recent refused commands, of one report if k is
// set.
func (s *Store) Refusals(ctx context.Context, k *dtetype.Key, limit int) ([]Refusal, error) {
	var cycle, report *int64
	if k != nil {
		cycle, report = &k.CycleID, &k.ReportID
	}
	rows, err := s.db.Query(ctx, s.sql("Refusals"), cycle, report, limit)
	if err != nil {
		return nil, fmt.Errorf("error reading refused commands: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Refusal, error) {
		var x Refusal
		err := r.Scan(&x.ID, &x.Key.CycleID, &x.Key.ReportID, &x.Phase, &x.Action, &x.Actor, &x.Role, &x.Reason, &x.Rule, &x.Message, &x.At)
		return x, err
	})
	if out == nil {
		out = []Refusal{}
	}
	return out, err
}
