package dtetype

import (
	"slices"
	"strings"
	"time"
)

// Status policies: how a workflow definition computes schedule status.
const (
	// PolicyLegacy applies the legacy rule, exactly (LegacyScheduleStatus).
	PolicyLegacy = "legacy"
	// PolicySLA derives status from the phase's SLA: at risk once AtRiskShare
	// of the SLA has elapsed, behind schedule once it has all elapsed.
	PolicySLA = "sla"
)

// AtRiskShare is the share of its SLA after which a running phase is at
// risk under the sla policy.
const AtRiskShare = 0.8

// Definition is a parsed, validated workflow definition: what a shadow
// workflow runs. It is plain data, so it can travel as workflow input and a
// running workflow keeps the version it started with.
type Definition struct {
	ID           string `json:"id"`
	Version      string `json:"version"`
	Name         string `json:"name,omitempty"`
	StatusPolicy string `json:"status_policy"`
	// Roles are the roles the definition knows, with their aliases.
	Roles []Role `json:"roles,omitempty"`
	// Phases are every phase, parallel branches included, in declaration
	// order. DependsOn is expanded: a dependency on a parallel group is a
	// dependency on each of its branches.
	Phases []PhaseDef `json:"phases"`
	// Groups are the parallel groups.
	Groups []Group `json:"groups,omitempty"`
}

// Role is a role name and the other names legacy uses for it.
type Role struct {
	Name    string   `json:"name"`
	Aliases []string `json:"aliases,omitempty"`
}

// Group is a parallel group of phases.
type Group struct {
	ID       string  `json:"id"`
	Name     string  `json:"name,omitempty"`
	Branches []Phase `json:"branches"`
}

// PhaseDef is one phase of a definition.
type PhaseDef struct {
	ID         Phase      `json:"id"`
	Name       string     `json:"name,omitempty"`
	Group      string     `json:"group,omitempty"`
	DependsOn  []Phase    `json:"depends_on,omitempty"`
	Roles      []string   `json:"roles,omitempty"`
	SLA        *SLA       `json:"sla,omitempty"`
	Activities []string   `json:"activities,omitempty"`
	Route      string     `json:"route,omitempty"`
	When       *Condition `json:"when,omitempty"`
}

// SLA is a phase's allowed duration.
type SLA struct {
	Duration int `json:"duration"`
	// Unit is days or hours.
	Unit string `json:"unit"`
	// BusinessDays counts only Monday to Friday (days only).
	BusinessDays bool `json:"business_days,omitempty"`
}

// Deadline returns when a phase started at start breaches the SLA.
func (s *SLA) Deadline(start time.Time) time.Time {
	if s.Unit == "hours" {
		return start.Add(time.Duration(s.Duration) * time.Hour)
	}
	if !s.BusinessDays {
		return start.AddDate(0, 0, s.Duration)
	}
	t := start
	for left := s.Duration; left > 0; {
		t = t.AddDate(0, 0, 1)
		if wd := t.Weekday(); wd != time.Saturday && wd != time.Sunday {
			left--
		}
	}
	return t
}

// Condition is a phase's when clause: attribute op values, with op ==, !=
// or in. A phase whose condition is false does not apply to the report.
type Condition struct {
	Attribute string   `json:"attribute"`
	Op        string   `json:"op"`
	Values    []string `json:"values"`
}

// Holds evaluates the condition against a report's attributes. A missing
// attribute makes == and in false and != true.
func (c *Condition) Holds(attrs map[string]string) bool {
	if c == nil {
		return true
	}
	v, ok := attrs[c.Attribute]
	switch c.Op {
	case "!=":
		return !ok || !slices.Contains(c.Values, v)
	default:
		return ok && slices.Contains(c.Values, v)
	}
}

// String renders the condition as written.
func (c *Condition) String() string {
	if c.Op == "in" {
		return c.Attribute + " in [" + strings.Join(c.Values, ", ") + "]"
	}
	return c.Attribute + " " + c.Op + " " + c.Values[0]
}

// WhenAttributes lists, sorted, the report attributes the definition's
// when conditions test, with the phases that test each.
func (d *Definition) WhenAttributes() map[string][]Phase {
	out := map[string][]Phase{}
	for _, p := range d.Phases {
		if p.When != nil {
			out[p.When.Attribute] = append(out[p.When.Attribute], p.ID)
		}
	}
	return out
}

// Phase returns the definition of phase p, or nil.
func (d *Definition) Phase(p Phase) *PhaseDef {
	for i := range d.Phases {
		if d.Phases[i].ID == p {
			return &d.Phases[i]
		}
	}
	return nil
}

// PhaseIDs returns every phase id in declaration order.
func (d *Definition) PhaseIDs() []Phase {
	out := make([]Phase, len(d.Phases))
	for i, p := range d.Phases {
		out[i] = p.ID
	}
	return out
}

// CanonicalRole resolves a role name or alias to the role's name, and
// reports whether the definition knows it. Matching ignores case and
// surrounding space, because legacy spells roles inconsistently.
func (d *Definition) CanonicalRole(name string) (string, bool) {
	n := strings.ToLower(strings.TrimSpace(name))
	for _, r := range d.Roles {
		if strings.ToLower(r.Name) == n {
			return r.Name, true
		}
		for _, a := range r.Aliases {
			if strings.ToLower(a) == n {
				return r.Name, true
			}
		}
	}
	return "", false
}

// Key renders the definition's identity, id@version.
func (d *Definition) Key() string { return d.ID + "@" + d.Version }
