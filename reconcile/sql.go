package reconcile

import (
	"cmp"
	"slices"
	"strconv"
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

func newQueries(o *Options, types map[string]legacy.ColumnType) (*queries, error) {
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
	// full sweep four times the rest (measured at 900,000 rows). An enum
	// column is compared as the enum it is, with the labels its type has:
	// its text costs a catalog lookup per row.
	typeOf := func(col string) *legacy.ColumnType {
		if t, ok := types[col]; ok {
			return &t
		}
		return nil
	}
	phaseCol := label{id(c.Phase), typeOf(c.Phase)}
	stateCol, statusCol := overridden(id(c.StateOverride), id(c.State), typeOf(c.StateOverride), typeOf(c.State)),
		overridden(id(c.StatusOverride), id(c.Status), typeOf(c.StatusOverride), typeOf(c.Status))
	phaseExpr := phaseCol.cases(pl, quoted(pi), "'?' || "+id(c.Phase)+"::text")
	stateExpr := stateCol.cases(sl, quoted(si), "")
	statusExpr := statusCol.cases(tl, quoted(ti), "")
	rowHash := legacyRowHash(&c, id, typeOf, phaseCol, stateCol, statusCol, pl, pi, sl, si, tl, ti)
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
	// Conditions the run does not need are left out, not made true by
	// their arguments: each would cost legacy's side of a full sweep an
	// expression per row.
	ignore, phaseScope := "", ""
	if len(t.IgnorePhases) > 0 {
		ignore = "NOT (" + id(c.Phase) + "::text = ANY(@ignore::text[])) AND "
	}
	if o.Scope.Phase != "" {
		phaseScope = phaseExpr + " = @phase AND "
	}
	lwOf := func(groups string) string {
		return mapping + `, lw AS (
		SELECT ` + cyc + ` AS cycle_id, ` + rep + ` AS report_id, ` + rawCyc + ` AS cycle_raw, ` + rawRep + ` AS report_raw, ` + id(c.Phase) + ` AS phase_raw, ` + phaseExpr + ` AS phase,
			` + stateExpr + ` AS state, ` + statusExpr + ` AS status,
			` + ts(c.PlannedStart) + ` AS planned_start, ` + ts(c.PlannedEnd) + ` AS planned_end,
			` + ts(c.ActualStart) + ` AS actual_start, ` + ts(c.ActualEnd) + ` AS actual_end,
			` + rowHash + ` AS row_hash,
			coalesce(` + id(c.StartedBy) + `::text, '') AS started_by, coalesce(` + id(c.CompletedBy) + `::text, '') AS completed_by,
			` + ts(c.UpdatedAt) + ` AS updated_at, ` + id(c.State) + `::text AS state_label, ` + id(c.StatusOverride) + ` IS NOT NULL AS status_overridden,
			` + strings.Join(keys, ", ") + `
		FROM ` + tbl + ` w
		WHERE ` + ignore + phaseScope + scope + groups + `)`
	}
	lw := lwOf("")
	lwGroups := lwOf(" AND (" + rawCyc + ", " + rawRep + ") IN (SELECT * FROM unnest(@group_cycles::bigint[], @group_reports::bigint[]))")
	changed := `SELECT ` + legacy.Col("", c.Cycle) + `::bigint, ` + legacy.Col("", c.Report) + `::bigint FROM ` + tbl + `
		WHERE @since::timestamptz IS NOT NULL AND ` + legacy.Col("", c.UpdatedAt) + ` >= @since`
	var err error
	q.ReconcileSQL, err = o.Store.ReconcileQueries(store.LegacySide{Legacy: lw, LegacyGroups: lwGroups,
		LegacyOrder: strings.Join(order, ", "), LegacyChanged: changed,
		Scope: func(alias string) string { return scopeOf(alias+"cycle_id", alias+"report_id") }})
	if err != nil {
		return nil, err
	}
	q.phasesOf = `SELECT DISTINCT ` + cyc + `, ` + rep + `, ` + phaseExpr + `
		FROM ` + tbl + ` w
		WHERE (` + rawCyc + `, ` + rawRep + `) IN (SELECT * FROM unnest(@cycles::bigint[], @reports::bigint[]))`
	return q, nil
}

// label is a legacy column holding labels (or an expression of one, such
// as an override over its column), with its type where the catalog gives
// one.
type label struct {
	expr string
	typ  *legacy.ColumnType
}

// overridden is the label an override column holds where it is set, else
// its column's: as the enum both are, or as text when their types differ.
func overridden(override, col string, otyp, ctyp *legacy.ColumnType) label {
	if otyp != nil && ctyp != nil && otyp.Name == ctyp.Name {
		return label{"coalesce(" + override + ", " + col + ")", ctyp}
	}
	return label{"coalesce(" + override + "::text, " + col + "::text)", nil}
}

// cases maps the label to results (SQL expressions) by labels: CASE label
// WHEN labels[i] THEN results[i] ... ELSE otherwise END (NULL when
// otherwise is empty). An enum is compared as itself, with the labels its
// type has (a label it lacks cannot occur, and would not parse as it);
// anything else as text.
func (l label) cases(labels, results []string, otherwise string) string {
	subject := l.expr + "::text"
	enum := l.typ != nil && l.typ.IsEnum
	if enum {
		subject = l.expr
	}
	var b strings.Builder
	for i, lb := range labels {
		if enum && !slices.Contains(l.typ.Enum, lb) {
			continue
		}
		b.WriteString(" WHEN " + literal(lb) + " THEN " + results[i])
	}
	if b.Len() == 0 {
		return cmp.Or(otherwise, "NULL::text")
	}
	if otherwise != "" {
		b.WriteString(" ELSE " + otherwise)
	}
	return "CASE " + subject + b.String() + " END"
}

// legacyRowHash is the checksum hash of a legacy row: the hash the
// projection stores for the same row (row_hash, migration
// 016_row_hash.sql), computed the same way from legacy's columns. Labels
// hash as the canonical values they map to, constants once the query is
// planned; times as UTC timestamps (the run's session is in UTC), exactly:
// a difference within the date tolerance sends the report to the
// key-by-key comparison, which judges it.
func legacyRowHash(c *legacy.Columns, id func(string) string, typeOf func(string) *legacy.ColumnType, phase, state, status label,
	pl, pi, sl, si, tl, ti []string) string {
	hashed := func(values []string, seed int) []string {
		out := make([]string, len(values))
		for i, v := range values {
			out[i] = "hashtextextended(" + literal(v) + ", " + strconv.Itoa(seed) + ")"
		}
		return out
	}
	user := func(col string, seed int) string {
		return "hashtextextended(coalesce(" + id(col) + "::text, ''), " + strconv.Itoa(seed) + ")"
	}
	at := func(col string, seed int) string {
		n := strconv.Itoa(seed)
		return "coalesce(timestamp_hash_extended(" + utcTimestamp(id(col), typeOf(col)) + ", " + n + "), " + n + ")"
	}
	return "hashint8extended(" + id(c.Report) + "::bigint, 0)" +
		" # " + phase.cases(pl, hashed(pi, 1), "hashtextextended('?' || "+id(c.Phase)+"::text, 1)") +
		" # " + state.cases(sl, hashed(si, 2), "2") +
		" # " + status.cases(tl, hashed(ti, 3), "3") +
		" # " + user(c.StartedBy, 4) + " # " + user(c.CompletedBy, 5) +
		" # " + at(c.PlannedStart, 6) + " # " + at(c.PlannedEnd, 7) + " # " + at(c.ActualStart, 8) + " # " + at(c.ActualEnd, 9)
}

// utcTimestamp renders a legacy time column as a timestamp in UTC (the
// run's session time zone), with the cheapest cast its type allows: none
// for a timestamp, one for a date or a timestamptz.
func utcTimestamp(col string, typ *legacy.ColumnType) string {
	switch {
	case typ != nil && strings.HasPrefix(typ.Name, "timestamp") && strings.HasSuffix(typ.Name, "without time zone"):
		return col
	case typ != nil && (typ.Name == "date" || strings.HasPrefix(typ.Name, "timestamp")):
		return col + "::timestamp"
	}
	return col + "::timestamptz::timestamp"
}

// quoted quotes each value as an SQL literal.
func quoted(values []string) []string {
	out := make([]string, len(values))
	for i, v := range values {
		out[i] = literal(v)
	}
	return out
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
