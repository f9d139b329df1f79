package reconcile

import (
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// queries holds a run's SQL, built from the configuration. Identifiers
// from the configuration are quoted; values travel as named arguments.
type queries struct {
	schema                                    string
	pending, unapplied, quarantined, phasesOf string
	sumsLegacy, sumsShadow, compare           string
	violations                                string
	args                                      pgx.NamedArgs
}

func newQueries(o *Options) *queries {
	m := o.Mapping.Resolved()
	c := m.Columns
	id := func(name string) string { return "w." + pgx.Identifier{name}.Sanitize() }
	cap := o.Capture
	schemaName := cap.Schema
	if schemaName == "" {
		schemaName = "dtebridge"
	}
	table := cap.Table
	if table == "" {
		table = "public.workflow_phases"
	}
	keyCols := cap.Key
	if len(keyCols) == 0 {
		keyCols = []string{"phase_id"}
	}
	schema := pgx.Identifier{schemaName}.Sanitize()
	tbl := pgx.Identifier(strings.Split(table, ".")).Sanitize()
	var order []string
	for _, k := range keyCols {
		order = append(order, id(k))
	}

	q := &queries{schema: schema, args: pgx.NamedArgs{}}
	var pl, pi, sl, si, tl, ti []string
	for _, k := range sortedKeys(m.Phases) {
		pl, pi = append(pl, k), append(pi, string(m.Phases[k]))
	}
	for _, k := range sortedKeys(m.States) {
		sl, si = append(sl, k), append(si, string(m.States[k]))
	}
	for _, k := range sortedKeys(m.Statuses) {
		tl, ti = append(tl, k), append(ti, string(m.Statuses[k]))
	}
	ignore := append([]string{}, m.IgnorePhases...)
	q.args["phase_labels"], q.args["phase_ids"] = pl, pi
	q.args["state_labels"], q.args["states"] = sl, si
	q.args["status_labels"], q.args["statuses"] = tl, ti
	q.args["ignore"] = ignore
	q.args["cycle"], q.args["phase"], q.args["since"] = o.Scope.Cycle, nilIfEmpty(string(o.Scope.Phase)), o.Scope.Since
	var kc, kr []int64
	for _, k := range o.Scope.Keys {
		kc, kr = append(kc, k.CycleID), append(kr, k.ReportID)
	}
	if len(o.Scope.Keys) > 0 {
		q.args["key_cycles"], q.args["key_reports"] = kc, kr
	} else {
		q.args["key_cycles"], q.args["key_reports"] = []int64(nil), []int64(nil)
	}
	q.args["tolerance"] = o.DateTolerance.Seconds()
	q.args["consumer"] = o.Consumer
	q.args["cycle_col"], q.args["report_col"] = c.Cycle, c.Report

	mapping := `mp(label, phase) AS (SELECT * FROM unnest(@phase_labels::text[], @phase_ids::text[])),
		ms(label, state) AS (SELECT * FROM unnest(@state_labels::text[], @states::text[])),
		mt(label, status) AS (SELECT * FROM unnest(@status_labels::text[], @statuses::text[]))`
	phaseExpr := "coalesce(mp.phase, '?' || " + id(c.Phase) + "::text)"
	keyScope := func(cyc, rep string) string {
		return `(@cycle::bigint IS NULL OR ` + cyc + ` = @cycle)
			AND (@key_cycles::bigint[] IS NULL OR (` + cyc + `, ` + rep + `) IN (SELECT * FROM unnest(@key_cycles::bigint[], @key_reports::bigint[])))
			AND (@since::timestamptz IS NULL OR (` + cyc + `, ` + rep + `) IN (
				SELECT ` + pgx.Identifier{c.Cycle}.Sanitize() + `::bigint, ` + pgx.Identifier{c.Report}.Sanitize() + `::bigint FROM ` + tbl + `
				WHERE ` + pgx.Identifier{c.UpdatedAt}.Sanitize() + ` >= @since
				UNION SELECT cycle_id, report_id FROM ` + schema + `.shadow_phases WHERE tx_time >= @since))`
	}
	lw := `lw AS (
		SELECT ` + id(c.Cycle) + `::bigint AS cycle_id, ` + id(c.Report) + `::bigint AS report_id, ` + phaseExpr + ` AS phase,
			ms.state, mt.status,
			` + id(c.PlannedStart) + `::timestamptz AS planned_start, ` + id(c.PlannedEnd) + `::timestamptz AS planned_end,
			` + id(c.ActualStart) + `::timestamptz AS actual_start, ` + id(c.ActualEnd) + `::timestamptz AS actual_end,
			coalesce(` + id(c.StartedBy) + `::text, '') AS started_by, coalesce(` + id(c.CompletedBy) + `::text, '') AS completed_by,
			` + strings.Join(order, ", ") + `
		FROM ` + tbl + ` w
		LEFT JOIN mp ON mp.label = ` + id(c.Phase) + `::text
		LEFT JOIN ms ON ms.label = coalesce(` + id(c.StateOverride) + `, ` + id(c.State) + `)::text
		LEFT JOIN mt ON mt.label = coalesce(` + id(c.StatusOverride) + `, ` + id(c.Status) + `)::text
		WHERE NOT (` + id(c.Phase) + `::text = ANY(@ignore::text[]))
			AND (@phase::text IS NULL OR ` + phaseExpr + ` = @phase)
			AND ` + keyScope(id(c.Cycle), id(c.Report)) + `)`
	var lorder []string
	for _, k := range keyCols {
		lorder = append(lorder, "lw."+pgx.Identifier{k}.Sanitize())
	}
	// The fast path: a checksum per (cycle, phase) on each side. Where the
	// two agree, and the counts show one legacy row per key, every key of
	// the group agrees; only the other groups are compared key by key.
	tuple := func(p string) string {
		ts := func(col string) string {
			return `coalesce(floor(extract(epoch FROM ` + p + col + `))::text, '~')`
		}
		return `hashtext(concat_ws('|', ` + p + `report_id, ` + p + `phase, coalesce(` + p + `state, '~'), coalesce(` + p + `status, '~'), ` +
			ts("planned_start") + `, ` + ts("planned_end") + `, ` + ts("actual_start") + `, ` + ts("actual_end") + `, ` +
			`coalesce(` + p + `started_by, ''), coalesce(` + p + `completed_by, '')))`
	}
	q.sumsLegacy = `WITH ` + mapping + `, ` + lw + ` SELECT cycle_id, phase, count(*), coalesce(sum(` + tuple("lw.") + `), 0)::bigint
		FROM lw GROUP BY 1, 2`
	q.sumsShadow = `SELECT cycle_id, phase, count(*), coalesce(sum(` + tuple("s.") + `), 0)::bigint
		FROM ` + schema + `.shadow_phases s WHERE (@phase::text IS NULL OR s.phase = @phase) AND ` + keyScope("s.cycle_id", "s.report_id") + `
		GROUP BY 1, 2`
	groupFilter := func(p string) string {
		return `(@group_cycles::bigint[] IS NULL OR (` + p + `cycle_id, ` + p + `phase) IN (
			SELECT * FROM unnest(@group_cycles::bigint[], @group_phases::text[])))`
	}
	same := func(col string) string {
		return `((l.` + col + ` IS NULL AND s.` + col + ` IS NULL) OR abs(extract(epoch FROM l.` + col + ` - s.` + col + `)) <= @tolerance::float8)`
	}
	q.compare = `WITH ` + mapping + `, ` + lw + `,
		l AS (SELECT DISTINCT ON (cycle_id, report_id, phase) lw.*, count(*) OVER (PARTITION BY cycle_id, report_id, phase) AS nrows
			FROM lw WHERE ` + groupFilter("lw.") + ` ORDER BY cycle_id, report_id, phase, ` + strings.Join(lorder, ", ") + `),
		s AS (SELECT * FROM ` + schema + `.shadow_phases s WHERE (@phase::text IS NULL OR s.phase = @phase) AND ` + keyScope("s.cycle_id", "s.report_id") + `
			AND ` + groupFilter("s.") + `)
		SELECT coalesce(l.cycle_id, s.cycle_id), coalesce(l.report_id, s.report_id), coalesce(l.phase, s.phase),
			l.cycle_id IS NOT NULL, s.cycle_id IS NOT NULL, coalesce(l.nrows, 0),
			l.state, l.status, l.planned_start, l.planned_end, l.actual_start, l.actual_end, coalesce(l.started_by, ''), coalesce(l.completed_by, ''),
			s.state, s.status, s.planned_start, s.planned_end, s.actual_start, s.actual_end, coalesce(s.started_by, ''), coalesce(s.completed_by, '')
		FROM l FULL JOIN s ON s.cycle_id = l.cycle_id AND s.report_id = l.report_id AND s.phase = l.phase
		WHERE l.cycle_id IS NULL OR s.cycle_id IS NULL OR l.nrows > 1
			OR l.state IS DISTINCT FROM s.state OR l.status IS DISTINCT FROM s.status
			OR l.started_by <> coalesce(s.started_by, '') OR l.completed_by <> coalesce(s.completed_by, '')
			OR NOT (` + same("planned_start") + ` AND ` + same("planned_end") + ` AND ` + same("actual_start") + ` AND ` + same("actual_end") + `)
		ORDER BY 1, 2, 3`
	q.violations = `SELECT k.cycle_id, k.report_id, v->>'phase', v->>'rule', v->>'detail', coalesce(v->>'event_id', '')
		FROM ` + schema + `.shadow_keys k, jsonb_array_elements(k.recent_violations) v
		WHERE k.violations > 0 AND (@phase::text IS NULL OR v->>'phase' = @phase) AND ` + keyScope("k.cycle_id", "k.report_id")
	num := func(field string) string {
		return `CASE WHEN (coalesce(c.new_row, c.old_row)->>@` + field + `) ~ '^-?[0-9]{1,18}$' THEN (coalesce(c.new_row, c.old_row)->>@` + field + `)::bigint END`
	}
	q.pending = `SELECT * FROM (SELECT ` + num("cycle_col") + ` AS cycle_id, ` + num("report_col") + ` AS report_id, min(c.captured_at)
		FROM ` + schema + `.changes c LEFT JOIN ` + schema + `.checkpoints cp ON cp.consumer = @consumer
		WHERE cp.acked_snapshot IS NULL OR c.xid >= pg_snapshot_xmax(cp.acked_snapshot) OR c.xid IN (SELECT pg_snapshot_xip(cp.acked_snapshot))
		GROUP BY 1, 2) p WHERE cycle_id IS NOT NULL AND report_id IS NOT NULL`
	q.unapplied = `SELECT m.cycle_id, m.report_id, coalesce(m.pending_since, m.delivered_at) FROM ` + schema + `.mirror_keys m
		LEFT JOIN ` + schema + `.shadow_keys s USING (cycle_id, report_id)
		WHERE s.applied_seq IS NULL OR s.applied_seq < m.delivered_seq`
	q.quarantined = `SELECT cycle_id, report_id, string_agg(DISTINCT reason, ', ') FROM ` + schema + `.quarantine
		WHERE delivered_at IS NULL AND cycle_id IS NOT NULL AND report_id IS NOT NULL GROUP BY 1, 2`
	q.phasesOf = `WITH ` + mapping + ` SELECT DISTINCT ` + id(c.Cycle) + `::bigint, ` + id(c.Report) + `::bigint, ` + phaseExpr + `
		FROM ` + tbl + ` w LEFT JOIN mp ON mp.label = ` + id(c.Phase) + `::text
		WHERE (` + id(c.Cycle) + `::bigint, ` + id(c.Report) + `::bigint) IN (SELECT * FROM unnest(@cycles::bigint[], @reports::bigint[]))`
	return q
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
