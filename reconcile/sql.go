package reconcile

import (
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/store"
)

// queries holds a run's SQL: the legacy side built here from the
// configured table, the comparison around it rendered by the store, which
// owns every query against the bridge schema. Identifiers from the
// configuration are quoted; values travel as named arguments.
type queries struct {
	*store.ReconcileSQL
	phasesOf string
	args     pgx.NamedArgs
}

func newQueries(o *Options) (*queries, error) {
	t := o.Table
	c := t.Columns
	id := func(name string) string { return legacy.Col("w", name) }
	tbl := t.Ident()
	q := &queries{args: pgx.NamedArgs{}}
	var pl, pi, sl, si, tl, ti []string
	for l, v := range t.Phases.All() {
		pl, pi = append(pl, l), append(pi, string(v))
	}
	for l, v := range t.States.All() {
		sl, si = append(sl, l), append(si, string(v))
	}
	for l, v := range t.Statuses.All() {
		tl, ti = append(tl, l), append(ti, string(v))
	}
	q.args["phase_labels"], q.args["phase_ids"] = pl, pi
	q.args["state_labels"], q.args["states"] = sl, si
	q.args["status_labels"], q.args["statuses"] = tl, ti
	q.args["ignore"] = append([]string{}, t.IgnorePhases...)
	q.args["cycle"], q.args["phase"], q.args["since"] = o.Scope.Cycle, nilIfEmpty(string(o.Scope.Phase)), o.Scope.Since
	var kc, kr []int64
	for _, k := range o.Scope.Keys {
		kc, kr = append(kc, k.CycleID), append(kr, k.ReportID)
	}
	q.args["key_cycles"], q.args["key_reports"] = kc, kr
	q.args["tolerance"] = o.DateTolerance.Seconds()
	q.args["group_cycles"], q.args["group_phases"] = []int64(nil), []string(nil)

	phaseExpr := "coalesce(mp.phase, '?' || " + id(c.Phase) + "::text)"
	mapping := `mp(label, phase) AS (SELECT * FROM unnest(@phase_labels::text[], @phase_ids::text[])),
		ms(label, state) AS (SELECT * FROM unnest(@state_labels::text[], @states::text[])),
		mt(label, status) AS (SELECT * FROM unnest(@status_labels::text[], @statuses::text[]))`
	cyc, rep := id(c.Cycle)+"::bigint", id(c.Report)+"::bigint"
	// Filters compare the columns as they are, so an index on them serves a
	// run scoped to a few reports (a cast would hide it).
	rawCyc, rawRep := id(c.Cycle), id(c.Report)
	// Only the conditions the run sets, as plain conjuncts: an index on
	// the key then serves a run scoped to a few reports (one behind an OR
	// or a cast would not be used).
	scopeOf := func(cyc, rep string) string {
		var conds []string
		if o.Scope.Cycle != nil {
			conds = append(conds, cyc+" = @cycle")
		}
		if o.Scope.Keys != nil {
			conds = append(conds, "("+cyc+", "+rep+") IN (SELECT sk.c, sk.r FROM unnest(@key_cycles::bigint[], @key_reports::bigint[]) AS sk(c, r))")
		}
		if o.Scope.Since != nil {
			conds = append(conds, "("+cyc+", "+rep+") IN (SELECT * FROM since_keys)")
		}
		if len(conds) == 0 {
			return "true"
		}
		return strings.Join(conds, " AND ")
	}
	scope := scopeOf(rawCyc, rawRep)
	var keys, order []string
	for _, k := range t.Key {
		keys, order = append(keys, id(k)), append(order, legacy.Col("lw", k))
	}
	// Legacy's whole range of dates and times, infinity included, is
	// compared within the bounds the bridge carries (dtetype.MaxTime,
	// MinTime), as the translator bounds what reaches the shadow.
	q.args["max_time"], q.args["min_time"] = dtetype.MaxTime, dtetype.MinTime
	ts := func(col string) string {
		v := id(col) + "::timestamptz"
		return "CASE WHEN " + v + " > @max_time::timestamptz THEN @max_time::timestamptz WHEN " + v + " < @min_time::timestamptz THEN @min_time::timestamptz ELSE " + v + " END"
	}
	lw := mapping + `, lw AS (
		SELECT ` + cyc + ` AS cycle_id, ` + rep + ` AS report_id, ` + phaseExpr + ` AS phase,
			ms.state, mt.status,
			` + ts(c.PlannedStart) + ` AS planned_start, ` + ts(c.PlannedEnd) + ` AS planned_end,
			` + ts(c.ActualStart) + ` AS actual_start, ` + ts(c.ActualEnd) + ` AS actual_end,
			coalesce(` + id(c.StartedBy) + `::text, '') AS started_by, coalesce(` + id(c.CompletedBy) + `::text, '') AS completed_by,
			` + ts(c.UpdatedAt) + ` AS updated_at, ` + id(c.State) + `::text AS state_label, ` + id(c.StatusOverride) + ` IS NOT NULL AS status_overridden,
			` + strings.Join(keys, ", ") + `
		FROM ` + tbl + ` w
		LEFT JOIN mp ON mp.label = ` + id(c.Phase) + `::text
		LEFT JOIN ms ON ms.label = coalesce(` + id(c.StateOverride) + `, ` + id(c.State) + `)::text
		LEFT JOIN mt ON mt.label = coalesce(` + id(c.StatusOverride) + `, ` + id(c.Status) + `)::text
		WHERE NOT (` + id(c.Phase) + `::text = ANY(@ignore::text[]))
			AND (@phase::text IS NULL OR ` + phaseExpr + ` = @phase)
			AND ` + scope + `)`
	changed := `SELECT ` + legacy.Col("", c.Cycle) + `::bigint, ` + legacy.Col("", c.Report) + `::bigint FROM ` + tbl + `
		WHERE @since::timestamptz IS NOT NULL AND ` + legacy.Col("", c.UpdatedAt) + ` >= @since`
	var err error
	q.ReconcileSQL, err = o.Store.ReconcileQueries(store.LegacySide{Legacy: lw, LegacyOrder: strings.Join(order, ", "), LegacyChanged: changed,
		Scope: func(alias string) string { return scopeOf(alias+"cycle_id", alias+"report_id") }})
	if err != nil {
		return nil, err
	}
	q.phasesOf = `WITH ` + mapping + ` SELECT DISTINCT ` + cyc + `, ` + rep + `, ` + phaseExpr + `
		FROM ` + tbl + ` w LEFT JOIN mp ON mp.label = ` + id(c.Phase) + `::text
		WHERE (` + rawCyc + `, ` + rawRep + `) IN (SELECT * FROM unnest(@cycles::bigint[], @reports::bigint[]))`
	return q, nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
