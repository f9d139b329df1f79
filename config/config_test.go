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
	valid := base + "shadow:\n  definition: standard_dt_testing\n"
	cases := map[string]struct{ yaml, want string }{
		"UnknownKey":    {base + "capture:\n  batchsize: 3\n", `x.yaml:6: unknown setting "batchsize" (did you mean batch_size?)`},
		"Misspelled":    {base + "capture:\n  triger: row\n", `x.yaml:6: unknown setting "triger" (did you mean trigger?)`},
		"NotANumber":    {base + "capture:\n  batch_size: many\n", `x.yaml:6: "many" is not a whole number`},
		"BadDuration":   {base + "capture:\n  poll_interval: soon\n", `x.yaml:6: "soon" is not a duration`},
		"BadState":      {"legacy:\n  phases: {Planning: planning}\n  states: {Done: finished}\n  statuses: {Late: behind_schedule}\n", `x.yaml:3: legacy.states: "Done" maps to "finished"`},
		"NoPhases":      {"legacy:\n  states: {Done: completed}\n", "legacy.phases is empty"},
		"BadTrigger":    {base + "capture:\n  trigger: sometimes\n", `capture trigger "sometimes"`},
		"NotYAML":       {"legacy: [", "x.yaml:1: did not find expected node content (not valid YAML)"},
		"NegativeBatch": {base + "capture:\n  batch_size: -1\n", "x.yaml:6: capture.batch_size: must not be negative"},
		"GateOver100":   {valid + "cutover:\n  gate:\n    min_consistency: 7\n", "x.yaml:9: cutover.gate.min_consistency: is 7: give a fraction from 0 to 1"},
		"SpanTooLong":   {valid + "cutover:\n  gate:\n    within: 1h\n    min_span: 2h\n", "x.yaml:10: cutover.gate.min_span: is 2h0m0s"},
		"NoDefsFile":    {valid + "definitions: [nowhere.yaml]\n", `x.yaml:7: definitions[0]: file "nowhere.yaml" not found`},
		"UnknownDef":    {base + "shadow:\n  definition: standard_dt_tseting\n", `x.yaml:6: shadow.definition: shadow.definition "standard_dt_tseting" is not among the loaded definitions`},
		"NoDefChosen":   {base, "shadow.definition is not set and 2 definitions are loaded"},
		"UnknownPhase":  {"legacy:\n  phases: {Planning: planing}\n  states: {Done: completed}\n  statuses: {Late: behind_schedule}\nshadow:\n  definition: standard_dt_testing\n", `x.yaml:2: legacy.phases: "planing" is not a phase of standard_dt_testing@1.0`},
		"BadListen":     {valid + "http:\n  listen: localhost\n", `x.yaml:8: http.listen: "localhost" is not host:port`},
		"BadRulePhase":  {valid + "reconcile:\n  expected:\n    - {name: a, reason: b, phases: [plan]}\n", `x.yaml:9: reconcile.expected[0].phases: "plan" is not a phase`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
			if err != nil && (strings.Contains(err.Error(), "config.") || strings.Contains(err.Error(), "legacy.Table") || strings.Contains(err.Error(), "in type")) {
				t.Errorf("error %q names a Go type", err)
			}
		})
	}
	if _, err := Parse("x.yaml", []byte(valid)); err != nil {
		t.Errorf("a valid config: %v", err)
	}
}
