// Package config loads the dtebridge configuration file and resolves it:
// every default of the bridge is filled here, once, and each part receives
// resolved, exported values (the legacy table, capture, reader, reconcile,
// gate and HTTP settings). No other package restates a default.
//
// Decoding is strict: an unknown key is an error that names the file and
// line, so a typo never silently falls back to a default.
package config

import (
	"bytes"
	"cmp"
	"embed"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/legacy"
	"github.com/synapsedte/dtebridge/reconcile"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

//go:embed examples/*.yaml
var examples embed.FS

// The defaults. Each is used here and nowhere else.
const (
	DefaultTable            = "public.workflow_phases"
	DefaultKey              = "phase_id"
	DefaultSchema           = "dtebridge"
	DefaultTrigger          = adapter.TriggerRow
	DefaultMode             = adapter.ModeTrigger
	DefaultBatchSize        = 2000
	DefaultPollInterval     = time.Second
	DefaultRetention        = 168 * time.Hour
	DefaultMaxText          = legacy.DefaultMaxText
	DefaultDeliveryGrace    = 2 * time.Minute
	DefaultConsumerLease    = time.Hour
	DefaultTaskQueue        = "dtebridge-shadow"
	DefaultWorkflowIDPrefix = "shadow-"
	DefaultConcurrency      = 16
	DefaultLagGrace         = 30 * time.Second
	DefaultDateTolerance    = time.Second
	DefaultGateRuns         = 3
	DefaultGateWithin       = 24 * time.Hour
	DefaultGateMinSpan      = time.Hour
	DefaultMinConsistency   = 0.999
	DefaultConflictPolicy   = cutover.PolicyAlert
	DefaultListen           = "127.0.0.1:8080"
	DefaultCommandTimeout   = 30 * time.Second
	DefaultUsersID          = "user_id"
	DefaultUsersRole        = "role"
)

// DefaultColumns are the column names of the SynapseDTE schema; the legacy
// status column is absent unless configured.
var DefaultColumns = legacy.Columns{
	Cycle: "cycle_id", Report: "report_id", Phase: "phase_name", State: "state", Status: "schedule_status",
	StateOverride: "state_override", StatusOverride: "status_override", OverrideReason: "override_reason",
	OverrideBy: "override_by", OverrideAt: "override_at", PlannedStart: "planned_start_date",
	PlannedEnd: "planned_end_date", ActualStart: "actual_start_date", ActualEnd: "actual_end_date",
	StartedBy: "started_by", CompletedBy: "completed_by", UpdatedAt: "updated_at",
}

// Config is the whole configuration file, resolved: after Load or Parse
// every field holds its value or its default.
type Config struct {
	// Legacy describes the legacy phase table, its labels and users.
	Legacy legacy.Table `yaml:"legacy"`
	// Capture configures change capture.
	Capture Capture `yaml:"capture"`
	// Definitions lists workflow definition files. A relative path is read
	// next to the config file, or else from the shipped definitions.
	// Default: every shipped definition.
	Definitions []string  `yaml:"definitions"`
	Shadow      Shadow    `yaml:"shadow"`
	Reconcile   Reconcile `yaml:"reconcile"`
	Cutover     Cutover   `yaml:"cutover"`
	HTTP        HTTP      `yaml:"http"`
	// Temporal are connection settings layered over the Temporal CLI's
	// environment configuration (TEMPORAL_* variables and TOML profiles);
	// command-line flags are layered over them.
	Temporal Temporal `yaml:"temporal"`

	// path is where the file was read from, for error messages.
	path string
}

// Capture configures change capture.
type Capture struct {
	// Schema is the bridge's own schema. Default: dtebridge.
	Schema string `yaml:"schema"`
	// Mode is how changes are captured: trigger (a trigger on the legacy
	// table writes each change in legacy's transaction) or logical (the
	// bridge decodes them from a replication slot; legacy's transactions
	// pay nothing). Default: trigger.
	Mode string `yaml:"mode"`
	// Trigger is row or statement, for trigger mode. Default: row.
	Trigger string `yaml:"trigger"`
	// Slot is the replication slot, for logical mode. Default: one named
	// after the database and the schema.
	Slot string `yaml:"slot"`
	// Publication is the publication the slot reads, for logical mode.
	// Default: the schema's name followed by _capture.
	Publication string `yaml:"publication"`
	// BatchSize is the most changes per delivered batch. Default: 2000
	// (Debezium's max.batch.size is 2048): a batch spread over many
	// reports carries more changes per signal, and a backlog drains about
	// 3.6× faster than with 500 (make bench).
	BatchSize int `yaml:"batch_size"`
	// PollInterval bounds how long an idle reader waits for a NOTIFY.
	// Default: 1s.
	PollInterval Duration `yaml:"poll_interval"`
	// Retention is how long acknowledged changes are kept. Default: 168h.
	Retention Duration `yaml:"retention"`
	// MaxText caps, in bytes, the free text a change carries into the
	// shadow: the override reason and actor ids. Longer values are cut and
	// marked; the raw row in the change log keeps everything. Default: 1024.
	MaxText int `yaml:"max_text_bytes"`
	// ConsumerLease is how long a consumer other than the mirror (capture
	// tail --keep) may go without renewing its checkpoint before it no
	// longer holds back pruning. Default: 1h.
	ConsumerLease Duration `yaml:"consumer_lease"`
	// DeliveryGrace is how long deliveries to the shadow may keep failing
	// before /readyz reports the process unready. Default: 2m.
	DeliveryGrace Duration `yaml:"delivery_grace"`
}

// Shadow configures the shadow engine.
type Shadow struct {
	// Definition selects the workflow definition new shadow workflows run:
	// id (its highest version) or id@version. Default: the only one loaded.
	Definition string `yaml:"definition"`
	// TaskQueue is the shadow workers' task queue. Default: dtebridge-shadow.
	TaskQueue string `yaml:"task_queue"`
	// WorkflowIDPrefix prefixes workflow ids. Default: shadow-.
	WorkflowIDPrefix string `yaml:"workflow_id_prefix"`
	// Concurrency bounds the reports the mirror signals at once. Default: 16.
	Concurrency int `yaml:"concurrency"`
}

// Reconcile configures reconcile runs.
type Reconcile struct {
	// LagGrace is how long a report may be behind before it is stale.
	// Default: 30s.
	LagGrace Duration `yaml:"lag_grace"`
	// DateTolerance is the largest date difference that still agrees.
	// Default: 1s.
	DateTolerance Duration `yaml:"date_tolerance"`
	// Expected are the accepted differences.
	Expected []reconcile.Rule `yaml:"expected"`
}

// Gate is the promotion gate: Runs recorded reconcile runs of the phase
// within Within, spanning at least MinSpan, each at least MinConsistency
// consistent with no unexpected divergence.
type Gate struct {
	// Runs, Within, MinSpan and MinConsistency: defaults 3, 24h, 1h, 0.999.
	Runs           int      `yaml:"runs"`
	Within         Duration `yaml:"within"`
	MinSpan        Duration `yaml:"min_span"`
	MinConsistency float64  `yaml:"min_consistency"`
}

// Cutover configures cutover gates and conflicts.
type Cutover struct {
	Gate Gate `yaml:"gate"`
	// ConflictPolicy is alert (record and count) or revert (also rewrite the
	// engine's state to the legacy row). Default: alert.
	ConflictPolicy string `yaml:"conflict_policy"`
	// CommandTimeout is an engine command's deadline: past it the command
	// is refused and never written. Default: 30s.
	CommandTimeout Duration `yaml:"command_timeout"`
}

// HTTP configures the HTTP server of dtebridge serve.
type HTTP struct {
	// Listen is the address to serve on. Default: 127.0.0.1:8080 (loopback).
	Listen string `yaml:"listen"`
	// TokenFile holds the bearer token mutating endpoints require. Without
	// one they answer 401 to everyone. It must not be readable by group or
	// others.
	TokenFile string `yaml:"token_file"`
	// TLSCertFile and TLSKeyFile, if set, make serve speak HTTPS.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
}

// Temporal configures the connection to Temporal. Every field is optional.
type Temporal struct {
	Address   string `yaml:"address"`
	Namespace string `yaml:"namespace"`
	// APIKeyFile holds an API key (Temporal Cloud); TLS is then on.
	APIKeyFile string `yaml:"api_key_file"`
	// TLS turns TLS on; the file settings imply it.
	TLS           bool   `yaml:"tls"`
	TLSCertFile   string `yaml:"tls_cert_file"`
	TLSKeyFile    string `yaml:"tls_key_file"`
	TLSCAFile     string `yaml:"tls_ca_file"`
	TLSServerName string `yaml:"tls_server_name"`
	// UIURL, if set, is the Temporal Web UI's address, which the console
	// links each report's shadow workflow to.
	UIURL string `yaml:"ui_url"`
	// Retention is the workflow retention of a namespace serve
	// --temporal-create-namespace creates. Default: 72h.
	Retention Duration `yaml:"retention"`
}

// DefaultNamespaceRetention is a created namespace's retention.
const DefaultNamespaceRetention = 72 * time.Hour

// Duration is a time.Duration written as "30s" or "168h".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 30s or 168h", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Load reads, resolves and validates the configuration file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("error reading config: %w", err)
	}
	return Parse(path, b)
}

// Example returns a shipped example configuration: seed or production.
func Example(profile string) (*Config, error) {
	name := "examples/" + profile + ".yaml"
	b, err := examples.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("no example config for profile %q: use seed or production", profile)
	}
	return Parse(name, b)
}

// ExampleYAML returns the text of a shipped example configuration.
func ExampleYAML(profile string) ([]byte, error) {
	return examples.ReadFile("examples/" + profile + ".yaml")
}

// Parse decodes, resolves and validates configuration text, values and
// references (the definitions files, shadow.definition, the phases the
// mapping names); name labels errors, which read file:line: message.
func Parse(name string, b []byte) (*Config, error) {
	c := &Config{path: name}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("error in config %w", decodeError(name, err))
	}
	var root yaml.Node
	_ = yaml.Unmarshal(b, &root) // it decoded above; the nodes give lines
	c.resolve()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("error in config %w", located(name, &root, err))
	}
	return c, nil
}

// resolve fills every default.
func (c *Config) resolve() {
	l := &c.Legacy
	l.Name = cmp.Or(l.Name, DefaultTable)
	if len(l.Key) == 0 {
		l.Key = []string{DefaultKey}
	}
	col, def := &l.Columns, DefaultColumns
	for _, f := range []struct {
		dst *string
		def string
	}{
		{&col.Cycle, def.Cycle}, {&col.Report, def.Report}, {&col.Phase, def.Phase}, {&col.State, def.State},
		{&col.Status, def.Status}, {&col.StateOverride, def.StateOverride}, {&col.StatusOverride, def.StatusOverride},
		{&col.OverrideReason, def.OverrideReason}, {&col.OverrideBy, def.OverrideBy}, {&col.OverrideAt, def.OverrideAt},
		{&col.PlannedStart, def.PlannedStart}, {&col.PlannedEnd, def.PlannedEnd}, {&col.ActualStart, def.ActualStart},
		{&col.ActualEnd, def.ActualEnd}, {&col.StartedBy, def.StartedBy}, {&col.CompletedBy, def.CompletedBy},
		{&col.UpdatedAt, def.UpdatedAt},
	} {
		*f.dst = cmp.Or(*f.dst, f.def)
	}
	if l.Users != nil {
		l.Users.ID = cmp.Or(l.Users.ID, DefaultUsersID)
		l.Users.Role = cmp.Or(l.Users.Role, DefaultUsersRole)
	}
	cp := &c.Capture
	cp.Schema = cmp.Or(cp.Schema, DefaultSchema)
	cp.Mode = cmp.Or(cp.Mode, DefaultMode)
	cp.Trigger = cmp.Or(cp.Trigger, DefaultTrigger)
	cp.BatchSize = cmp.Or(cp.BatchSize, DefaultBatchSize)
	cp.PollInterval = cmp.Or(cp.PollInterval, Duration(DefaultPollInterval))
	cp.Retention = cmp.Or(cp.Retention, Duration(DefaultRetention))
	cp.MaxText = cmp.Or(cp.MaxText, DefaultMaxText)
	cp.DeliveryGrace = cmp.Or(cp.DeliveryGrace, Duration(DefaultDeliveryGrace))
	cp.ConsumerLease = cmp.Or(cp.ConsumerLease, Duration(DefaultConsumerLease))
	sh := &c.Shadow
	sh.TaskQueue = cmp.Or(sh.TaskQueue, DefaultTaskQueue)
	sh.WorkflowIDPrefix = cmp.Or(sh.WorkflowIDPrefix, DefaultWorkflowIDPrefix)
	sh.Concurrency = cmp.Or(sh.Concurrency, DefaultConcurrency)
	rc := &c.Reconcile
	rc.LagGrace = cmp.Or(rc.LagGrace, Duration(DefaultLagGrace))
	rc.DateTolerance = cmp.Or(rc.DateTolerance, Duration(DefaultDateTolerance))
	g := &c.Cutover.Gate
	g.Runs = cmp.Or(g.Runs, DefaultGateRuns)
	g.Within = cmp.Or(g.Within, Duration(DefaultGateWithin))
	g.MinConsistency = cmp.Or(g.MinConsistency, DefaultMinConsistency)
	g.MinSpan = cmp.Or(g.MinSpan, Duration(DefaultGateMinSpan))
	c.Cutover.ConflictPolicy = cmp.Or(c.Cutover.ConflictPolicy, DefaultConflictPolicy)
	c.Cutover.CommandTimeout = cmp.Or(c.Cutover.CommandTimeout, Duration(DefaultCommandTimeout))
	c.HTTP.Listen = cmp.Or(c.HTTP.Listen, DefaultListen)
}

func (c *Config) validate() error {
	if err := c.Legacy.Validate(); err != nil {
		return err
	}
	cp, g := &c.Capture, &c.Cutover.Gate
	positive := []struct {
		path string
		v    time.Duration
	}{{"capture.poll_interval", time.Duration(cp.PollInterval)}, {"capture.retention", time.Duration(cp.Retention)},
		{"capture.delivery_grace", time.Duration(cp.DeliveryGrace)}, {"capture.consumer_lease", time.Duration(cp.ConsumerLease)},
		{"reconcile.lag_grace", time.Duration(c.Reconcile.LagGrace)}, {"cutover.gate.within", time.Duration(g.Within)},
		{"cutover.command_timeout", time.Duration(c.Cutover.CommandTimeout)}}
	for _, p := range positive {
		if p.v <= 0 {
			return settingf(p.path, "must be a positive duration, got %s", p.v)
		}
	}
	switch {
	case cp.BatchSize < 0:
		return settingf("capture.batch_size", "must not be negative, got %d", cp.BatchSize)
	case cp.BatchSize > 100000:
		return settingf("capture.batch_size", "is %d: at most 100000 changes go in one batch", cp.BatchSize)
	case cp.MaxText < -1:
		return settingf("capture.max_text_bytes", "is %d: give a byte count, or -1 for no cap", cp.MaxText)
	case c.Reconcile.DateTolerance < 0:
		return settingf("reconcile.date_tolerance", "must not be negative, got %s", time.Duration(c.Reconcile.DateTolerance))
	case g.MinConsistency <= 0 || g.MinConsistency > 1:
		return settingf("cutover.gate.min_consistency", "is %v: give a fraction from 0 to 1 (0.999 is 99.9%%)", g.MinConsistency)
	case g.Runs < 1 || g.Runs > 1000:
		return settingf("cutover.gate.runs", "is %d: give the number of clean reconcile runs the gate needs, 1 or more", g.Runs)
	case g.MinSpan < 0 || g.MinSpan > g.Within:
		return settingf("cutover.gate.min_span", "is %s: the runs must span between 0 and cutover.gate.within (%s)", time.Duration(g.MinSpan), time.Duration(g.Within))
	case c.Shadow.Concurrency < 0:
		return settingf("shadow.concurrency", "must not be negative, got %d", c.Shadow.Concurrency)
	case c.HTTP.Listen != "" && !strings.Contains(c.HTTP.Listen, ":"):
		return settingf("http.listen", "%q is not host:port (127.0.0.1:8080, or :8080 for every interface)", c.HTTP.Listen)
	}
	if _, port, err := net.SplitHostPort(c.HTTP.Listen); err != nil || port == "" {
		return settingf("http.listen", "%q is not host:port (127.0.0.1:8080, or :8080 for every interface)", c.HTTP.Listen)
	}
	for i := range c.Reconcile.Expected {
		if err := c.Reconcile.Expected[i].Validate(); err != nil {
			return settingf(fmt.Sprintf("reconcile.expected[%d]", i), "%v", err)
		}
	}
	if p := c.Cutover.ConflictPolicy; p != cutover.PolicyAlert && p != cutover.PolicyRevert {
		return settingf("cutover.conflict_policy", "%q is not alert or revert", p)
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		return settingf("http.tls_cert_file", "http.tls_cert_file and http.tls_key_file go together: set both, or neither")
	}
	if err := c.CaptureConfig().Validate(); err != nil {
		return err
	}
	return c.validateReferences()
}

// validateReferences checks what the settings name: the definitions files
// exist and parse, shadow.definition selects one, and every phase the
// mapping, the write rules and the expected rules name is a phase of it.
func (c *Config) validateReferences() error {
	for i, p := range c.Definitions {
		if _, err := c.definitionFile(p); err != nil {
			return settingf(fmt.Sprintf("definitions[%d]", i), "%v", err)
		}
	}
	_, def, err := c.LoadDefinitions()
	if err != nil {
		if strings.HasPrefix(err.Error(), "error in config") {
			return settingf("shadow.definition", "%v", errors.Unwrap(err))
		}
		return settingf("definitions", "%v", err)
	}
	known := def.PhaseIDs()
	unknown := func(path string, p dtetype.Phase, hint string) error {
		return settingf(path, "%q is not a phase of %s (phases: %v)%s", p, def.Key(), known, hint)
	}
	for label, p := range c.Legacy.Phases.All() {
		if !slices.Contains(known, p) {
			return unknown("legacy.phases", p, fmt.Sprintf(": map label %q to one of them, or list it in legacy.ignore_phases", label))
		}
	}
	for p, deps := range c.Legacy.Write.Gates {
		for _, d := range append([]dtetype.Phase{p}, deps...) {
			if !slices.Contains(known, d) {
				return unknown("legacy.write.gates", d, "")
			}
		}
	}
	for a, b := range c.Legacy.Write.StartOnComplete {
		for _, d := range []dtetype.Phase{a, b} {
			if !slices.Contains(known, d) {
				return unknown("legacy.write.start_on_complete", d, "")
			}
		}
	}
	for i, r := range c.Reconcile.Expected {
		for _, p := range r.Phases {
			if !slices.Contains(known, p) {
				return unknown(fmt.Sprintf("reconcile.expected[%d].phases", i), p, "")
			}
		}
	}
	return nil
}

// Path returns the file the configuration came from.
func (c *Config) Path() string { return c.path }

// CaptureConfig returns the capture settings in the adapter's terms.
func (c *Config) CaptureConfig() *adapter.CaptureConfig {
	return &adapter.CaptureConfig{Schema: c.Capture.Schema, Table: c.Legacy.Name, Key: c.Legacy.Key, Trigger: c.Capture.Trigger,
		Mode: c.Capture.Mode, Logical: c.Logical(), Legacy: &c.Legacy}
}

// Logical returns the log-based capture settings, nil in trigger mode.
func (c *Config) Logical() *adapter.Logical {
	if c.Capture.Mode != adapter.ModeLogical {
		return nil
	}
	return &adapter.Logical{Slot: c.Capture.Slot, Publication: cmp.Or(c.Capture.Publication, c.Capture.Schema+"_capture")}
}

// ReaderConfig returns the reader settings; the caller adds logger and metrics.
func (c *Config) ReaderConfig() *adapter.ReaderConfig {
	return &adapter.ReaderConfig{BatchSize: c.Capture.BatchSize, PollInterval: time.Duration(c.Capture.PollInterval),
		Retention: time.Duration(c.Capture.Retention), ConsumerLease: time.Duration(c.Capture.ConsumerLease), Logical: c.Logical()}
}

// Store returns the bridge schema on pool.
func (c *Config) Store(pool *pgxpool.Pool) *store.Store { return store.New(pool, c.Capture.Schema) }

// ReconcileOptions returns reconcile options for this configuration.
// Callers that hold the selected definition set Order to its phases.
func (c *Config) ReconcileOptions(pool *pgxpool.Pool) reconcile.Options {
	return reconcile.Options{Store: c.Store(pool), Table: &c.Legacy, Logical: c.Logical(),
		LagGrace: time.Duration(c.Reconcile.LagGrace), DateTolerance: time.Duration(c.Reconcile.DateTolerance),
		Expected: c.Reconcile.Expected, Retention: time.Duration(c.Capture.Retention)}
}

// GateConfig returns the gate settings.
func (c *Config) GateConfig() cutover.GateConfig {
	g := c.Cutover.Gate
	return cutover.GateConfig{Runs: g.Runs, Within: time.Duration(g.Within), MinSpan: time.Duration(g.MinSpan), MinConsistency: g.MinConsistency}
}

// Token reads the bearer token, or returns "" when none is configured. A
// token file readable by group or others is refused.
func (c *Config) Token() (string, error) {
	if c.HTTP.TokenFile == "" {
		return "", nil
	}
	fi, err := os.Stat(c.HTTP.TokenFile)
	if err != nil {
		return "", fmt.Errorf("error reading http.token_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("http.token_file %s is readable by group or others (mode %04o): chmod 600 %s", c.HTTP.TokenFile, fi.Mode().Perm(), c.HTTP.TokenFile)
	}
	b, err := os.ReadFile(c.HTTP.TokenFile)
	if err != nil {
		return "", fmt.Errorf("error reading http.token_file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 {
		return "", fmt.Errorf("the token in %s is shorter than 16 characters: use a long random one", c.HTTP.TokenFile)
	}
	return t, nil
}

// Translator returns a translator for the legacy table. known lists the
// phases of the workflow definitions, if any.
func (c *Config) Translator(known []dtetype.Phase) (*legacy.Translator, error) {
	return legacy.NewTranslator(&c.Legacy, &legacy.TranslatorConfig{Known: known, MaxText: c.Capture.MaxText})
}

// LoadDefinitions loads the configured definition files and returns them
// with the one selected by shadow.definition.
func (c *Config) LoadDefinitions() ([]*dtetype.Definition, *dtetype.Definition, error) {
	paths := c.Definitions
	if len(paths) == 0 {
		paths = shadow.BuiltinDefinitionFiles()
	}
	resolved := make([]string, len(paths))
	for i, p := range paths {
		resolved[i] = p
		if r, err := c.definitionFile(p); err == nil {
			resolved[i] = r
		}
	}
	defs, err := shadow.LoadDefinitions(resolved...)
	if err != nil {
		return nil, nil, err
	}
	sel, err := Select(defs, c.Shadow.Definition)
	if err != nil {
		return nil, nil, fmt.Errorf("error in config %s: %w", c.path, err)
	}
	if err := c.CheckAttributes(sel); err != nil {
		return nil, nil, err
	}
	return defs, sel, nil
}

// CheckAttributes checks that every report attribute d's when conditions
// test is configured (legacy.attributes): without it, a conditional phase
// would silently never apply.
func (c *Config) CheckAttributes(d *dtetype.Definition) error {
	for _, name := range slices.Sorted(maps.Keys(d.WhenAttributes())) {
		if _, ok := c.Legacy.Attributes[name]; !ok {
			return fmt.Errorf("%s: the when conditions of %v test report attribute %q, which legacy.attributes does not configure: "+
				"add legacy.attributes.%s with the table, key (report id column) and column it comes from", d.Key(), d.WhenAttributes()[name], name, name)
		}
	}
	return nil
}

// definitionFile resolves a definitions entry: a file next to the config,
// a path as given, or a shipped definition (definitions/NAME.yaml).
func (c *Config) definitionFile(p string) (string, error) {
	if !filepath.IsAbs(p) && c.path != "" && !strings.HasPrefix(c.path, "examples/") {
		if near := filepath.Join(filepath.Dir(c.path), p); fileExists(near) {
			return near, nil
		}
	}
	if fileExists(p) || slices.Contains(shadow.BuiltinDefinitionFiles(), filepath.ToSlash(filepath.Clean(p))) {
		return p, nil
	}
	where := "next to the config"
	if c.path == "" || strings.HasPrefix(c.path, "examples/") {
		where = "in the working directory"
	}
	return "", fmt.Errorf("file %q not found (%s, as given, or shipped: %s)", p, where, strings.Join(shadow.BuiltinDefinitionFiles(), ", "))
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Select picks a definition by id (its highest version) or id@version.
func Select(defs []*dtetype.Definition, want string) (*dtetype.Definition, error) {
	if want == "" {
		if len(defs) == 1 {
			return defs[0], nil
		}
		var ids []string
		for _, d := range defs {
			ids = append(ids, d.Key())
		}
		return nil, fmt.Errorf("shadow.definition is not set and %d definitions are loaded (%s): choose one", len(defs), strings.Join(ids, ", "))
	}
	id, version, _ := strings.Cut(want, "@")
	var best *dtetype.Definition
	for _, d := range defs {
		if d.ID != id || (version != "" && d.Version != version) {
			continue
		}
		if best == nil || versionLess(best.Version, d.Version) {
			best = d
		}
	}
	if best == nil {
		return nil, fmt.Errorf("shadow.definition %q is not among the loaded definitions", want)
	}
	return best, nil
}

// versionLess compares dotted versions numerically where it can.
func versionLess(a, b string) bool {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(as), len(bs)); i++ {
		var x, y string
		if i < len(as) {
			x = as[i]
		}
		if i < len(bs) {
			y = bs[i]
		}
		xi, errx := strconv.Atoi(x)
		yi, erry := strconv.Atoi(y)
		switch {
		case errx == nil && erry == nil && xi != yi:
			return xi < yi
		case (errx != nil || erry != nil) && x != y:
			return x < y
		}
	}
	return false
}
