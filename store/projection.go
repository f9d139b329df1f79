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

// Projection is one shadow workflow's state as the bridge schema keeps it.
type Projection struct {
	Key               dtetype.Key
	DefinitionID      string
	DefinitionVersion string
	// Version orders one workflow's projections; an older one is ignored.
	Version    int64
	AppliedSeq int64
	Applied    int64
	// ViolationCounts counts rule violations by rule; Recent holds the
	// latest ones (JSON).
	ViolationCounts map[string]int
	Recent          any
	// Historical are the findings of the report's legacy history (JSON).
	Historical any
	// Attributes are the report's attributes the shadow judges by.
	Attributes map[string]string
	// Divergent is what reconcile last told the shadow.
	Divergent bool
	Phases    []ProjectedPhase
}

// ProjectedPhase is one phase of a projection.
type ProjectedPhase struct {
	Phase        dtetype.Phase     `json:"phase"`
	RowID        string            `json:"row_id"`
	Rows         int               `json:"rows"`
	State        dtetype.State     `json:"state"`
	BaseState    dtetype.State     `json:"base_state"`
	LegacyStatus dtetype.Status    `json:"legacy_status"`
	Status       dtetype.Status    `json:"status"`
	Override     *dtetype.Override `json:"override"`
	PlannedStart *time.Time        `json:"planned_start"`
	PlannedEnd   *time.Time        `json:"planned_end"`
	ActualStart  *time.Time        `json:"actual_start"`
	ActualEnd    *time.Time        `json:"actual_end"`
	StartedBy    string            `json:"started_by"`
	CompletedBy  string            `json:"completed_by"`
	// StatusColumn is the legacy status column's label, where there is one.
	StatusColumn string     `json:"status_column"`
	LastEventID  string     `json:"last_event_id"`
	LastSeq      int64      `json:"last_seq"`
	TxTime       *time.Time `json:"tx_time"`
}

// Project upserts a projection. It is idempotent: a write whose version is
// not newer than the stored one changes nothing.
func (s *Store) Project(ctx context.Context, p Projection) error {
	counts := p.ViolationCounts
	if counts == nil {
		counts = map[string]int{}
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	countsJSON, _ := json.Marshal(counts)
	recent, _ := json.Marshal(p.Recent)
	if p.Recent == nil {
		recent = []byte("[]")
	}
	attributes, _ := json.Marshal(p.Attributes)
	if p.Attributes == nil {
		attributes = []byte("{}")
	}
	historical, _ := json.Marshal(p.Historical)
	if p.Historical == nil {
		historical = []byte("[]")
	}
	return s.InTx(ctx, func(tx *Store) error {
		var fresh bool
		err := tx.db.QueryRow(ctx, tx.sql("ProjectKey"), p.Key.CycleID, p.Key.ReportID, p.DefinitionID, p.DefinitionVersion, p.Version,
			p.AppliedSeq, p.Applied, total, countsJSON, recent, historical, attributes, p.Divergent).Scan(&fresh)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // a newer projection is already there
		}
		if err != nil {
			return fmt.Errorf("error projecting %s: %w", p.Key, err)
		}
		b := &pgx.Batch{}
		for _, ps := range p.Phases {
			var override []byte
			if ps.Override != nil {
				override, _ = json.Marshal(ps.Override)
			}
			b.Queue(tx.sql("ProjectPhase"), p.Key.CycleID, p.Key.ReportID, string(ps.Phase), ps.RowID, ps.Rows, string(ps.State), string(ps.BaseState),
				string(ps.LegacyStatus), string(ps.Status), override, ps.PlannedStart, ps.PlannedEnd, ps.ActualStart, ps.ActualEnd,
				nullable(ps.StartedBy), nullable(ps.CompletedBy), nullable(ps.StatusColumn), ps.LastEventID, ps.LastSeq, ps.TxTime, p.Version)
		}
		b.Queue(tx.sql("ProjectDropStale"), p.Key.CycleID, p.Key.ReportID, p.Version)
		b.Queue(tx.sql("ProjectCaughtUp"), p.Key.CycleID, p.Key.ReportID, p.AppliedSeq)
		if err := tx.db.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("error projecting %s: %w", p.Key, err)
		}
		return nil
	})
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// ProjectionVersion returns the version of a report's projection, 0 if none.
func (s *Store) ProjectionVersion(ctx context.Context, k dtetype.Key) (int64, error) {
	var v int64
	if err := s.db.QueryRow(ctx, s.sql("ProjectionVersion"), k.CycleID, k.ReportID).Scan(&v); err != nil {
		return 0, fmt.Errorf("error reading the projection of %s: %w", k, err)
	}
	return v, nil
}

// ProjectedPhases returns a report's projected phases.
func (s *Store) ProjectedPhases(ctx context.Context, k dtetype.Key) ([]ProjectedPhase, error) {
	rows, err := s.db.Query(ctx, s.sql("ProjectedPhases"), k.CycleID, k.ReportID)
	if err != nil {
		return nil, fmt.Errorf("error reading the projection of %s: %w", k, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (ProjectedPhase, error) {
		var p ProjectedPhase
		var override []byte
		err := r.Scan(&p.Phase, &p.RowID, &p.Rows, &p.State, &p.BaseState, &p.LegacyStatus, &p.Status, &override, &p.PlannedStart, &p.PlannedEnd,
			&p.ActualStart, &p.ActualEnd, &p.StartedBy, &p.CompletedBy, &p.StatusColumn, &p.LastEventID, &p.LastSeq, &p.TxTime)
		if err == nil && override != nil {
			err = json.Unmarshal(override, &p.Override)
		}
		return p, err
	})
}

// ProjectedKeys returns up to limit reports the shadow has projected (all
// with limit <= 0), of one cycle if cycle is set, in key order.
func (s *Store) ProjectedKeys(ctx context.Context, cycle *int64, limit int) ([]dtetype.Key, error) {
	var rows pgx.Rows
	var err error
	if limit <= 0 && cycle == nil {
		rows, err = s.db.Query(ctx, s.sql("AllProjectedKeys"))
	} else {
		if limit <= 0 {
			limit = 1 << 62
		}
		rows, err = s.db.Query(ctx, s.sql("ProjectedKeys"), cycle, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("error reading projected reports: %w", err)
	}
	return collectKeys(rows)
}

func collectKeys(rows pgx.Rows) ([]dtetype.Key, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (dtetype.Key, error) {
		var k dtetype.Key
		err := r.Scan(&k.CycleID, &k.ReportID)
		return k, err
	})
}

// ShadowSummary counts projected reports and rule violations by rule.
func (s *Store) ShadowSummary(ctx context.Context) (reports int64, violations map[string]int64, err error) {
	var counts []byte
	if err := s.db.QueryRow(ctx, s.sql("ShadowSummary")).Scan(&reports, &counts); err != nil {
		return 0, nil, fmt.Errorf("error reading the shadow projection: %w", err)
	}
	violations = map[string]int64{}
	if err := json.Unmarshal(counts, &violations); err != nil {
		return 0, nil, err
	}
	return reports, violations, nil
}

// PhaseState is one projected (report, phase) state.
type PhaseState struct {
	Key   dtetype.Key
	Phase dtetype.Phase
	State dtetype.State
	// LegacyStatus is legacy's effective schedule status as the shadow
	// follows it; Rows counts legacy rows for the phase.
	LegacyStatus dtetype.Status
	Rows         int
}

// ShadowPhaseStates returns every projected phase's state.
func (s *Store) ShadowPhaseStates(ctx context.Context) ([]PhaseState, error) {
	rows, err := s.db.Query(ctx, s.sql("ShadowPhaseStates"))
	if err != nil {
		return nil, fmt.Errorf("error reading the shadow projection: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PhaseState, error) {
		var p PhaseState
		err := r.Scan(&p.Key.CycleID, &p.Key.ReportID, &p.Phase, &p.State, &p.LegacyStatus, &p.Rows)
		return p, err
	})
}

// Watermark records, per report, the last sequence number handed to the
// shadow.
func (s *Store) Watermark(ctx context.Context, seqs map[dtetype.Key]int64) error {
	cycles := make([]int64, 0, len(seqs))
	reports := make([]int64, 0, len(seqs))
	values := make([]int64, 0, len(seqs))
	for k, v := range seqs {
		cycles, reports, values = append(cycles, k.CycleID), append(reports, k.ReportID), append(values, v)
	}
	if _, err := s.db.Exec(ctx, s.sql("Watermark"), cycles, reports, values); err != nil {
		return fmt.Errorf("error recording delivery: %w", err)
	}
	return nil
}

// ReportsBehind counts the reports whose shadow has not yet projected
// everything the mirror handed it.
func (s *Store) ReportsBehind(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRow(ctx, s.sql("ReportsBehind")).Scan(&n); err != nil {
		return 0, fmt.Errorf("error reading the shadow's progress: %w", err)
	}
	return n, nil
}

// Behind is a report whose shadow has not yet applied what the mirror
// handed it.
type Behind struct {
	Key dtetype.Key
	// Since is when the oldest unapplied delivery was made.
	Since        time.Time
	DeliveredSeq int64
	DeliveredAt  time.Time
	AppliedSeq   *int64
	Version      *int64
	UpdatedAt    *time.Time
}

// BehindReports lists the reports the shadow is behind on.
func (s *Store) BehindReports(ctx context.Context) ([]Behind, error) {
	rows, err := s.db.Query(ctx, s.sql("BehindReports"))
	if err != nil {
		return nil, fmt.Errorf("error reading the mirror watermark: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Behind, error) {
		var b Behind
		err := r.Scan(&b.Key.CycleID, &b.Key.ReportID, &b.Since, &b.DeliveredSeq, &b.DeliveredAt, &b.AppliedSeq, &b.Version, &b.UpdatedAt)
		return b, err
	})
}

// FindingCount is how often the shadow found one rule broken in one phase,
// historically or live, and in which reports.
type FindingCount struct {
	Historical bool
	Phase      dtetype.Phase
	Rule       string
	Findings   int64
	Reports    int64
	// Keys are the reports involved, the first limit of them (all with 0).
	Keys []dtetype.Key
}

// Findings counts the shadow's findings by origin, phase and rule, of one
// phase if phase is set, listing up to limit reports each (all with 0).
func (s *Store) Findings(ctx context.Context, phase dtetype.Phase, limit int) ([]FindingCount, error) {
	rows, err := s.db.Query(ctx, s.sql("Findings"), nullable(string(phase)), limit)
	if err != nil {
		return nil, fmt.Errorf("error reading the shadow's findings: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (FindingCount, error) {
		var f FindingCount
		var cycles, reports []int64
		if err := r.Scan(&f.Historical, &f.Phase, &f.Rule, &f.Findings, &f.Reports, &cycles, &reports); err != nil {
			return f, err
		}
		for i := range cycles {
			f.Keys = append(f.Keys, dtetype.Key{CycleID: cycles[i], ReportID: reports[i]})
		}
		return f, nil
	})
}

// HistoricalReports counts the reports with historical findings (in phase,
// if set).
func (s *Store) HistoricalReports(ctx context.Context, phase dtetype.Phase) (int64, error) {
	var n int64
	if err := s.db.QueryRow(ctx, s.sql("HistoricalReports"), nullable(string(phase))).Scan(&n); err != nil {
		return 0, fmt.Errorf("error counting reports with historical findings: %w", err)
	}
	return n, nil
}

// ShadowAttributes returns the attributes each shadow judges by, for the
// reports that have any.
func (s *Store) ShadowAttributes(ctx context.Context) (map[dtetype.Key]map[string]string, error) {
	rows, err := s.db.Query(ctx, s.sql("ShadowAttributes"))
	if err != nil {
		return nil, fmt.Errorf("error reading the shadow's attributes: %w", err)
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
	return out, rows.Err()
}

// DivergentReports returns the reports whose shadow holds them divergent.
func (s *Store) DivergentReports(ctx context.Context) (map[dtetype.Key]bool, error) {
	rows, err := s.db.Query(ctx, s.sql("DivergentFlags"))
	if err != nil {
		return nil, fmt.Errorf("error reading divergent reports: %w", err)
	}
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (dtetype.Key, error) {
		var k dtetype.Key
		return k, r.Scan(&k.CycleID, &k.ReportID)
	})
	out := make(map[dtetype.Key]bool, len(keys))
	for _, k := range keys {
		out[k] = true
	}
	return out, err
}
