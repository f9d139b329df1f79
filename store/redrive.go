package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// MirrorConsumer is the change-stream consumer that feeds the shadow: the
// mirror in dtebridge serve. Re-drives are served by its leader.
const MirrorConsumer = "mirror"

// Redrive reasons.
const (
	RedriveRepair     = "repair"
	RedriveRollback   = "rollback"
	RedriveQuarantine = "quarantine"
	RedriveMigrate    = "migrate"
	RedriveMode       = "mode_change"
	// RedriveAttributes: legacy changed a report attribute.
	RedriveAttributes = "attributes"
)

// RedriveRequest asks the capture leader of the mirror to re-drive reports.
type RedriveRequest struct {
	Keys        []dtetype.Key
	Reason      string
	RequestedBy string
	// Definition, if set (id@version), is the definition the reports'
	// shadows move to.
	Definition string
}

// RequestRedrives records re-drive requests for the mirror's leader and
// returns their ids. Run it in the transaction that makes the re-drive
// necessary (a rollback), so the two commit together.
func (s *Store) RequestRedrives(ctx context.Context, r RedriveRequest) ([]int64, error) {
	if len(r.Keys) == 0 {
		return nil, nil
	}
	cs, rs := splitKeys(r.Keys)
	var def *string
	if r.Definition != "" {
		def = &r.Definition
	}
	rows, err := s.db.Query(ctx, s.sql("RequestRedrive"), MirrorConsumer, cs, rs, r.Reason, r.RequestedBy, def)
	if err != nil {
		return nil, &NotInstalledError{fmt.Errorf("error requesting re-drives: %w", err)}
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// PendingRedrive is a re-drive the leader has yet to serve.
type PendingRedrive struct {
	ID         int64
	Key        dtetype.Key
	Reason     string
	Definition string
}

// PendingRedrives returns up to limit pending re-drives of consumer,
// oldest first.
func (s *Store) PendingRedrives(ctx context.Context, consumer string, limit int) ([]PendingRedrive, error) {
	rows, err := s.db.Query(ctx, s.sql("PendingRedrives"), consumer, limit)
	if err != nil {
		return nil, fmt.Errorf("error reading re-drive requests: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (PendingRedrive, error) {
		var p PendingRedrive
		err := r.Scan(&p.ID, &p.Key.CycleID, &p.Key.ReportID, &p.Reason, &p.Definition)
		return p, err
	})
}

// FinishRedrives records re-drives as served under seq with rows legacy
// rows, or failed with errText.
func (s *Store) FinishRedrives(ctx context.Context, ids []int64, seq int64, rows int, errText string) error {
	var e *string
	if errText != "" {
		e = &errText
	}
	if _, err := s.db.Exec(ctx, s.sql("FinishRedrive"), ids, seq, rows, e); err != nil {
		return fmt.Errorf("error recording re-drives: %w", err)
	}
	return nil
}

// RedriveStatus is the progress of one re-drive request.
type RedriveStatus struct {
	ID  int64
	Key dtetype.Key
	// Done means the leader served it; Error says why it could not.
	Done  bool
	Error string
	// Applied means the shadow has projected it.
	Applied bool
}

// RedriveProgress returns the progress of the re-drives ids.
func (s *Store) RedriveProgress(ctx context.Context, ids []int64) ([]RedriveStatus, error) {
	rows, err := s.db.Query(ctx, s.sql("RedriveProgress"), ids)
	if err != nil {
		return nil, fmt.Errorf("error reading re-drives: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (RedriveStatus, error) {
		var st RedriveStatus
		err := r.Scan(&st.ID, &st.Key.CycleID, &st.Key.ReportID, &st.Done, &st.Error, &st.Applied)
		return st, err
	})
}

// WaitRedrives waits until every re-drive in ids has been applied by the
// shadow (or failed), or until timeout, polling every interval. It returns
// the last progress it read.
func (s *Store) WaitRedrives(ctx context.Context, ids []int64, timeout time.Duration) ([]RedriveStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := s.RedriveProgress(ctx, ids)
		if err != nil {
			return nil, err
		}
		finished := true
		for _, r := range st {
			finished = finished && (r.Applied || r.Error != "")
		}
		if finished || time.Now().After(deadline) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
