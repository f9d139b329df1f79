package reconcile

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/synapsedte/dtebridge/dtetype"
)

// TestSpoolKeepsTheFirst: a spool keeps one divergence per key, phase and
// kind, the first added, whether it holds them in memory or merges them
// from files where the repeats landed in other files than the first.
func TestSpoolKeepsTheFirst(t *testing.T) {
	order := func(a, b *dtetype.Divergence) int { return divergenceOrder(nil, a, b) }
	var in []dtetype.Divergence
	for i := range 40 {
		// Reports 0..4, phases a and b, two kinds; every combination
		// comes back several times, with a detail that says which time.
		in = append(in, dtetype.Divergence{Key: dtetype.Key{CycleID: 1, ReportID: int64(i % 5)}, Phase: dtetype.Phase("ab"[i%2 : i%2+1]),
			Kind: []string{dtetype.KindStateMismatch, dtetype.KindRuleViolation}[i/10%2], Detail: fmt.Sprintf("added %d", i)})
	}
	want := map[string]string{}
	for _, d := range in {
		k := fmt.Sprint(d.Key, d.Phase, d.Kind)
		if _, ok := want[k]; !ok {
			want[k] = d.Detail
		}
	}
	for _, limit := range []int{1000, 3} {
		s := newSpool(limit, order)
		for _, d := range in {
			s.add(d)
		}
		if err := s.finish(); err != nil {
			t.Fatal(err)
		}
		if spilled := s.spilled(); spilled != (limit == 3) {
			t.Fatalf("limit %d: spilled %v", limit, spilled)
		}
		got := map[string]string{}
		var prev *dtetype.Divergence
		for d, err := range s.all() {
			if err != nil {
				t.Fatal(err)
			}
			k := fmt.Sprint(d.Key, d.Phase, d.Kind)
			if _, dup := got[k]; dup {
				t.Errorf("limit %d: %s yielded twice", limit, k)
			}
			got[k] = d.Detail
			if prev != nil && order(prev, &d) > 0 {
				t.Errorf("limit %d: out of order: %v after %v", limit, d, *prev)
			}
			prev = &d
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("limit %d: kept (-first added +kept):\n%s", limit, diff)
		}
		s.close()
	}
}
