package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/store"
)

// An incremental run compares only the reports written since the snapshot
// of the latest full or incremental run (its base), on either side:
//
//   - legacy: every change the change log holds that the base's snapshot
//     did not see, both row images (a key moved away is looked at too);
//     for an attribute table, every report (all its cycles) the row
//     belongs to;
//   - the shadow: every projection row or mirror record written since (a
//     trigger stamps each with its transaction) or deleted (recorded in
//     shadow_deletes; a truncation makes the run full);
//   - the reports the base found in flight, which it did not judge;
//   - what the run's own snapshot knows now: reports behind the stream,
//     with changes in quarantine, or in an open authority conflict, and
//     reports with an open divergence whose verdict depends on time or on
//     state outside both tables (stale, quarantined, projection_mismatch).
//
// Every other report was compared by the base (or is in flight there and
// then), and neither side changed since, so a full run would judge it as
// the base did: its open divergences stay open and nothing new can be
// found. What a verdict depends on beyond the rows (mapping, rules, date
// tolerance, phase modes, the install's baseline) is the fingerprint: a
// base recorded under another one is not built on, and the run is full.
//
// What no change log records is not seen: under trigger capture, a legacy
// write made with the triggers disabled (session_replication_role =
// replica) is found by the next full run only. Log-based capture records
// those too.

// alwaysRecheck are the divergence kinds whose verdict can change without
// a write to either table.
var alwaysRecheck = []string{dtetype.KindStale, dtetype.KindQuarantined, dtetype.KindProjectionMismatch, dtetype.KindAuthorityConflict}

// plan decides what the run looks at: for an incremental run, whether it
// can build on a base, else every report.
func (c *run) plan(ctx context.Context) error {
	o, r := c.o, c.r
	scoped := o.Scope.Cycle != nil || o.Scope.Phase != "" || o.Scope.Since != nil || o.Scope.Keys != nil
	if scoped {
		return nil
	}
	st := o.Store.On(c.tx)
	var err error
	if r.snapshot, err = st.CurrentSnapshot(ctx); err != nil {
		return err
	}
	if r.fingerprint, err = c.fingerprintOf(ctx); err != nil {
		return err
	}
	r.Kind = store.RunFull
	if !o.Incremental {
		return nil
	}
	base, err := st.LatestIncrementalBase(ctx)
	switch {
	case err != nil:
		return err
	case base == nil:
		r.FullBecause = "no full run recorded its snapshot yet"
	case base.Fingerprint != r.fingerprint:
		r.FullBecause = fmt.Sprintf("what run %d judged by changed since (mapping, expected rules, date tolerance, phase modes or baseline)", base.RunID)
	case c.truncated(ctx, base):
		r.FullBecause = fmt.Sprintf("a table of the shadow's side was truncated since run %d", base.RunID)
	case o.Retention > 0 && c.now.Sub(base.StartedAt) > o.Retention/2:
		r.FullBecause = fmt.Sprintf("run %d is older than half of capture.retention (%s): the change log may no longer hold every change since", base.RunID, o.Retention)
	default:
		r.Kind, r.BaseRun, c.base = store.RunIncremental, base.RunID, base
		// The key conditions are rendered; the keys are filled in once
		// known (touched). Until then the run is not limited to them, so
		// the steps before touched read all they know.
		o.Scope.Keys = []dtetype.Key{}
	}
	return nil
}

// truncated reports whether a table of the shadow's side was truncated
// since base (an error reading it counts as truncated: the run is full).
func (c *run) truncated(ctx context.Context, base *store.IncrementalBase) bool {
	t, err := c.o.Store.On(c.tx).ShadowTruncated(ctx, base.Snapshot)
	return err != nil || t
}

// fingerprintOf is what the run's verdicts depend on beyond the rows.
func (c *run) fingerprintOf(ctx context.Context) (string, error) {
	mark, err := c.o.Store.On(c.tx).CutoverLogMark(ctx)
	if err != nil {
		return "", err
	}
	exclude := slices.Clone(c.o.Exclude)
	slices.Sort(exclude)
	var baselineAt string
	if c.baselineAt != nil {
		baselineAt = c.baselineAt.UTC().Format(time.RFC3339Nano)
	}
	// The label mappings keep their labels unexported: listed here.
	labels := func(all func(func(string, string) bool)) []string {
		var out []string
		all(func(l, v string) bool { out = append(out, l+"="+v); return true })
		slices.Sort(out)
		return out
	}
	t := c.o.Table
	b, err := json.Marshal(struct {
		Table                    any
		Phases, States, Statuses []string
		Tolerance                time.Duration
		Expected                 []Rule
		Exclude                  []dtetype.Phase
		Modes                    string
		BaselineAt               string
	}{t, labels(stringPairs(t.Phases.All())), labels(stringPairs(t.States.All())), labels(stringPairs(t.Statuses.All())),
		c.o.DateTolerance, c.o.Expected, exclude, mark, baselineAt})
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// touched collects the reports an incremental run looks at (see above).
// It runs after lag, quarantine and openConflicts, whose findings it
// includes.
func (c *run) touched(ctx context.Context) error {
	if c.base == nil {
		return nil
	}
	st := c.o.Store.On(c.tx)
	t := c.o.Table
	keys := map[dtetype.Key]bool{}
	add := func(k dtetype.Key) { keys[k] = true }
	changed, err := st.ChangedSince(ctx, c.base.Snapshot, t.Columns.Cycle, t.Columns.Report, t.AttributeSources())
	if err != nil {
		return err
	}
	var reportsOf []int64
	for _, ch := range changed {
		if ch.AttributeImage != nil {
			report, cycle, ok := t.AttributeReport(ch.Source, ch.AttributeImage)
			switch {
			case !ok:
			case cycle != nil:
				add(dtetype.Key{CycleID: *cycle, ReportID: report})
			default:
				reportsOf = append(reportsOf, report)
			}
			continue
		}
		// A key that is not an integer has no report: quarantine holds it.
		cy, err1 := strconv.ParseInt(strings.TrimSpace(deref(ch.Cycle)), 10, 64)
		rp, err2 := strconv.ParseInt(strings.TrimSpace(deref(ch.Report)), 10, 64)
		if err1 == nil && err2 == nil {
			add(dtetype.Key{CycleID: cy, ReportID: rp})
		}
	}
	if len(reportsOf) > 0 {
		// An attribute of a report holds for every cycle it is in, on
		// either side.
		rows, err := c.tx.Query(ctx, t.KeysOfReportsSQL(), reportsOf)
		if err != nil {
			return fmt.Errorf("error reading the cycles of reports whose attributes changed: %w", err)
		}
		for rows.Next() {
			var k dtetype.Key
			if err := rows.Scan(&k.CycleID, &k.ReportID); err != nil {
				rows.Close()
				return err
			}
			add(k)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		shadowKeys, err := st.ShadowKeysOfReports(ctx, reportsOf)
		if err != nil {
			return err
		}
		for _, k := range shadowKeys {
			add(k)
		}
	}
	written, err := st.WrittenSince(ctx, c.base.Snapshot)
	if err != nil {
		return err
	}
	for _, k := range written {
		add(k)
	}
	recheck, err := st.OpenKeysOfKinds(ctx, alwaysRecheck)
	if err != nil {
		return err
	}
	for _, k := range recheck {
		add(k)
	}
	for k := range c.behindSince {
		add(k)
	}
	// What the base found in flight it did not judge.
	for _, k := range c.base.InFlight {
		add(k)
	}
	for k := range c.quarantined {
		add(k)
	}
	for k3 := range c.conflicts {
		add(k3.k)
	}
	// Never nil: no keys means no report, not every report.
	list := append([]dtetype.Key{}, slices.SortedFunc(maps.Keys(keys), keyOrder)...)
	c.o.Scope.Keys, c.r.keys = list, keys
	n := int64(len(list))
	c.r.Touched = &n
	kc, kr := make([]int64, len(list)), make([]int64, len(list))
	for i, k := range list {
		kc[i], kr[i] = k.CycleID, k.ReportID
	}
	c.q.args["key_cycles"], c.q.args["key_reports"] = kc, kr
	return nil
}

// stringPairs turns a mapping's labels and values into strings.
func stringPairs[V ~string](all iter.Seq2[string, V]) func(func(string, string) bool) {
	return func(yield func(string, string) bool) {
		for l, v := range all {
			if !yield(l, string(v)) {
				return
			}
		}
	}
}
