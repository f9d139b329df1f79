package legacy

import (
	"fmt"
	"maps"
	"reflect"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Table describes the legacy phase table as the configuration does (the
// legacy section of the config file): where it is, its columns by role,
// and what its labels mean. Labels are data: the same bridge reads and
// writes every label profile. config resolves every default before a Table
// reaches this package.
type Table struct {
	// Name is the table, schema-qualified.
	Name string `yaml:"table"`
	// Key lists its primary-key columns.
	Key []string `yaml:"key"`
	// Columns names the columns by role.
	Columns Columns `yaml:"columns"`
	// Phases maps phase labels, aliases included, to canonical phase ids.
	Phases Labels[dtetype.Phase] `yaml:"phases"`
	// States maps state labels to canonical states.
	States Labels[dtetype.State] `yaml:"states"`
	// Statuses maps schedule-status labels to canonical statuses.
	Statuses Labels[dtetype.Status] `yaml:"statuses"`
	// LegacyStatuses maps the labels of the legacy status column
	// (Columns.LegacyStatus), where there is one, to the state each means.
	LegacyStatuses Labels[dtetype.State] `yaml:"legacy_statuses"`
	// IgnorePhases lists phase labels the bridge skips on purpose.
	IgnorePhases []string `yaml:"ignore_phases"`
	// Users, if set, locates the users table and its role column.
	Users *UsersTable `yaml:"users"`
	// Attributes names where each report attribute comes from (the
	// attributes a definition's when conditions test), by attribute name.
	Attributes map[string]Attribute `yaml:"attributes"`
	// Write is how the legacy application writes rows, which the writer
	// reproduces.
	Write Write `yaml:"write"`
}

// Columns names the legacy table's columns by role. LegacyStatus is empty
// where the table has no legacy status column.
type Columns struct {
	Cycle          string `yaml:"cycle"`
	Report         string `yaml:"report"`
	Phase          string `yaml:"phase"`
	State          string `yaml:"state"`
	Status         string `yaml:"status"`
	LegacyStatus   string `yaml:"legacy_status"`
	StateOverride  string `yaml:"state_override"`
	StatusOverride string `yaml:"status_override"`
	OverrideReason string `yaml:"override_reason"`
	OverrideBy     string `yaml:"override_by"`
	OverrideAt     string `yaml:"override_at"`
	PlannedStart   string `yaml:"planned_start"`
	PlannedEnd     string `yaml:"planned_end"`
	ActualStart    string `yaml:"actual_start"`
	ActualEnd      string `yaml:"actual_end"`
	StartedBy      string `yaml:"started_by"`
	CompletedBy    string `yaml:"completed_by"`
	UpdatedAt      string `yaml:"updated_at"`
}

// Named lists the configured columns as (setting, column name), in
// declaration order; optional ones left unset are not listed.
func (c *Columns) Named() [][2]string {
	var out [][2]string
	v := reflect.ValueOf(*c)
	for i := range v.NumField() {
		if col := v.Field(i).String(); col != "" {
			out = append(out, [2]string{"legacy.columns." + v.Type().Field(i).Tag.Get("yaml"), col})
		}
	}
	return out
}

// Attribute locates one report attribute: a column of a table joined to
// the phase table by the report key (and the cycle, where the attribute is
// per cycle).
type Attribute struct {
	// Table is the table holding it, optionally schema-qualified.
	Table string `yaml:"table"`
	// Key is its column holding the report id; Cycle, if set, its column
	// holding the cycle id.
	Key   string `yaml:"key"`
	Cycle string `yaml:"cycle"`
	// Column holds the attribute's value.
	Column string `yaml:"column"`
}

// UsersTable locates the legacy users table, to resolve actors' roles.
type UsersTable struct {
	// Table is the users table, schema-qualified.
	Table string `yaml:"table"`
	// ID and Role are its user-id and role columns.
	ID   string `yaml:"id"`
	Role string `yaml:"role"`
}

// Write describes how the legacy application writes rows, beyond its
// labels: the gates it enforces and the phases it starts by itself. The
// writer reproduces it, so a row the new engine writes back looks as if the
// legacy application had written it.
type Write struct {
	// Gates: starting a phase needs every phase listed for it completed
	// (SynapseDTE: scoping needs planning, data_provider_id needs
	// sample_selection).
	Gates map[dtetype.Phase][]dtetype.Phase `yaml:"gates"`
	// StartOnComplete: completing a phase also starts the phase named for
	// it when that one has not started (SynapseDTE: planning starts
	// scoping).
	StartOnComplete map[dtetype.Phase]dtetype.Phase `yaml:"start_on_complete"`
	// Labels declares the label to write where several labels map to one
	// value; otherwise the first label listed for the value is written.
	Labels Preferred `yaml:"labels"`
}

// Preferred labels by canonical value.
type Preferred struct {
	States         map[dtetype.State]string  `yaml:"states"`
	Statuses       map[dtetype.Status]string `yaml:"statuses"`
	LegacyStatuses map[dtetype.State]string  `yaml:"legacy_statuses"`
}

// Clone returns a deep copy of t, so a translator or writer keeps the
// configuration it was made with while the caller's changes (a reload)
// build the next one.
func (t *Table) Clone() *Table {
	c := *t
	c.Key = append([]string(nil), t.Key...)
	c.Phases, c.States, c.Statuses, c.LegacyStatuses = t.Phases.Clone(), t.States.Clone(), t.Statuses.Clone(), t.LegacyStatuses.Clone()
	c.IgnorePhases = append([]string(nil), t.IgnorePhases...)
	if t.Users != nil {
		u := *t.Users
		c.Users = &u
	}
	c.Attributes = maps.Clone(t.Attributes)
	c.Write.Gates = map[dtetype.Phase][]dtetype.Phase{}
	for k, v := range t.Write.Gates {
		c.Write.Gates[k] = append([]dtetype.Phase(nil), v...)
	}
	c.Write.StartOnComplete = maps.Clone(t.Write.StartOnComplete)
	c.Write.Labels.States = maps.Clone(t.Write.Labels.States)
	c.Write.Labels.Statuses = maps.Clone(t.Write.Labels.Statuses)
	c.Write.Labels.LegacyStatuses = maps.Clone(t.Write.Labels.LegacyStatuses)
	return &c
}

// qualified names a table with its schema, public where none is given.
func qualified(name string) string {
	if !strings.Contains(name, ".") {
		return "public." + name
	}
	return name
}

// Ident returns the table as a quoted identifier.
func (t *Table) Ident() string { return Ident(t.Name) }

// Ident quotes a table name given as table or schema.table.
func Ident(name string) string { return pgx.Identifier(strings.Split(name, ".")).Sanitize() }

// Col quotes a column name, qualified by alias if set.
func Col(alias, name string) string {
	if alias == "" {
		return pgx.Identifier{name}.Sanitize()
	}
	return alias + "." + pgx.Identifier{name}.Sanitize()
}

// KeyExpr renders the row key as text (the key columns joined by commas),
// for rows read under alias.
func (t *Table) KeyExpr(alias string) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = Col(alias, k)
	}
	return "concat_ws(',', " + strings.Join(parts, ", ") + ")"
}

// KeyOrder renders the key columns for ORDER BY, under alias.
func (t *Table) KeyOrder(alias string) string {
	parts := make([]string, len(t.Key))
	for i, k := range t.Key {
		parts[i] = Col(alias, k)
	}
	return strings.Join(parts, ", ")
}

// PhaseLabels returns every label that maps to phase p, in the order
// configured.
func (t *Table) PhaseLabels(p dtetype.Phase) []string {
	var out []string
	for l, v := range t.Phases.All() {
		if v == p {
			out = append(out, l)
		}
	}
	return out
}

// StateLabel is the label the legacy application writes for state s.
func (t *Table) StateLabel(s dtetype.State) (string, error) {
	return pick("legacy.states", string(s), t.Write.Labels.States[s], t.States.LabelOf(s))
}

// StatusLabel is the label the legacy application writes for status s.
func (t *Table) StatusLabel(s dtetype.Status) (string, error) {
	return pick("legacy.statuses", string(s), t.Write.Labels.Statuses[s], t.Statuses.LabelOf(s))
}

// LegacyStatusLabel is the label of the legacy status column for state s,
// and "" where the table has no such column.
func (t *Table) LegacyStatusLabel(s dtetype.State) (string, error) {
	if t.Columns.LegacyStatus == "" {
		return "", nil
	}
	return pick("legacy.legacy_statuses", string(s), t.Write.Labels.LegacyStatuses[s], t.LegacyStatuses.LabelOf(s))
}

func pick(section, value, preferred, first string) (string, error) {
	switch {
	case preferred != "":
		return preferred, nil
	case first != "":
		return first, nil
	}
	return "", fmt.Errorf("no label in %s maps to %s: add one, or the bridge cannot write it", section, value)
}

// Validate checks the description without a database: every value is
// canonical, preferred labels map to their value, and what the writer
// needs is there.
func (t *Table) Validate() error {
	switch {
	case t.Name == "" || strings.Count(t.Name, ".") > 1 || strings.HasPrefix(t.Name, ".") || strings.HasSuffix(t.Name, "."):
		return fmt.Errorf("legacy.table %q is not table or schema.table", t.Name)
	case len(t.Key) == 0:
		return fmt.Errorf("legacy.key is empty: name the table's primary-key columns")
	case t.Phases.Len() == 0:
		return fmt.Errorf("legacy.phases is empty: map each legacy phase label to a canonical phase id")
	case t.States.Len() == 0:
		return fmt.Errorf("legacy.states is empty: map each legacy state label to one of %v", dtetype.States())
	case t.Statuses.Len() == 0:
		return fmt.Errorf("legacy.statuses is empty: map each schedule-status label to one of %v", dtetype.Statuses())
	}
	for label, s := range t.States.All() {
		if !s.Valid() {
			return fmt.Errorf("legacy.states: %q maps to %q, which is not one of %v", label, s, dtetype.States())
		}
	}
	for label, s := range t.LegacyStatuses.All() {
		if !s.Valid() {
			return fmt.Errorf("legacy.legacy_statuses: %q maps to %q, which is not one of %v", label, s, dtetype.States())
		}
	}
	for label, s := range t.Statuses.All() {
		if !s.Valid() {
			return fmt.Errorf("legacy.statuses: %q maps to %q, which is not one of %v", label, s, dtetype.Statuses())
		}
	}
	for label, p := range t.Phases.All() {
		if p == "" {
			return fmt.Errorf("legacy.phases: %q maps to an empty phase id", label)
		}
	}
	if t.Columns.LegacyStatus != "" && t.LegacyStatuses.Len() == 0 {
		return fmt.Errorf("legacy.columns.legacy_status is %q but legacy.legacy_statuses is empty: map its labels to not_started, in_progress or completed", t.Columns.LegacyStatus)
	}
	if t.Columns.LegacyStatus == "" && t.LegacyStatuses.Len() > 0 {
		return fmt.Errorf("legacy.legacy_statuses is set but legacy.columns.legacy_status is not: name the legacy status column")
	}
	for s, l := range t.Write.Labels.States {
		if v, ok := t.States.Get(l); !ok || v != s {
			return fmt.Errorf("legacy.write.labels.states: %q is not a label of legacy.states that maps to %s", l, s)
		}
	}
	for s, l := range t.Write.Labels.Statuses {
		if v, ok := t.Statuses.Get(l); !ok || v != s {
			return fmt.Errorf("legacy.write.labels.statuses: %q is not a label of legacy.statuses that maps to %s", l, s)
		}
	}
	for s, l := range t.Write.Labels.LegacyStatuses {
		if v, ok := t.LegacyStatuses.Get(l); !ok || v != s {
			return fmt.Errorf("legacy.write.labels.legacy_statuses: %q is not a label of legacy.legacy_statuses that maps to %s", l, s)
		}
	}
	if t.Users != nil && (t.Users.Table == "" || t.Users.ID == "" || t.Users.Role == "") {
		return fmt.Errorf("legacy.users needs table, id and role")
	}
	for name, a := range t.Attributes {
		switch {
		case name == "":
			return fmt.Errorf("legacy.attributes: an attribute has no name")
		case a.Table == "" || strings.Count(a.Table, ".") > 1 || strings.HasPrefix(a.Table, ".") || strings.HasSuffix(a.Table, "."):
			return fmt.Errorf("legacy.attributes.%s.table %q is not table or schema.table", name, a.Table)
		case a.Key == "" || a.Column == "":
			return fmt.Errorf("legacy.attributes.%s needs key (the column holding the report id) and column (the one holding the value)", name)
		}
	}
	return nil
}

// Labels maps legacy labels to canonical values, in the order the
// configuration lists them: the first label of a value is the one written
// back, unless legacy.write.labels prefers another.
type Labels[V ~string] struct {
	labels []string
	values map[string]V
}

// Clone returns a copy that shares nothing with l.
func (l Labels[V]) Clone() Labels[V] {
	c := Labels[V]{labels: append([]string(nil), l.labels...), values: make(map[string]V, len(l.values))}
	for k, v := range l.values {
		c.values[k] = v
	}
	return c
}

// LabelsOf builds Labels from label, value pairs, in order.
func LabelsOf[V ~string](pairs ...string) Labels[V] {
	var l Labels[V]
	for i := 0; i+1 < len(pairs); i += 2 {
		l.Set(pairs[i], V(pairs[i+1]))
	}
	return l
}

// Set maps label to v, keeping its place if it is there already.
func (l *Labels[V]) Set(label string, v V) {
	if l.values == nil {
		l.values = map[string]V{}
	}
	if _, ok := l.values[label]; !ok {
		l.labels = append(l.labels, label)
	}
	l.values[label] = v
}

// Get returns the value of label.
func (l Labels[V]) Get(label string) (V, bool) {
	v, ok := l.values[label]
	return v, ok
}

// Value returns the value of label, or the zero value if it is not mapped.
func (l Labels[V]) Value(label string) V { return l.values[label] }

// Len returns the number of labels.
func (l Labels[V]) Len() int { return len(l.labels) }

// All yields every label and its value, in order.
func (l Labels[V]) All() func(yield func(string, V) bool) {
	return func(yield func(string, V) bool) {
		for _, label := range l.labels {
			if !yield(label, l.values[label]) {
				return
			}
		}
	}
}

// LabelOf returns the first label that maps to v, or "".
func (l Labels[V]) LabelOf(v V) string {
	for _, label := range l.labels {
		if l.values[label] == v {
			return label
		}
	}
	return ""
}

// UnmarshalYAML reads a mapping of label to value, keeping its order. A
// label listed twice is an error.
func (l *Labels[V]) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: expected a mapping of legacy label to canonical value", n.Line)
	}
	*l = Labels[V]{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var label, value string
		if err := k.Decode(&label); err != nil {
			return err
		}
		if err := v.Decode(&value); err != nil {
			return fmt.Errorf("line %d: the value of %q must be a canonical id", v.Line, label)
		}
		if _, dup := l.values[label]; dup {
			return fmt.Errorf("line %d: label %q is listed twice", k.Line, label)
		}
		l.Set(label, V(value))
	}
	return nil
}

// MarshalYAML writes the mapping in order.
func (l Labels[V]) MarshalYAML() (any, error) {
	n := &yaml.Node{Kind: yaml.MappingNode}
	for _, label := range l.labels {
		n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: label}, &yaml.Node{Kind: yaml.ScalarNode, Value: string(l.values[label])})
	}
	return n, nil
}
