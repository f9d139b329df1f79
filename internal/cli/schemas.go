package cli

import (
	"github.com/synapsedte/dtebridge/adapter"
	"github.com/synapsedte/dtebridge/cutover"
	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/internal/defmigrate"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/preflight"
	"github.com/synapsedte/dtebridge/internal/serve"
	"github.com/synapsedte/dtebridge/shadow"
	"github.com/synapsedte/dtebridge/store"
)

// The JSON the commands print, where no package type says it all.
type (
	// refusalJSON is a refusal with --format json: a gate's (exit 4, with
	// its figures) or a definition rule's (exit 3, with the rule).
	refusalJSON struct {
		Refused bool                `json:"refused"`
		Message string              `json:"message"`
		Rule    string              `json:"rule,omitempty"`
		Gate    *cutover.GateResult `json:"gate,omitempty"`
	}
	// cutoverSetJSON is cutover set's outcome, with the re-drives it
	// waited for.
	cutoverSetJSON struct {
		Result   *cutover.Result        `json:"result"`
		Redrives *adapter.RedriveResult `json:"redrives,omitempty"`
	}
	// cutoverStatusLine is one phase of cutover status.
	cutoverStatusLine struct {
		dtetype.Mode
		Gate *cutover.GateResult `json:"gate"`
	}
	// tailRejectedJSON is a line of capture tail for a change that does
	// not translate.
	tailRejectedJSON struct {
		Rejected *adapter.Rejected `json:"rejected"`
	}
)

// jsonOutput is one JSON output of the command line, documented by a
// schema in schemas/ (TestJSONSchemas keeps each current and checks the
// commands' output against it).
type jsonOutput struct {
	Name, Command string
	Value         any
}

// jsonOutputs lists every JSON output but reconcile's, whose schema is
// reconcile/report.schema.json.
var jsonOutputs = []jsonOutput{
	{"status", "dtebridge status --format json", statusReport{}},
	{"check", "dtebridge check --format json", preflight.Report{}},
	{"quarantine-list", "dtebridge quarantine list --format json", []store.QuarantineEntry{}},
	{"quarantine-retry", "dtebridge quarantine retry --format json", adapter.RetryResult{}},
	{"quarantine-resolve", "dtebridge quarantine resolve --format json", adapter.Resolution{}},
	{"capture-tail-change", "dtebridge capture tail (a translated change)", dtetype.PhaseChange{}},
	{"capture-tail-rejected", "dtebridge capture tail (a change that does not translate)", tailRejectedJSON{}},
	{"findings", "dtebridge findings --format json", shadow.FindingsReport{}},
	{"cutover-status", "dtebridge cutover status --format json", []cutoverStatusLine{}},
	{"cutover-set", "dtebridge cutover set --format json", cutoverSetJSON{}},
	{"cutover-history", "dtebridge cutover history --format json", []store.LogEntry{}},
	{"cutover-reports", "dtebridge cutover reports --format json (and GET /api/v1/cutover/{phase}/reports)", cutover.OnNew{}},
	{"refusal", "a refusal with --format json: cutover set (exit 4), phase commands (exit 3)", refusalJSON{}},
	{"phase-command", "dtebridge phase ACTION --format json", shadow.CommandResult{}},
	{"definitions-migrate", "dtebridge definitions migrate --format json", defmigrate.Result{}},
	{"definitions-migrations", "dtebridge definitions migrations --format json", []store.DefinitionMigration{}},
	{"definition", "dtebridge definitions show --format json (and GET /api/v1/definitions/{id})", dtetype.Definition{}},
	{"legacy-simulate", "dtebridge legacy simulate --format json", legacysim.Summary{}},
	{"api-overview", "GET /api/v1/overview (the console's overview)", serve.Overview{}},
	{"api-divergences", "GET /api/v1/divergences?phase=&kind=&expected=yes|no&since=&after= (the console's divergences)", serve.Divergences{}},
	{"api-report", "GET /api/v1/reports/{cycle}/{report} (the console's report page)", serve.Report{}},
	{"api-cutover-board", "GET /api/v1/cutover/board (the console's cutover page)", serve.CutoverBoard{}},
	{"api-quarantine", "GET /api/v1/quarantine (the console's quarantine page)", serve.QuarantineView{}},
}
