package legacysim

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
)

// UserRoles are the roles the simulator's users have, as legacy spells them:
// user n has UserRoles[n % len(UserRoles)].
var UserRoles = []string{"Tester", "Test Manager", "Tester", "Test Executive", "Report Owner", "Tester",
	"CDO", "Data Provider", "Report Executive", "Report Owner Executive"}

// CreateUsers inserts the simulator's users, 1 to 50 and the testers 100 to
// 119, unless they exist.
func (m *Model) CreateUsers(ctx context.Context) error {
	var ids []int64
	var names, roles []string
	add := func(id int64, role string) {
		ids, names, roles = append(ids, id), append(names, fmt.Sprintf("user%d", id)), append(roles, role)
	}
	for id := int64(1); id <= 50; id++ {
		add(id, UserRoles[id%int64(len(UserRoles))])
	}
	for id := int64(100); id < 120; id++ {
		add(id, "Tester")
	}
	err := m.tx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO users (user_id, user_name, role)
			SELECT * FROM unnest($1::int[], $2::text[], $3::text[]) ON CONFLICT (user_id) DO NOTHING`, ids, names, roles)
		return err
	})
	if err != nil {
		return fmt.Errorf("error creating users: %w", err)
	}
	return nil
}

// CreateCycle inserts a test cycle starting on start's date and returns its id.
func (m *Model) CreateCycle(ctx context.Context, name string, start time.Time) (int64, error) {
	var id int64
	err := m.tx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO test_cycles (cycle_name, start_date, created_at)
			VALUES ($1, $2, $3) RETURNING cycle_id`, name, civil(start), m.now()).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("error creating cycle %q: %w", name, err)
	}
	return id, nil
}

// CreateReport inserts a report and returns its id.
func (m *Model) CreateReport(ctx context.Context, name, regulation string) (int64, error) {
	var id int64
	err := m.tx(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO reports (report_name, regulation, created_at)
			VALUES ($1, $2, $3) RETURNING report_id`, name, regulation, m.now()).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("error creating report %q: %w", name, err)
	}
	return id, nil
}

// AddOptions controls how a report's workflow rows are created.
type AddOptions struct {
	// Tester is the user assigned to the report.
	Tester int64
	// Aliases creates the rows with the older alias labels (Sampling, Data
	// Owner ID, ...) where the profile has them, and a NULL phase_order, as
	// reports created by older versions of the application have.
	Aliases bool
}

// AddReport adds a report to a cycle and creates its workflow: one Not
// Started row per phase of the chain, with planned dates laid end to end from
// the cycle's start date using the orchestrator's planned durations.
func (m *Model) AddReport(ctx context.Context, key dtetype.Key, opts AddOptions) ([]Row, error) {
	var out []Row
	err := m.tx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		now := m.now()
		var start time.Time
		if err := tx.QueryRow(ctx, `SELECT start_date FROM test_cycles WHERE cycle_id = $1`, key.CycleID).Scan(&start); err != nil {
			return fmt.Errorf("error reading cycle %d: %w", key.CycleID, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO cycle_reports (cycle_id, report_id, tester_id, created_at)
			VALUES ($1, $2, $3, $4)`, key.CycleID, key.ReportID, opts.Tester, now); err != nil {
			return fmt.Errorf("error adding report %d to cycle %d: %w", key.ReportID, key.CycleID, err)
		}
		notStarted := m.profile.State(dtetype.StateNotStarted)
		for i, ph := range m.profile.Chain {
			label := ph.Label
			var order *int
			if opts.Aliases && len(ph.Aliases) > 0 {
				label = ph.Aliases[0]
			}
			if !opts.Aliases {
				o := m.profile.PhaseOrderBase + i
				order = &o
			}
			end := start.AddDate(0, 0, ph.PlannedDays)
			r, err := m.insert(ctx, tx, key, label, order, start, end, opts.Tester, now)
			if err != nil {
				return err
			}
			if r.State != notStarted {
				return fmt.Errorf("new row %d is %q, not %q", r.PhaseID, r.State, notStarted)
			}
			out = append(out, *r)
			start = end
		}
		return nil
	})
	return out, err
}

func (m *Model) insert(ctx context.Context, tx pgx.Tx, key dtetype.Key, label string, order *int, start, end time.Time, user int64, now time.Time) (*Row, error) {
	status := m.schedule(now, m.profile.State(dtetype.StateNotStarted), &end)
	cols := "cycle_id, report_id, phase_name, phase_order, state, schedule_status, planned_start_date, planned_end_date, metadata, phase_data, created_at, updated_at"
	vals := "$1, $2, $3, $4, $5, $6, $7, $8, $9, '{}', $10, $10"
	args := []any{key.CycleID, key.ReportID, label, order, m.profile.State(dtetype.StateNotStarted), status,
		civil(start), civil(end), map[string]any{"created_by": "orchestrator"}, now}
	if m.profile.StatusColumn {
		cols += ", status"
		vals += ", $11"
		args = append(args, StatusNotStarted)
	}
	if m.profile.ExtraColumns {
		cols += ", progress_percentage, sla_deadline, is_sla_breached, risk_level, created_by_id"
		vals += ", 0, $12, false, 'Low', $13"
		args = append(args, civil(end), user)
	}
	r, err := m.scan(tx.QueryRow(ctx, "INSERT INTO workflow_phases ("+cols+") VALUES ("+vals+") RETURNING "+m.cols, args...))
	if err != nil {
		return nil, fmt.Errorf("error creating %s row for %s: %w", label, key, err)
	}
	return r, nil
}

// Duplicate inserts a second, Not Started row for a phase that already has
// one, as a re-initialisation bug does in databases without the unique
// constraint. The application keeps working on the older row.
func (m *Model) Duplicate(ctx context.Context, ref Ref) ([]Row, error) {
	if m.profile.UniquePhase {
		return nil, fmt.Errorf("duplicate phase row: %w %s (unique constraint)", ErrUnsupported, m.profile.Name)
	}
	var out []Row
	err := m.tx(ctx, func(tx pgx.Tx) error {
		r, err := m.lock(ctx, tx, ref)
		if err != nil {
			return err
		}
		var order *int
		if r.PhaseOrder != nil {
			o := int(*r.PhaseOrder)
			order = &o
		}
		var start, end time.Time
		if r.PlannedStart != nil {
			start = *r.PlannedStart
		}
		if r.PlannedEnd != nil {
			end = *r.PlannedEnd
		}
		d, err := m.insert(ctx, tx, ref.Key, r.PhaseName, order, start, end, 0, m.now())
		if err != nil {
			return err
		}
		out = []Row{*d}
		return nil
	})
	return out, err
}

// BulkReschedule is an operations script: in one transaction and one UPDATE
// statement it moves the planned dates of every unfinished phase row of a
// cycle by days and recomputes their schedule status. It returns the number
// of rows updated.
func (m *Model) BulkReschedule(ctx context.Context, cycleID int64, days int) (int64, error) {
	var n int64
	err := m.tx(ctx, func(tx pgx.Tx) error {
		now := m.now()
		complete := m.profile.State(dtetype.StateCompleted)
		rows, err := tx.Query(ctx, `SELECT phase_id, planned_end_date FROM workflow_phases
			WHERE cycle_id = $1 AND state::text <> $2 ORDER BY phase_id FOR UPDATE`, cycleID, complete)
		if err != nil {
			return fmt.Errorf("error locking cycle %d: %w", cycleID, err)
		}
		var ids []int64
		var statuses []string
		for rows.Next() {
			var id int64
			var end *time.Time
			if err := rows.Scan(&id, &end); err != nil {
				return err
			}
			if end != nil {
				e := end.AddDate(0, 0, days)
				end = &e
			}
			ids = append(ids, id)
			statuses = append(statuses, m.schedule(now, "", end))
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("error locking cycle %d: %w", cycleID, err)
		}
		tag, err := tx.Exec(ctx, `UPDATE workflow_phases w SET
				planned_start_date = w.planned_start_date + $1::int,
				planned_end_date = w.planned_end_date + $1::int,
				schedule_status = u.s::`+pgx.Identifier{m.profile.ScheduleEnum}.Sanitize()+`,
				updated_at = $2
			FROM unnest($3::bigint[], $4::text[]) AS u(id, s)
			WHERE w.phase_id = u.id`, days, now, ids, statuses)
		if err != nil {
			return fmt.Errorf("error rescheduling cycle %d: %w", cycleID, err)
		}
		n = tag.RowsAffected()
		return nil
	})
	return n, err
}

// civil returns t's calendar date in UTC as a DATE value.
func civil(t time.Time) time.Time {
	y, mo, d := t.UTC().Date()
	return time.Date(y, mo, d, 0, 0, 0, 0, time.UTC)
}
