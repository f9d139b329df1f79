package reconcile

import (
	"fmt"
	"slices"
	"strings"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Rule is an expected divergence: a known, accepted difference (Scientist's
// ignore blocks are the model). A divergence matches when every condition
// that is set matches.
type Rule struct {
	// Name identifies the rule in reports.
	Name string `yaml:"name" json:"name"`
	// Kind, if set, is the divergence kind it applies to.
	Kind string `yaml:"kind" json:"kind,omitempty"`
	// Phases, if set, limits it to these phases.
	Phases []dtetype.Phase `yaml:"phases" json:"phases,omitempty"`
	// Legacy and Shadow, if set, must equal the divergence's values.
	Legacy string `yaml:"legacy" json:"legacy,omitempty"`
	Shadow string `yaml:"shadow" json:"shadow,omitempty"`
	// DetailContains, if set, must occur in the divergence's detail (for
	// rule violations: the rule name, e.g. role_not_allowed).
	DetailContains string `yaml:"detail_contains" json:"detail_contains,omitempty"`
	// Reason says why the difference is accepted.
	Reason string `yaml:"reason" json:"reason"`
}

// Validate checks the rule.
func (r *Rule) Validate() error {
	if r.Name == "" {
		return fmt.Errorf("expected-divergence rule without a name")
	}
	if r.Reason == "" {
		return fmt.Errorf("expected-divergence rule %q has no reason: say why the difference is accepted", r.Name)
	}
	if r.Kind != "" && !slices.Contains(dtetype.Kinds(), r.Kind) {
		return fmt.Errorf("expected-divergence rule %q: unknown kind %q (one of %v)", r.Name, r.Kind, dtetype.Kinds())
	}
	return nil
}

// Matches reports whether d is the accepted difference r describes.
// A rule for one kind does not accept a divergence that also shows others.
func (r *Rule) Matches(d *dtetype.Divergence) bool {
	return (r.Kind == "" || (r.Kind == d.Kind && len(d.Also) == 0)) &&
		(len(r.Phases) == 0 || slices.Contains(r.Phases, d.Phase)) &&
		(r.Legacy == "" || r.Legacy == d.Legacy) &&
		(r.Shadow == "" || r.Shadow == d.Shadow) &&
		(r.DetailContains == "" || containsFold(d.Detail, r.DetailContains))
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
