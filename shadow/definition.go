package shadow

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/dtetype"
)

//go:embed definitions/*.yaml
var builtin embed.FS

// BuiltinDefinitionFiles lists the shipped definition files.
func BuiltinDefinitionFiles() []string {
	entries, _ := builtin.ReadDir("definitions")
	var out []string
	for _, e := range entries {
		out = append(out, "definitions/"+e.Name())
	}
	return out
}

// LoadBuiltin parses a shipped definition file, e.g.
// "definitions/standard_dt_testing.yaml".
func LoadBuiltin(name string) ([]*dtetype.Definition, error) {
	b, err := builtin.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("no built-in definition file %s", name)
	}
	return ParseDefinitions(name, b)
}

// LoadDefinitions parses definition files. A path that is not on disk but
// names a shipped file (definitions/standard_dt_testing.yaml) loads that. Two
// definitions with the same id and version are an error.
func LoadDefinitions(paths ...string) ([]*dtetype.Definition, error) {
	var out []*dtetype.Definition
	seen := map[string]string{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			if bb, berr := builtin.ReadFile(path.Clean(p)); berr == nil {
				b, err = bb, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("error reading definitions: %w", err)
		}
		defs, err := ParseDefinitions(p, b)
		if err != nil {
			return nil, err
		}
		for _, d := range defs {
			if other, ok := seen[d.Key()]; ok {
				return nil, fmt.Errorf("%s: workflow %s is also defined in %s", p, d.Key(), other)
			}
			seen[d.Key()] = p
			out = append(out, d)
		}
	}
	return out, nil
}

// DefinitionError lists every problem found in a definitions file, each as
// file:line: what is wrong.
type DefinitionError struct {
	Problems []string
}

func (e *DefinitionError) Error() string { return strings.Join(e.Problems, "\n") }

type parser struct {
	file     string
	problems []string
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, fmt.Sprintf("%s:%d: %s", p.file, line, fmt.Sprintf(format, args...)))
}

// fields checks a mapping's keys against allowed and returns key -> value.
func (p *parser) fields(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping", what)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			p.errorf(k, "unknown field %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out
}

func (p *parser) scalar(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s must be a single value", what)
		return ""
	}
	return n.Value
}

func (p *parser) list(n *yaml.Node, what string) []*yaml.Node {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list", what)
		return nil
	}
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode && what != "phases" && what != "branches" {
			p.errorf(c, "each of %s must be a single value", what)
		}
	}
	return n.Content
}

// entry is a top-level phase or parallel group as written.
type entry struct {
	node      *yaml.Node
	id        string
	name      string
	parallel  bool
	dependsOn []*yaml.Node // nil: not given
	hasDeps   bool
	phase     *phaseNode
	branches  []*phaseNode
}

type phaseNode struct {
	node      *yaml.Node
	def       dtetype.PhaseDef
	dependsOn []*yaml.Node
}

var conditionRE = regexp.MustCompile(`^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(==|!=|in)\s*(.+?)\s*$`)

// ParseDefinitions parses and validates a definitions file; name labels
// errors.
func ParseDefinitions(name string, b []byte) ([]*dtetype.Definition, error) {
	p := &parser{file: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, &DefinitionError{Problems: []string{fmt.Sprintf("%s: %v", name, err)}}
	}
	if len(doc.Content) == 0 {
		return nil, &DefinitionError{Problems: []string{name + ":1: empty file: expected roles and workflows"}}
	}
	top := p.fields(doc.Content[0], "the file", "roles", "workflows")
	roles := p.roles(top["roles"])
	var defs []*dtetype.Definition
	if wf := top["workflows"]; wf == nil || wf.Kind != yaml.MappingNode || len(wf.Content) == 0 {
		p.errorf(doc.Content[0], "no workflows: add a workflows mapping of id to workflow")
	} else {
		for i := 0; i+1 < len(wf.Content); i += 2 {
			if d := p.workflow(wf.Content[i], wf.Content[i+1], roles); d != nil {
				defs = append(defs, d)
			}
		}
	}
	if len(p.problems) > 0 {
		return nil, &DefinitionError{Problems: p.problems}
	}
	return defs, nil
}

func (p *parser) roles(n *yaml.Node) []dtetype.Role {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "roles must map each role name to a list of aliases")
		return nil
	}
	var out []dtetype.Role
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		r := dtetype.Role{Name: n.Content[i].Value}
		for _, a := range p.list(n.Content[i+1], "aliases") {
			r.Aliases = append(r.Aliases, a.Value)
		}
		for _, nm := range append([]string{r.Name}, r.Aliases...) {
			if seen[strings.ToLower(nm)] {
				p.errorf(n.Content[i], "role name %q is declared twice", nm)
			}
			seen[strings.ToLower(nm)] = true
		}
		out = append(out, r)
	}
	return out
}

func (p *parser) workflow(k, v *yaml.Node, roles []dtetype.Role) *dtetype.Definition {
	before := len(p.problems)
	d := &dtetype.Definition{ID: k.Value, Roles: roles, StatusPolicy: dtetype.PolicyLegacy}
	f := p.fields(v, "workflow "+k.Value, "version", "name", "status_policy", "phases")
	d.Version = p.scalar(f["version"], "version")
	if d.Version == "" {
		p.errorf(v, "workflow %s has no version", d.ID)
	}
	d.Name = p.scalar(f["name"], "name")
	if sp := f["status_policy"]; sp != nil {
		d.StatusPolicy = p.scalar(sp, "status_policy")
		if d.StatusPolicy != dtetype.PolicyLegacy && d.StatusPolicy != dtetype.PolicySLA {
			p.errorf(sp, "status_policy %q is not legacy or sla", d.StatusPolicy)
		}
	}
	var entries []*entry
	for _, pn := range p.list(f["phases"], "phases") {
		entries = append(entries, p.entry(pn, d, false))
	}
	if len(entries) == 0 {
		p.errorf(v, "workflow %s has no phases", d.ID)
		return nil
	}

	// Ids are unique across phases and groups.
	ids := map[string]*yaml.Node{}
	claim := func(id string, n *yaml.Node) {
		if id == "" {
			return
		}
		if first, ok := ids[id]; ok {
			p.errorf(n, "duplicate id %q (first declared at line %d)", id, first.Line)
			return
		}
		ids[id] = n
	}
	groups := map[string][]dtetype.Phase{}
	for _, e := range entries {
		claim(e.id, e.node)
		if e.parallel {
			var br []dtetype.Phase
			for _, b := range e.branches {
				claim(string(b.def.ID), b.node)
				br = append(br, b.def.ID)
			}
			groups[e.id] = br
			d.Groups = append(d.Groups, dtetype.Group{ID: e.id, Name: e.name, Branches: br})
		}
	}

	// Resolve dependencies: explicit, or the previous entry.
	resolve := func(n *yaml.Node) []dtetype.Phase {
		if br, ok := groups[n.Value]; ok {
			return br
		}
		if _, ok := ids[n.Value]; ok {
			return []dtetype.Phase{dtetype.Phase(n.Value)}
		}
		p.errorf(n, "unknown dependency %q", n.Value)
		return nil
	}
	var prev []dtetype.Phase
	lines := map[dtetype.Phase]*yaml.Node{}
	for _, e := range entries {
		var deps []dtetype.Phase
		if e.hasDeps {
			for _, dn := range e.dependsOn {
				deps = append(deps, resolve(dn)...)
			}
		} else {
			deps = prev
		}
		if !e.parallel {
			e.phase.def.DependsOn = uniq(deps)
			d.Phases = append(d.Phases, e.phase.def)
			lines[e.phase.def.ID] = e.phase.node
			prev = []dtetype.Phase{e.phase.def.ID}
			continue
		}
		for _, b := range e.branches {
			bd := slices.Clone(deps)
			for _, dn := range b.dependsOn {
				bd = append(bd, resolve(dn)...)
			}
			b.def.DependsOn = uniq(bd)
			b.def.Group = e.id
			d.Phases = append(d.Phases, b.def)
			lines[b.def.ID] = b.node
		}
		prev = groups[e.id]
	}
	if len(p.problems) > before {
		return nil
	}
	p.checkCycles(d, lines)
	if len(p.problems) > before {
		return nil
	}
	p.checkReachable(d, lines, entries[0])
	if len(p.problems) > before {
		return nil
	}
	return d
}

func uniq(ps []dtetype.Phase) []dtetype.Phase {
	var out []dtetype.Phase
	for _, x := range ps {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

// entry parses a top-level phase, a parallel group, or (branch) a branch.
func (p *parser) entry(n *yaml.Node, d *dtetype.Definition, branch bool) *entry {
	what := "phase"
	allowed := []string{"id", "name", "type", "depends_on", "roles", "sla", "activities", "route", "when", "branches"}
	if branch {
		what = "branch"
		allowed = []string{"id", "name", "depends_on", "roles", "sla", "activities", "route", "when"}
	}
	f := p.fields(n, what, allowed...)
	e := &entry{node: n, id: p.scalar(f["id"], "id"), name: p.scalar(f["name"], "name")}
	if e.id == "" {
		p.errorf(n, "%s has no id", what)
	}
	typ := p.scalar(f["type"], "type")
	switch typ {
	case "", "sequential":
	case "parallel":
		e.parallel = true
	default:
		p.errorf(f["type"], "type %q is not sequential or parallel", typ)
	}
	if dn, ok := f["depends_on"]; ok {
		e.hasDeps = true
		e.dependsOn = p.list(dn, "depends_on")
	}
	if e.parallel {
		for _, bn := range p.list(f["branches"], "branches") {
			be := p.entry(bn, d, true)
			be.phase.dependsOn = be.dependsOn
			e.branches = append(e.branches, be.phase)
		}
		if len(e.branches) == 0 {
			p.errorf(n, "parallel group %q has no branches", e.id)
		}
		for _, k := range []string{"roles", "sla", "activities", "route", "when"} {
			if f[k] != nil {
				p.errorf(f[k], "%s belongs on the branches of parallel group %q, not on the group", k, e.id)
			}
		}
		return e
	}
	if f["branches"] != nil {
		p.errorf(f["branches"], "phase %q has branches but is not type: parallel", e.id)
	}
	def := dtetype.PhaseDef{ID: dtetype.Phase(e.id), Name: e.name, Route: p.scalar(f["route"], "route")}
	for _, rn := range p.list(f["roles"], "roles") {
		role, ok := d.CanonicalRole(rn.Value)
		if !ok {
			p.errorf(rn, "unknown role %q in phase %q (declare it under roles)", rn.Value, e.id)
			continue
		}
		def.Roles = append(def.Roles, role)
	}
	for _, an := range p.list(f["activities"], "activities") {
		def.Activities = append(def.Activities, an.Value)
	}
	if sn := f["sla"]; sn != nil {
		def.SLA = p.sla(sn, e.id)
	}
	if wn := f["when"]; wn != nil {
		def.When = p.condition(wn, e.id)
	}
	e.phase = &phaseNode{node: n, def: def, dependsOn: e.dependsOn}
	return e
}

func (p *parser) sla(n *yaml.Node, id string) *dtetype.SLA {
	f := p.fields(n, "sla", "duration", "unit", "business_days")
	s := &dtetype.SLA{Unit: "days"}
	dv := p.scalar(f["duration"], "duration")
	v, err := strconv.Atoi(dv)
	if err != nil || v <= 0 {
		at := f["duration"]
		if at == nil {
			at = n
		}
		p.errorf(at, "bad duration %q for phase %q: want a whole number of days or hours above 0", dv, id)
	}
	s.Duration = v
	if u := f["unit"]; u != nil {
		s.Unit = p.scalar(u, "unit")
		if s.Unit != "days" && s.Unit != "hours" {
			p.errorf(u, "bad duration unit %q for phase %q: want days or hours", s.Unit, id)
		}
	}
	if bd := f["business_days"]; bd != nil {
		s.BusinessDays = p.scalar(bd, "business_days") == "true"
		if s.BusinessDays && s.Unit != "days" {
			p.errorf(bd, "business_days applies to a duration in days, not %s", s.Unit)
		}
	}
	return s
}

func (p *parser) condition(n *yaml.Node, id string) *dtetype.Condition {
	s := p.scalar(n, "when")
	m := conditionRE.FindStringSubmatch(s)
	if m == nil {
		p.errorf(n, "when %q for phase %q is not 'attribute == value', 'attribute != value' or 'attribute in [a, b]'", s, id)
		return nil
	}
	c := &dtetype.Condition{Attribute: m[1], Op: m[2]}
	val := m[3]
	if c.Op == "in" {
		if !strings.HasPrefix(val, "[") || !strings.HasSuffix(val, "]") {
			p.errorf(n, "when %q for phase %q: in takes a list, [a, b]", s, id)
			return nil
		}
		for _, x := range strings.Split(strings.Trim(val, "[]"), ",") {
			c.Values = append(c.Values, strings.Trim(strings.TrimSpace(x), `'"`))
		}
	} else {
		c.Values = []string{strings.Trim(val, `'"`)}
	}
	return c
}

// checkCycles reports every dependency cycle once.
func (p *parser) checkCycles(d *dtetype.Definition, lines map[dtetype.Phase]*yaml.Node) {
	const (
		white = iota
		grey
		black
	)
	color := map[dtetype.Phase]int{}
	var stack []dtetype.Phase
	var visit func(id dtetype.Phase)
	visit = func(id dtetype.Phase) {
		color[id] = grey
		stack = append(stack, id)
		for _, dep := range d.Phase(id).DependsOn {
			switch color[dep] {
			case grey:
				i := slices.Index(stack, dep)
				cycle := append(slices.Clone(stack[i:]), dep)
				names := make([]string, len(cycle))
				for j, c := range cycle {
					names[j] = string(c)
				}
				p.errorf(lines[dep], "dependency cycle: %s", strings.Join(names, " -> "))
			case white:
				visit(dep)
			}
		}
		stack = stack[:len(stack)-1]
		color[id] = black
	}
	for _, ph := range d.Phases {
		if color[ph.ID] == white {
			visit(ph.ID)
		}
	}
}

// checkReachable reports phases that nothing leads to from the first entry.
func (p *parser) checkReachable(d *dtetype.Definition, lines map[dtetype.Phase]*yaml.Node, first *entry) {
	var frontier []dtetype.Phase
	if first.parallel {
		for _, b := range first.branches {
			frontier = append(frontier, b.def.ID)
		}
	} else {
		frontier = []dtetype.Phase{first.phase.def.ID}
	}
	reached := map[dtetype.Phase]bool{}
	for len(frontier) > 0 {
		id := frontier[0]
		frontier = frontier[1:]
		if reached[id] {
			continue
		}
		reached[id] = true
		for _, ph := range d.Phases {
			if slices.Contains(ph.DependsOn, id) {
				frontier = append(frontier, ph.ID)
			}
		}
	}
	start := string(first.id)
	for _, ph := range d.Phases {
		if !reached[ph.ID] {
			p.errorf(lines[ph.ID], "phase %q is unreachable: no chain of dependencies leads to it from %q", ph.ID, start)
		}
	}
}
