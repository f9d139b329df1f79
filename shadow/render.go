package shadow

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Layers returns each phase's depth in the dependency graph: 1 for phases
// without dependencies, else one more than the deepest dependency. Phases
// with the same depth can run in parallel.
func Layers(d *dtetype.Definition) map[dtetype.Phase]int {
	depth := map[dtetype.Phase]int{}
	var get func(id dtetype.Phase) int
	get = func(id dtetype.Phase) int {
		if v, ok := depth[id]; ok {
			return v
		}
		v := 1
		for _, dep := range d.Phase(id).DependsOn {
			v = max(v, get(dep)+1)
		}
		depth[id] = v
		return v
	}
	for _, p := range d.Phases {
		get(p.ID)
	}
	return depth
}

// WriteText draws the definition as a table in dependency order: the layer
// column shows what can run in parallel.
func WriteText(w io.Writer, d *dtetype.Definition) error {
	layers := Layers(d)
	phases := slices.Clone(d.Phases)
	slices.SortStableFunc(phases, func(a, b dtetype.PhaseDef) int { return layers[a.ID] - layers[b.ID] })
	fmt.Fprintf(w, "%s v%s", d.ID, d.Version)
	if d.Name != "" {
		fmt.Fprintf(w, " (%s)", d.Name)
	}
	fmt.Fprintf(w, ": %d phases, status policy %s\n", len(d.Phases), d.StatusPolicy)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tPHASE\tNAME\tAFTER\tSLA\tROLES\tNOTES")
	for _, p := range phases {
		var after []string
		for _, dep := range p.DependsOn {
			after = append(after, string(dep))
		}
		sla := "-"
		if p.SLA != nil {
			sla = fmt.Sprintf("%d %s", p.SLA.Duration, p.SLA.Unit)
			if p.SLA.BusinessDays {
				sla = fmt.Sprintf("%d business days", p.SLA.Duration)
			}
		}
		var notes []string
		if p.Group != "" {
			notes = append(notes, "parallel in "+p.Group)
		}
		if p.When != nil {
			notes = append(notes, "when "+p.When.String())
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\n", layers[p.ID], p.ID, p.Name, orDash(strings.Join(after, ", ")),
			sla, orDash(strings.Join(p.Roles, ", ")), strings.Join(notes, "; "))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteMermaid draws the definition as a Mermaid flowchart.
func WriteMermaid(w io.Writer, d *dtetype.Definition) error {
	fmt.Fprintf(w, "flowchart TD\n")
	inGroup := map[dtetype.Phase]bool{}
	for _, g := range d.Groups {
		fmt.Fprintf(w, "  subgraph %s[%q]\n", g.ID, orID(g.Name, g.ID))
		for _, b := range g.Branches {
			fmt.Fprintf(w, "    %s[%q]\n", b, orID(d.Phase(b).Name, string(b)))
			inGroup[b] = true
		}
		fmt.Fprintln(w, "  end")
	}
	for _, p := range d.Phases {
		if !inGroup[p.ID] {
			fmt.Fprintf(w, "  %s[%q]\n", p.ID, orID(p.Name, string(p.ID)))
		}
	}
	for _, p := range d.Phases {
		for _, dep := range p.DependsOn {
			fmt.Fprintf(w, "  %s --> %s\n", dep, p.ID)
		}
	}
	return nil
}

// WriteDOT draws the definition in Graphviz DOT.
func WriteDOT(w io.Writer, d *dtetype.Definition) error {
	fmt.Fprintf(w, "digraph %q {\n  rankdir=LR;\n  node [shape=box];\n", d.ID)
	for _, g := range d.Groups {
		fmt.Fprintf(w, "  subgraph \"cluster_%s\" {\n    label=%q;\n", g.ID, orID(g.Name, g.ID))
		for _, b := range g.Branches {
			fmt.Fprintf(w, "    %q;\n", b)
		}
		fmt.Fprintln(w, "  }")
	}
	for _, p := range d.Phases {
		fmt.Fprintf(w, "  %q [label=%q];\n", p.ID, orID(p.Name, string(p.ID)))
	}
	for _, p := range d.Phases {
		for _, dep := range p.DependsOn {
			fmt.Fprintf(w, "  %q -> %q;\n", dep, p.ID)
		}
	}
	fmt.Fprintln(w, "}")
	return nil
}

func orID(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

// Diff lists what changed from a to b, one line per difference.
func Diff(a, b *dtetype.Definition) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if a.ID != b.ID {
		add("id: %s -> %s", a.ID, b.ID)
	}
	if a.Version != b.Version {
		add("version: %s -> %s", a.Version, b.Version)
	}
	if a.StatusPolicy != b.StatusPolicy {
		add("status_policy: %s -> %s", a.StatusPolicy, b.StatusPolicy)
	}
	for _, pa := range a.Phases {
		pb := b.Phase(pa.ID)
		if pb == nil {
			add("- phase %s removed", pa.ID)
			continue
		}
		field := func(name string, x, y any) {
			if fmt.Sprint(x) != fmt.Sprint(y) {
				add("~ phase %s: %s %v -> %v", pa.ID, name, x, y)
			}
		}
		field("name", pa.Name, pb.Name)
		field("depends_on", pa.DependsOn, pb.DependsOn)
		field("roles", pa.Roles, pb.Roles)
		field("sla", slaString(pa.SLA), slaString(pb.SLA))
		field("group", pa.Group, pb.Group)
		field("activities", pa.Activities, pb.Activities)
		field("route", pa.Route, pb.Route)
		field("when", condString(pa.When), condString(pb.When))
	}
	for _, pb := range b.Phases {
		if a.Phase(pb.ID) == nil {
			add("+ phase %s added (after %v)", pb.ID, pb.DependsOn)
		}
	}
	return out
}

func slaString(s *dtetype.SLA) string {
	if s == nil {
		return "none"
	}
	if s.BusinessDays {
		return fmt.Sprintf("%d business days", s.Duration)
	}
	return fmt.Sprintf("%d %s", s.Duration, s.Unit)
}

func condString(c *dtetype.Condition) string {
	if c == nil {
		return "always"
	}
	return c.String()
}
