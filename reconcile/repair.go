package reconcile

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/shadow"
)

// TemporalOptions reach the shadow workflows, for repair and the deep check.
type TemporalOptions struct {
	Client client.Client
	// Definition starts a workflow that does not run; running ones keep theirs.
	Definition *dtetype.Definition
	// Translator reads legacy rows for a resync.
	Translator *adapter.Translator
	// TaskQueue and WorkflowIDPrefix as the mirror uses them.
	TaskQueue        string
	WorkflowIDPrefix string
	// Wait bounds how long repair waits for the shadow to apply a resync.
	// Default: 30s.
	Wait time.Duration
	// Owned, if set, reports phases and reports the new engine owns: repair
	// leaves them alone, because legacy is not their truth.
	Owned func(k dtetype.Key, p dtetype.Phase) bool
}

func (t *TemporalOptions) defaults() {
	if t.TaskQueue == "" {
		t.TaskQueue = shadow.DefaultTaskQueue
	}
	if t.WorkflowIDPrefix == "" {
		t.WorkflowIDPrefix = shadow.DefaultWorkflowIDPrefix
	}
	if t.Wait == 0 {
		t.Wait = 30 * time.Second
	}
}

// RepairReport says what a repair did.
type RepairReport struct {
	// Reports re-driven from legacy.
	Reports int `json:"reports"`
	// Attempted divergences, and how many the re-check no longer finds.
	Attempted int `json:"attempted"`
	Repaired  int `json:"repaired"`
	// Remaining are the divergences the re-check still finds.
	Remaining []Divergence `json:"remaining"`
}

// repairable kinds are the ones a resync from legacy can fix; the others
// are facts about legacy (a rule it let through, duplicate rows) or wait on
// the mapping (quarantine).
var repairable = []string{KindMissingInShadow, KindOrphanInShadow, KindStateMismatch, KindStatusMismatch,
	KindDatesMismatch, KindActorMismatch, KindStale, KindProjectionMismatch}

// Repair re-drives every report with an unexpected, repairable divergence
// from legacy truth: it signals the report's workflow a resync carrying its
// full legacy rows, waits for the shadow to project it, re-checks those
// reports and records the outcome in r.Repair.
func Repair(ctx context.Context, o Options, t TemporalOptions, r *Report) error {
	t.defaults()
	o.Capture = orCapture(o.Capture)
	rep := &RepairReport{Remaining: []Divergence{}}
	r.Repair = rep
	var keys []dtetype.Key
	for _, d := range r.Divergences {
		if d.Expected || !slices.Contains(repairable, d.Kind) || (t.Owned != nil && t.Owned(d.Key, d.Phase)) {
			continue
		}
		rep.Attempted++
		if !slices.Contains(keys, d.Key) {
			keys = append(keys, d.Key)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	rep.Reports = len(keys)
	if err := Resync(ctx, o, t, keys); err != nil {
		return err
	}
	check := o
	check.Scope = Scope{Keys: keys}
	check.Persist, check.Progress = false, nil
	after, err := Run(ctx, check)
	if err != nil {
		return fmt.Errorf("error re-checking repaired reports: %w", err)
	}
	for _, d := range after.Divergences {
		if !d.Expected && slices.Contains(repairable, d.Kind) {
			rep.Remaining = append(rep.Remaining, d)
		}
	}
	rep.Repaired = max(0, rep.Attempted-len(rep.Remaining))
	return nil
}

// Resync re-drives reports from legacy truth: each report's workflow gets a
// resync signal carrying its full legacy rows, and Resync waits (up to
// t.Wait) for the shadow to project it.
func Resync(ctx context.Context, o Options, t TemporalOptions, keys []dtetype.Key) error {
	t.defaults()
	o.Capture = orCapture(o.Capture)
	q := newQueries(&o)
	m := o.Mapping.Resolved()
	table := pgx.Identifier(strings.Split(orDefault(o.Capture.Table, "public.workflow_phases"), ".")).Sanitize()
	keyCols := o.Capture.Key
	if len(keyCols) == 0 {
		keyCols = []string{"phase_id"}
	}
	var keyExprs []string
	for _, k := range keyCols {
		keyExprs = append(keyExprs, "t."+pgx.Identifier{k}.Sanitize())
	}
	before := map[dtetype.Key]int64{}
	for _, k := range keys {
		var v int64
		err := o.Pool.QueryRow(ctx, `SELECT coalesce((SELECT version FROM `+q.schema+`.shadow_keys WHERE cycle_id = $1 AND report_id = $2), 0)`,
			k.CycleID, k.ReportID).Scan(&v)
		if err != nil {
			return err
		}
		before[k] = v
		rows, err := o.Pool.Query(ctx, `SELECT to_jsonb(t), concat_ws(',', `+strings.Join(keyExprs, ", ")+`) FROM `+table+` t
			WHERE t.`+pgx.Identifier{m.Columns.Cycle}.Sanitize()+` = $1 AND t.`+pgx.Identifier{m.Columns.Report}.Sanitize()+` = $2
			ORDER BY `+strings.Join(keyExprs, ", "), k.CycleID, k.ReportID)
		if err != nil {
			return fmt.Errorf("error reading legacy rows of %s: %w", k, err)
		}
		var changes []dtetype.PhaseChange
		stamp := time.Now().UnixNano()
		for rows.Next() {
			var row []byte
			var rowKey string
			if err := rows.Scan(&row, &rowKey); err != nil {
				rows.Close()
				return err
			}
			res := t.Translator.Translate(&adapter.RawChange{Op: "S", Source: o.Capture.Table, RowKey: rowKey, New: row,
				Origin: dtetype.OriginLegacy, TxTime: time.Now(), CapturedAt: time.Now()})
			if res.Ignored || res.Err != nil {
				continue // quarantine owns untranslatable rows
			}
			c := *res.Change
			c.EventID = fmt.Sprintf("r%d:%s", stamp, rowKey)
			changes = append(changes, c)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		id := shadow.WorkflowID(t.WorkflowIDPrefix, k)
		_, err = t.Client.SignalWithStartWorkflow(ctx, id, shadow.SignalChanges, shadow.Signal{Changes: changes, Resync: true},
			client.StartWorkflowOptions{ID: id, TaskQueue: t.TaskQueue}, shadow.WorkflowName, shadow.Input{Key: k, Definition: *t.Definition})
		if err != nil {
			return fmt.Errorf("error resyncing %s: %w", id, err)
		}
	}
	// Wait for each report's projection to move past the resync.
	deadline := time.Now().Add(t.Wait)
	for len(before) > 0 && time.Now().Before(deadline) {
		for k, v := range before {
			var now int64
			if err := o.Pool.QueryRow(ctx, `SELECT coalesce((SELECT version FROM `+q.schema+`.shadow_keys WHERE cycle_id = $1 AND report_id = $2), 0)`,
				k.CycleID, k.ReportID).Scan(&now); err != nil {
				return err
			}
			if now > v {
				delete(before, k)
			}
		}
		if len(before) > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// DeepReport says what the deep check found.
type DeepReport struct {
	Queried   int `json:"queried"`
	Disagreed int `json:"disagreed"`
}

// Deep queries up to n shadow workflows (all when n <= 0) directly in
// Temporal and compares each with its projection; every disagreement, or a
// workflow that cannot answer, is a projection_mismatch divergence in r.
func Deep(ctx context.Context, o Options, t TemporalOptions, n int, r *Report) error {
	t.defaults()
	q := newQueries(&o)
	limit := "ALL"
	if n > 0 {
		limit = fmt.Sprint(n)
	}
	rows, err := o.Pool.Query(ctx, `SELECT cycle_id, report_id FROM `+q.schema+`.shadow_keys
		WHERE ($1::bigint IS NULL OR cycle_id = $1) ORDER BY cycle_id, report_id LIMIT `+limit, o.Scope.Cycle)
	if err != nil {
		return err
	}
	var keys []dtetype.Key
	for rows.Next() {
		var k dtetype.Key
		if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
			rows.Close()
			return err
		}
		keys = append(keys, k)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	dr := &DeepReport{}
	r.Deep = dr
	for _, k := range keys {
		dr.Queried++
		projected := map[dtetype.Phase][3]string{}
		prows, err := o.Pool.Query(ctx, `SELECT phase, state, legacy_status, status FROM `+q.schema+`.shadow_phases WHERE cycle_id = $1 AND report_id = $2`, k.CycleID, k.ReportID)
		if err != nil {
			return err
		}
		for prows.Next() {
			var p, a, b, c string
			if err := prows.Scan(&p, &a, &b, &c); err != nil {
				prows.Close()
				return err
			}
			projected[dtetype.Phase(p)] = [3]string{a, b, c}
		}
		if err := prows.Err(); err != nil {
			return err
		}
		var problems []string
		id := shadow.WorkflowID(t.WorkflowIDPrefix, k)
		desc, err := t.Client.DescribeWorkflowExecution(ctx, id, "")
		switch {
		case err != nil:
			problems = append(problems, "workflow "+id+" cannot be found: "+err.Error())
		case desc.GetWorkflowExecutionInfo().GetCloseTime() != nil:
			problems = append(problems, fmt.Sprintf("workflow %s is not running (%s): its projection no longer follows legacy",
				id, desc.GetWorkflowExecutionInfo().GetStatus()))
		default:
			v, err := t.Client.QueryWorkflow(ctx, id, "", shadow.QueryState)
			var st shadow.State
			if err == nil {
				err = v.Get(&st)
			}
			if err != nil {
				problems = append(problems, "workflow "+id+" did not answer its state query: "+err.Error())
				break
			}
			seen := map[dtetype.Phase]bool{}
			for _, ps := range st.Phases {
				seen[ps.Phase] = true
				got := [3]string{string(ps.State), string(ps.LegacyStatus), string(ps.Status)}
				if p, ok := projected[ps.Phase]; !ok || p != got {
					problems = append(problems, fmt.Sprintf("%s: workflow %v, projection %v", ps.Phase, got, p))
				}
			}
			for p := range projected {
				if !seen[p] {
					problems = append(problems, fmt.Sprintf("%s: projected but unknown to the workflow", p))
				}
			}
		}
		if len(problems) > 0 {
			dr.Disagreed++
			slices.Sort(problems)
			d := Divergence{Key: k, Phase: "*", Kind: KindProjectionMismatch, Legacy: "-", Shadow: "projection disagrees", Detail: strings.Join(problems, "; ")}
			for i := range o.Expected {
				if o.Expected[i].Matches(&d) {
					d.Rule, d.Expected = o.Expected[i].Name, true
					break
				}
			}
			r.Divergences = append(r.Divergences, d)
			if d.Expected {
				r.Expected++
				r.ExpectedByRule[d.Rule]++
			} else {
				r.Unexpected++
				r.Counts[d.Kind]++
			}
		}
	}
	return nil
}
