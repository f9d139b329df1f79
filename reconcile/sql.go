package reconcile

import (
	"strings"
	"time"

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
	q.args["group_cycles"], q.args["group_reports"] = []int64(nil), []int64(nil)

	// Labels map to canonical values through CASE expressions over the
	// configured labels: a hash join per mapping cost legacy's side of a
	// full sweep four times the rest (measured at 900,000 rows).
	phaseExpr := "coalesce(" + caseMap(id(c.Phase)+"::text", pl, pi) + ", '?' || " + id(c.Phase) + "::text)"
	stateExpr := caseMap("coalesce("+id(c.StateOverride)+", "+id(c.State)+")::text", sl, si)
	statusExpr := caseMap("coalesce("+id(c.StatusOverride)+", "+id(c.Status)+")::text", tl, ti)
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
	// The checksums hash a time's seconds since the epoch, read from the
	// column as it is (date, timestamp or timestamptz give the same number
	// in this UTC session as their timestamptz would), without the bounds
	// above: a row beyond them differs, and the comparison judges it.
	// Whole seconds, unless the date tolerance is below a second: then a
	// difference under a second may be a divergence, and the checksum must
	// see it.
	epoch := func(col string) string { return epochOf(id(col), o.DateTolerance) }
	lwOf := func(groups string) string {
		return mapping + `, lw AS (
		SELECT ` + cyc + ` AS cycle_id, ` + rep + ` AS report_id, ` + phaseExpr + ` AS phase,
			` + stateExpr + ` AS state, ` + statusExpr + ` AS status,
			` + ts(c.PlannedStart) + ` AS planned_start, ` + ts(c.PlannedEnd) + ` AS planned_end,
			` + ts(c.ActualStart) + ` AS actual_start, ` + ts(c.ActualEnd) + ` AS actual_end,
			` + epoch(c.PlannedStart) + ` AS planned_start_epoch, ` + epoch(c.PlannedEnd) + ` AS planned_end_epoch,
			` + epoch(c.ActualStart) + ` AS actual_start_epoch, ` + epoch(c.ActualEnd) + ` AS actual_end_epoch,
			coalesce(` + id(c.StartedBy) + `::text, '') AS started_by, coalesce(` + id(c.CompletedBy) + `::text, '') AS completed_by,
			` + ts(c.UpdatedAt) + ` AS updated_at, ` + id(c.State) + `::text AS state_label, ` + id(c.StatusOverride) + ` IS NOT NULL AS status_overridden,
			` + strings.Join(keys, ", ") + `
		FROM ` + tbl + ` w
		WHERE NOT (` + id(c.Phase) + `::text = ANY(@ignore::text[]))
			AND (@phase::text IS NULL OR ` + phaseExpr + ` = @phase)
			AND ` + scope + groups + `)`
	}
	lw := lwOf("")
	lwGroups := lwOf(" AND (" + rawCyc + ", " + rawRep + ") IN (SELECT * FROM unnest(@group_cycles::bigint[], @group_reports::bigint[]))")
	changed := `SELECT ` + legacy.Col("", c.Cycle) + `::bigint, ` + legacy.Col("", c.Report) + `::bigint FROM ` + tbl + `
		WHERE @since::timestamptz IS NOT NULL AND ` + legacy.Col("", c.UpdatedAt) + ` >= @since`
	var err error
	q.ReconcileSQL, err = o.Store.ReconcileQueries(store.LegacySide{Legacy: lw, LegacyGroups: lwGroups,
		Epoch: func(expr string) string { return epochOf(expr, o.DateTolerance) }, LegacyOrder: strings.Join(order, ", "), LegacyChanged: changed,
		Scope: func(alias string) string { return scopeOf(alias+"cycle_id", alias+"report_id") }})
	if err != nil {
		return nil, err
	}
	q.phasesOf = `SELECT DISTINCT ` + cyc + `, ` + rep + `, ` + phaseExpr + `
		FROM ` + tbl + ` w
		WHERE (` + rawCyc + `, ` + rawRep + `) IN (SELECT * FROM unnest(@cycles::bigint[], @reports::bigint[]))`
	return q, nil
}

// epochOf is the checksums' number for the time expr: its seconds since
// the epoch, whole ones when tolerance is a second or more.
func epochOf(expr string, tolerance time.Duration) string {
	if tolerance >= time.Second {
		return "floor(date_part('epoch', " + expr + "))"
	}
	return "date_part('epoch', " + expr + ")"
}

// caseMap maps expr, a label, to its value: CASE expr WHEN label THEN
// value ... END, NULL for a label not mapped.
func caseMap(expr string, labels, values []string) string {
	if len(labels) == 0 {
		return "NULL::text"
	}
	var b strings.Builder
	b.WriteString("CASE " + expr)
	for i, l := range labels {
		b.WriteString(" WHEN " + literal(l) + " THEN " + literal(values[i]))
	}
	b.WriteString(" END")
	return b.String()
}

// literal quotes s as an SQL escape-string literal, which reads the same
// whatever standard_conforming_strings says.
func literal(s string) string {
	return "E'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", "''") + "'"
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
