package shadow

import (
	"bytes"
	"strings"
	"testing"

	"github.com/synapsedte/dtebridge/dtetype"
)

func TestBuiltinDefinitions(t *testing.T) {
	t.Parallel()
	std, err := LoadBuiltin("definitions/standard_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := std[0]
	if d.ID != "standard_dt_testing" || len(d.Phases) != 7 {
		t.Fatalf("standard: %s with %d phases", d.ID, len(d.Phases))
	}
	l := Layers(d)
	if l["sample_selection"] != l["data_provider_id"] || l["sample_selection"] != 3 {
		t.Errorf("sample_selection and data_provider_id should run in parallel at step 3: %v", l)
	}
	if got := d.Phase("request_info").DependsOn; len(got) != 2 {
		t.Errorf("request_info depends on %v, want both parallel branches", got)
	}
	if r, ok := d.CanonicalRole("test executive"); !ok || r != "Test Manager" {
		t.Errorf("Test Executive resolves to %q", r)
	}
	prod, err := LoadBuiltin("definitions/production_dt_testing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(prod[0].Phases) != 9 {
		t.Errorf("production chain has %d phases", len(prod[0].Phases))
	}
	for i, p := range prod[0].Phases {
		if Layers(prod[0])[p.ID] != i+1 {
			t.Errorf("production is a chain; %s is at step %d", p.ID, Layers(prod[0])[p.ID])
		}
	}
}

const head = "roles:\n  Tester: []\n  Test Manager: [Test Executive]\nworkflows:\n  w:\n    version: \"1\"\n    phases:\n"

func TestDefinitionErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body, want string
	}{
		{"UnknownDependency", "      - {id: a}\n      - {id: b, depends_on: [zz]}\n", `x.yaml:9: unknown dependency "zz"`},
		{"Cycle", "      - {id: a}\n      - {id: b, depends_on: [a, c]}\n      - {id: c, depends_on: [b]}\n", `dependency cycle: b -> c -> b`},
		{"SelfCycle", "      - {id: a, depends_on: [a]}\n", `x.yaml:8: dependency cycle: a -> a`},
		{"DuplicateID", "      - {id: a}\n      - {id: a}\n", `x.yaml:9: duplicate id "a" (first declared at line 8)`},
		{"DuplicateBranchID", "      - {id: a}\n      - id: g\n        type: parallel\n        branches:\n          - {id: a}\n", `x.yaml:12: duplicate id "a"`},
		{"BadDuration", "      - {id: a, sla: {duration: -3, unit: days}}\n", `x.yaml:8: bad duration "-3" for phase "a"`},
		{"NotANumber", "      - {id: a, sla: {duration: soon}}\n", `bad duration "soon"`},
		{"BadUnit", "      - {id: a, sla: {duration: 3, unit: weeks}}\n", `bad duration unit "weeks"`},
		{"BusinessHours", "      - {id: a, sla: {duration: 3, unit: hours, business_days: true}}\n", `business_days applies to a duration in days`},
		{"UnknownRole", "      - {id: a, roles: [Tester, Auditor]}\n", `x.yaml:8: unknown role "Auditor" in phase "a"`},
		{"Unreachable", "      - {id: a}\n      - {id: b}\n      - {id: island, depends_on: []}\n", `x.yaml:10: phase "island" is unreachable`},
		{"UnreachableChain", "      - {id: a}\n      - {id: island, depends_on: []}\n      - {id: c, depends_on: [island]}\n", `phase "c" is unreachable`},
		{"UnknownField", "      - {id: a, sla_days: 3}\n", `x.yaml:8: unknown field "sla_days" in phase`},
		{"BadType", "      - {id: a, type: loop}\n", `type "loop" is not sequential or parallel`},
		{"BranchesWithoutParallel", "      - {id: a, branches: [{id: b}]}\n", `has branches but is not type: parallel`},
		{"EmptyParallel", "      - {id: a, type: parallel}\n", `parallel group "a" has no branches`},
		{"BadWhen", "      - {id: a, when: \"regulation is FRB\"}\n", `when "regulation is FRB"`},
		{"NoID", "      - {name: A}\n", `x.yaml:8: phase has no id`},
		{"BadPolicy", "", `status_policy "fast" is not legacy or sla`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := head + tc.body
			if tc.name == "BadPolicy" {
				body = strings.Replace(head, "    phases:\n", "    status_policy: fast\n    phases:\n      - {id: a}\n", 1)
			}
			_, err := ParseDefinitions("x.yaml", []byte(body))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant it to contain %q", err, tc.want)
			}
		})
	}
}

func TestDefinitionSemantics(t *testing.T) {
	t.Parallel()
	defs, err := ParseDefinitions("x.yaml", []byte(head+`      - {id: a, roles: [test executive]}
      - id: g
        type: parallel
        branches:
          - {id: b1}
          - {id: b2, when: "regulation in [FRB, OCC]"}
      - {id: c}
      - {id: d, depends_on: [a, g]}
`))
	if err != nil {
		t.Fatal(err)
	}
	d := defs[0]
	if got := d.Phase("c").DependsOn; len(got) != 2 || got[0] != "b1" || got[1] != "b2" {
		t.Errorf("c after a parallel group depends on %v, want [b1 b2]", got)
	}
	if got := d.Phase("b1").DependsOn; len(got) != 1 || got[0] != "a" {
		t.Errorf("branch b1 depends on %v, want [a]", got)
	}
	if got := d.Phase("d").DependsOn; len(got) != 3 {
		t.Errorf("d depends on %v, want a, b1, b2", got)
	}
	if d.Phase("a").Roles[0] != "Test Manager" {
		t.Errorf("role alias not resolved: %v", d.Phase("a").Roles)
	}
	w := d.Phase("b2").When
	if !w.Holds(map[string]string{"regulation": "OCC"}) || w.Holds(map[string]string{"regulation": "FDIC"}) || w.Holds(nil) {
		t.Errorf("condition %s evaluates wrongly", w)
	}
}

func TestRenderAndDiff(t *testing.T) {
	t.Parallel()
	std, _ := LoadBuiltin("definitions/standard_dt_testing.yaml")
	prod, _ := LoadBuiltin("definitions/production_dt_testing.yaml")
	for name, f := range map[string]func(*bytes.Buffer) error{
		"text":    func(b *bytes.Buffer) error { return WriteText(b, std[0]) },
		"mermaid": func(b *bytes.Buffer) error { return WriteMermaid(b, std[0]) },
		"dot":     func(b *bytes.Buffer) error { return WriteDOT(b, std[0]) },
	} {
		var b bytes.Buffer
		if err := f(&b); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"text": "parallel in parallel_phases", "mermaid": "scoping --> sample_selection", "dot": `"scoping" -> "data_provider_id"`}[name]
		if !strings.Contains(b.String(), want) {
			t.Errorf("%s output lacks %q:\n%s", name, want, b.String())
		}
	}
	d := Diff(std[0], prod[0])
	joined := strings.Join(d, "\n")
	for _, want := range []string{"+ phase data_profiling added", "+ phase finalize_test_report added", "~ phase sample_selection: group parallel_phases -> "} {
		if !strings.Contains(joined, want) {
			t.Errorf("diff lacks %q:\n%s", want, joined)
		}
	}
	if len(Diff(std[0], std[0])) != 0 {
		t.Error("a definition differs from itself")
	}
}

// FuzzParseDefinitions: any input either parses into a definition that
// satisfies the loader's promises, or is refused with file:line problems.
func FuzzParseDefinitions(f *testing.F) {
	for _, name := range BuiltinDefinitionFiles() {
		b, _ := builtin.ReadFile(name)
		f.Add(b)
	}
	f.Add([]byte(head + "      - {id: a}\n      - {id: b, depends_on: [a, b]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		defs, err := ParseDefinitions("f.yaml", b)
		if err != nil {
			de, ok := err.(*DefinitionError)
			if !ok || len(de.Problems) == 0 {
				t.Fatalf("error %v is not a DefinitionError with problems", err)
			}
			for _, p := range de.Problems {
				if !strings.HasPrefix(p, "f.yaml") {
					t.Fatalf("problem %q does not name the file", p)
				}
			}
			return
		}
		for _, d := range defs {
			seen := map[dtetype.Phase]bool{}
			for _, p := range d.Phases {
				if seen[p.ID] {
					t.Fatalf("duplicate phase %s accepted", p.ID)
				}
				seen[p.ID] = true
				for _, dep := range p.DependsOn {
					if d.Phase(dep) == nil {
						t.Fatalf("unknown dependency %s accepted", dep)
					}
				}
			}
			Layers(d) // terminates only without cycles
		}
	})
}
