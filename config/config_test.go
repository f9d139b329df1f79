package config

import (
	"strings"
	"testing"

	"github.com/synapsedte/dtebridge/internal/legacysim"
)

func TestExamplesLoad(t *testing.T) {
	t.Parallel()
	for _, p := range legacysim.Profiles() {
		c, err := Example(p.Name)
		if err != nil {
			t.Fatal(err)
		}
		// Every label the legacy profile can write has a mapping.
		for _, ph := range p.Chain {
			for _, l := range ph.Labels() {
				if _, ok := c.Legacy.Phases.Get(l); !ok {
					t.Errorf("%s: phase label %q unmapped", p.Name, l)
				}
			}
		}
		for _, l := range p.States {
			if _, ok := c.Legacy.States.Get(l); !ok {
				t.Errorf("%s: state label %q unmapped", p.Name, l)
			}
		}
		for _, l := range p.Statuses {
			if _, ok := c.Legacy.Statuses.Get(l); !ok {
				t.Errorf("%s: status label %q unmapped", p.Name, l)
			}
		}
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	t.Parallel()
	base := "legacy:\n  phases: {Planning: planning}\n  states: {Done: completed}\n  statuses: {Late: behind_schedule}\n"
	cases := map[string]struct{ yaml, want string }{
		"UnknownKey":    {base + "capture:\n  batchsize: 3\n", "line 6: field batchsize not found"},
		"BadDuration":   {base + "capture:\n  poll_interval: soon\n", `line 6: "soon" is not a duration`},
		"BadState":      {"legacy:\n  phases: {Planning: planning}\n  states: {Done: finished}\n  statuses: {Late: behind_schedule}\n", `"Done" maps to "finished"`},
		"NoPhases":      {"legacy:\n  states: {Done: completed}\n", "legacy.phases is empty"},
		"BadTrigger":    {base + "capture:\n  trigger: sometimes\n", `capture trigger "sometimes"`},
		"NotYAML":       {"legacy: [", "error loading config x.yaml"},
		"NegativeBatch": {base + "capture:\n  batch_size: -1\n", "capture.batch_size must not be negative"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "x.yaml") {
				t.Errorf("error = %v, want one naming x.yaml and containing %q", err, tc.want)
			}
		})
	}
}
