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
	DefaultBatchSize        = 500
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
	// Trigger is row or statement. Default: row.
	Trigger string `yaml:"trigger"`
	// BatchSize is the most changes per delivered batch. Default: 500.
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

// Cutover configures cutover gates and conflicts.
type Cutover struct {
	Gate struct {
		// Runs, Within and MinConsistency: defaults 3, 24h, 0.999.
		Runs           int      `yaml:"runs"`
		Within         Duration `yaml:"within"`
		MinConsistency float64  `yaml:"min_consistency"`
	} `yaml:"gate"`
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
}

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

// Parse decodes, resolves and validates configuration text; name labels
// errors.
func Parse(name string, b []byte) (*Config, error) {
	c := &Config{path: name}
	d := yaml.NewDecoder(bytes.NewReader(b))
	d.KnownFields(true)
	if err := d.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("error loading config %s: %w", name, err)
	}
	c.resolve()
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("error in config %s: %w", name, err)
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
	c.Cutover.ConflictPolicy = cmp.Or(c.Cutover.ConflictPolicy, DefaultConflictPolicy)
	c.Cutover.CommandTimeout = cmp.Or(c.Cutover.CommandTimeout, Duration(DefaultCommandTimeout))
	c.HTTP.Listen = cmp.Or(c.HTTP.Listen, DefaultListen)
}

func (c *Config) validate() error {
	if err := c.Legacy.Validate(); err != nil {
		return err
	}
	if c.Capture.BatchSize < 0 {
		return fmt.Errorf("capture.batch_size must not be negative, got %d", c.Capture.BatchSize)
	}
	for i := range c.Reconcile.Expected {
		if err := c.Reconcile.Expected[i].Validate(); err != nil {
			return fmt.Errorf("reconcile.expected[%d]: %w", i, err)
		}
	}
	if p := c.Cutover.ConflictPolicy; p != cutover.PolicyAlert && p != cutover.PolicyRevert {
		return fmt.Errorf("cutover.conflict_policy %q is not alert or revert", p)
	}
	if (c.HTTP.TLSCertFile == "") != (c.HTTP.TLSKeyFile == "") {
		return fmt.Errorf("http.tls_cert_file and http.tls_key_file go together: set both, or neither")
	}
	if c.Shadow.Concurrency < 0 {
		return fmt.Errorf("shadow.concurrency must not be negative, got %d", c.Shadow.Concurrency)
	}
	return c.CaptureConfig().Validate()
}

// Path returns the file the configuration came from.
func (c *Config) Path() string { return c.path }

// CaptureConfig returns the capture settings in the adapter's terms.
func (c *Config) CaptureConfig() *adapter.CaptureConfig {
	return &adapter.CaptureConfig{Schema: c.Capture.Schema, Table: c.Legacy.Name, Key: c.Legacy.Key, Trigger: c.Capture.Trigger,
		Legacy: &c.Legacy}
}

// ReaderConfig returns the reader settings; the caller adds logger and metrics.
func (c *Config) ReaderConfig() *adapter.ReaderConfig {
	return &adapter.ReaderConfig{BatchSize: c.Capture.BatchSize, PollInterval: time.Duration(c.Capture.PollInterval),
		Retention: time.Duration(c.Capture.Retention), ConsumerLease: time.Duration(c.Capture.ConsumerLease)}
}

// Store returns the bridge schema on pool.
func (c *Config) Store(pool *pgxpool.Pool) *store.Store { return store.New(pool, c.Capture.Schema) }

// ReconcileOptions returns reconcile options for this configuration.
func (c *Config) ReconcileOptions(pool *pgxpool.Pool) reconcile.Options {
	return reconcile.Options{Store: c.Store(pool), Table: &c.Legacy,
		LagGrace: time.Duration(c.Reconcile.LagGrace), DateTolerance: time.Duration(c.Reconcile.DateTolerance),
		Expected: c.Reconcile.Expected}
}

// GateConfig returns the gate settings.
func (c *Config) GateConfig() cutover.GateConfig {
	return cutover.GateConfig{Runs: c.Cutover.Gate.Runs, Within: time.Duration(c.Cutover.Gate.Within), MinConsistency: c.Cutover.Gate.MinConsistency}
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
		if !filepath.IsAbs(p) && c.path != "" && !strings.HasPrefix(c.path, "examples/") {
			if near := filepath.Join(filepath.Dir(c.path), p); fileExists(near) {
				resolved[i] = near
			}
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
