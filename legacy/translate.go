package legacy

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/synapsedte/dtebridge/dtetype"
)

// Quarantine reasons.
const (
	ReasonUnknownLabel = "unknown_label"
	ReasonNullKey      = "null_key"
	ReasonUnparseable  = "unparseable_row"
	ReasonUnknownPhase = "unknown_phase"
	ReasonHeld         = "held"
	// ReasonTooLarge is a change Temporal refuses for its size.
	ReasonTooLarge = "too_large"
)

// Reasons returns every quarantine reason.
func Reasons() []string {
	return []string{ReasonUnknownLabel, ReasonNullKey, ReasonUnparseable, ReasonUnknownPhase, ReasonHeld, ReasonTooLarge}
}

// TranslateError says why a change cannot be translated; the change goes to
// quarantine with it.
type TranslateError struct {
	Reason string
	Detail string
}

func (e *TranslateError) Error() string { return e.Reason + ": " + e.Detail }

// RawChange is a captured change as the capture trigger recorded it, or a
// row read by a backfill (Op 'S', with RowKey its primary key as text).
type RawChange struct {
	ID         int64           `json:"id,omitempty"`
	Op         string          `json:"op"`
	Source     string          `json:"source"`
	RowKey     string          `json:"row_key,omitempty"`
	Old        json.RawMessage `json:"old_row,omitempty"`
	New        json.RawMessage `json:"new_row,omitempty"`
	Origin     string          `json:"origin"`
	TxTime     time.Time       `json:"tx_time"`
	CapturedAt time.Time       `json:"captured_at"`
	// TxID is the legacy transaction's id; empty for rows read by a
	// backfill or re-drive.
	TxID string `json:"tx_id,omitempty"`
	// Logged means log-based capture wrote the change to the change log
	// after legacy's transaction committed, in a transaction of its own.
	Logged bool `json:"logged,omitempty"`
}

// Translator turns raw changes into canonical phase changes.
type Translator struct {
	m       *Table
	key     []string
	ignore  map[string]bool
	known   map[dtetype.Phase]bool
	maxText int
}

// TranslatorConfig configures a Translator. A nil config is ready to use.
type TranslatorConfig struct {
	// Known, if not empty, lists the phases the workflow definitions know;
	// a change to any other phase is quarantined.
	Known []dtetype.Phase
	// MaxText caps, in bytes, the free text a change carries into the
	// shadow (the override reason, and actor ids): longer values are cut
	// at a character boundary and marked. The raw row keeps everything.
	// Default: 1024. Negative: no cap.
	MaxText int
}

// DefaultMaxText is the cap on free text carried into the shadow.
const DefaultMaxText = 1024

// NewTranslator returns a translator for the table t.
func NewTranslator(t *Table, cfg *TranslatorConfig) (*Translator, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &TranslatorConfig{}
	}
	t = t.Clone()
	tr := &Translator{m: t, key: t.Key, ignore: map[string]bool{}, maxText: cmp.Or(cfg.MaxText, DefaultMaxText)}
	for _, l := range t.IgnorePhases {
		tr.ignore[l] = true
	}
	if len(cfg.Known) > 0 {
		tr.known = map[dtetype.Phase]bool{}
		for _, p := range cfg.Known {
			tr.known[p] = true
		}
	}
	return tr, nil
}

// capText cuts s to the translator's cap, at a character boundary, and
// says how much was cut.
func (t *Translator) capText(s string) string {
	if t.maxText < 0 || len(s) <= t.maxText {
		return s
	}
	cut := t.maxText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("…[%d bytes cut]", len(s)-cut)
}

// Table returns the table the translator reads.
func (t *Translator) Table() *Table { return t.m }

// rowJSON is the row a change is about: the new row, or the old one for a
// delete.
func (r *RawChange) rowJSON() json.RawMessage {
	if len(r.New) > 0 && !bytes.Equal(r.New, []byte("null")) {
		return r.New
	}
	return r.Old
}

// Result is the outcome of translating one raw change.
type Result struct {
	// Change is the canonical change, unless Err or Ignored.
	Change *dtetype.PhaseChange
	// Key is the change's (cycle, report), when it could be read.
	Key    dtetype.Key
	HasKey bool
	// Ignored means the change is to a phase the mapping ignores.
	Ignored bool
	// Err says why the change cannot be translated.
	Err *TranslateError
}

// Translate turns raw into a canonical phase change.
func (t *Translator) Translate(raw *RawChange) Result {
	var res Result
	row, err := decodeRow(raw.rowJSON())
	if err != nil {
		res.Err = &TranslateError{ReasonUnparseable, fmt.Sprintf("row is not a JSON object: %v", err)}
		return res
	}
	if row == nil {
		res.Err = &TranslateError{ReasonUnparseable, "change has neither an old nor a new row"}
		return res
	}
	c := &t.m.Columns
	if cy, err1 := intValue(row, c.Cycle); err1 == nil && cy != nil {
		if rp, err2 := intValue(row, c.Report); err2 == nil && rp != nil {
			res.Key, res.HasKey = dtetype.Key{CycleID: *cy, ReportID: *rp}, true
		}
	}
	if l, ok := row[c.Phase].(string); ok && t.ignore[l] {
		res.Ignored = true
		return res
	}
	pc, err := t.translate(raw, row)
	if err != nil {
		var te *TranslateError
		if !errors.As(err, &te) {
			te = &TranslateError{ReasonUnparseable, err.Error()}
		}
		res.Err = te
		return res
	}
	res.Change = pc
	return res
}

func (t *Translator) translate(raw *RawChange, row map[string]any) (*dtetype.PhaseChange, error) {
	c := &t.m.Columns
	pc := &dtetype.PhaseChange{Origin: raw.Origin, TxTime: raw.TxTime, TxID: raw.TxID, CapturedAt: raw.CapturedAt}
	if raw.Op == "S" {
		// A row read by a backfill or a repair: its time is when legacy last
		// wrote it, which is when legacy last computed its schedule status.
		if at, err := timeValue(row, c.UpdatedAt); err == nil && at != nil {
			pc.TxTime = *at
		}
	}
	switch raw.Op {
	case "I":
		pc.Op = dtetype.OpInsert
	case "U":
		pc.Op = dtetype.OpUpdate
	case "D":
		pc.Op = dtetype.OpDelete
	case "S":
		pc.Op = dtetype.OpSnapshot
	default:
		return nil, &TranslateError{ReasonUnparseable, fmt.Sprintf("unknown operation %q", raw.Op)}
	}

	cycle, err := intValue(row, c.Cycle)
	if err != nil {
		return nil, err
	}
	report, err := intValue(row, c.Report)
	if err != nil {
		return nil, err
	}
	if cycle == nil || report == nil {
		return nil, &TranslateError{ReasonNullKey, fmt.Sprintf("%s or %s is NULL or missing", c.Cycle, c.Report)}
	}
	pc.Key = dtetype.Key{CycleID: *cycle, ReportID: *report}
	ids := make([]string, len(t.key))
	for i, k := range t.key {
		v, ok := row[k]
		if !ok || v == nil {
			return nil, &TranslateError{ReasonNullKey, fmt.Sprintf("primary-key column %s is NULL or missing", k)}
		}
		ids[i] = fmt.Sprint(v)
	}
	pc.RowID = strings.Join(ids, ",")

	phase, err := label(row, c.Phase, true)
	if err != nil {
		return nil, err
	}
	pc.LegacyPhase = phase
	p, ok := t.m.Phases.Get(phase)
	if !ok {
		return nil, &TranslateError{ReasonUnknownLabel, fmt.Sprintf("phase label %q is not in legacy.phases: add it to the mapping (or to legacy.ignore_phases)", short(phase))}
	}
	if t.known != nil && !t.known[p] {
		return nil, &TranslateError{ReasonUnknownPhase, fmt.Sprintf("phase %q (label %q) is not in the workflow definitions", p, phase)}
	}
	pc.Phase = p

	if pc.BaseState, err = t.state(row, c.State, true); err != nil {
		return nil, err
	}
	if pc.BaseStatus, err = t.status(row, c.Status, true); err != nil {
		return nil, err
	}
	so, err := t.state(row, c.StateOverride, false)
	if err != nil {
		return nil, err
	}
	to, err := t.status(row, c.StatusOverride, false)
	if err != nil {
		return nil, err
	}
	pc.State, pc.Status = cmpOr(so, pc.BaseState), cmpOr(to, pc.BaseStatus)
	reason, err := label(row, c.OverrideReason, false)
	if err != nil {
		return nil, err
	}
	by, err := textValue(row, c.OverrideBy)
	if err != nil {
		return nil, err
	}
	at, err := timeValue(row, c.OverrideAt)
	if err != nil {
		return nil, err
	}
	if so != "" || to != "" || reason != "" || by != "" || at != nil {
		pc.Override = &dtetype.Override{State: so, Status: to, Reason: t.capText(reason), By: t.capText(by), At: at}
	}

	for _, f := range []struct {
		dst **time.Time
		col string
	}{{&pc.PlannedStart, c.PlannedStart}, {&pc.PlannedEnd, c.PlannedEnd}, {&pc.ActualStart, c.ActualStart}, {&pc.ActualEnd, c.ActualEnd}} {
		if *f.dst, err = timeValue(row, f.col); err != nil {
			return nil, err
		}
	}
	if pc.StartedBy, err = textValue(row, c.StartedBy); err != nil {
		return nil, err
	}
	if pc.CompletedBy, err = textValue(row, c.CompletedBy); err != nil {
		return nil, err
	}
	pc.StartedBy, pc.CompletedBy = t.capText(pc.StartedBy), t.capText(pc.CompletedBy)
	if c.LegacyStatus != "" {
		if pc.LegacyStatus, err = label(row, c.LegacyStatus, false); err != nil {
			return nil, err
		}
		pc.LegacyStatus = t.capText(pc.LegacyStatus)
	}
	return pc, nil
}

func cmpOr[T comparable](a, b T) T {
	var zero T
	if a != zero {
		return a
	}
	return b
}

func (t *Translator) state(row map[string]any, col string, required bool) (dtetype.State, error) {
	l, err := label(row, col, required)
	if err != nil || l == "" {
		return "", err
	}
	s, ok := t.m.States.Get(l)
	if !ok {
		return "", &TranslateError{ReasonUnknownLabel, fmt.Sprintf("%s label %q is not in legacy.states: add it to the mapping", col, short(l))}
	}
	return s, nil
}

func (t *Translator) status(row map[string]any, col string, required bool) (dtetype.Status, error) {
	l, err := label(row, col, required)
	if err != nil || l == "" {
		return "", err
	}
	s, ok := t.m.Statuses.Get(l)
	if !ok {
		return "", &TranslateError{ReasonUnknownLabel, fmt.Sprintf("%s label %q is not in legacy.statuses: add it to the mapping", col, short(l))}
	}
	return s, nil
}

func decodeRow(b json.RawMessage) (map[string]any, error) {
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var row map[string]any
	if err := d.Decode(&row); err != nil {
		return nil, err
	}
	return row, nil
}

// label reads a text column. A required column must be present and not NULL.
func label(row map[string]any, col string, required bool) (string, error) {
	v, ok := row[col]
	if !ok || v == nil {
		if required {
			return "", &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s is NULL or missing (check legacy.columns)", col)}
		}
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %v, not text", col, short(fmt.Sprint(v)))}
	}
	return s, nil
}

func intValue(row map[string]any, col string) (*int64, error) {
	v, ok := row[col]
	if !ok || v == nil {
		return nil, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return nil, &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %v, not an integer", col, short(fmt.Sprint(v)))}
	}
	i, err := n.Int64()
	if err != nil {
		return nil, &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %v, not an integer", col, short(fmt.Sprint(v)))}
	}
	return &i, nil
}

// textValue reads a user id or other scalar as text.
func textValue(row map[string]any, col string) (string, error) {
	v, ok := row[col]
	if !ok || v == nil {
		return "", nil
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	}
	return "", &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %v, not a scalar", col, short(fmt.Sprint(v)))}
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999-07:00:00", "2006-01-02T15:04:05.999999999", time.DateOnly}

// timeValue reads a date or timestamp as PostgreSQL renders it in JSON. Its
// whole range translates: infinity, -infinity, years before 1 (BC) and
// after 9999 are carried as dtetype's bounds.
func timeValue(row map[string]any, col string) (*time.Time, error) {
	v, ok := row[col]
	if !ok || v == nil {
		return nil, nil
	}
	s, ok := v.(string)
	if !ok {
		return nil, &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %v, not a date or time", col, short(fmt.Sprint(v)))}
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "infinity":
		t := dtetype.MaxTime
		return &t, nil
	case s == "-infinity", strings.HasSuffix(s, " BC"):
		t := dtetype.MinTime
		return &t, nil
	}
	if year, _, ok := strings.Cut(s, "-"); ok && len(year) > 4 && strings.Trim(year, "0123456789") == "" {
		t := dtetype.MaxTime // after 9999
		return &t, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			t = dtetype.ClampTime(t.UTC())
			return &t, nil
		}
	}
	return nil, &TranslateError{ReasonUnparseable, fmt.Sprintf("column %s holds %q, not a date or time", col, short(s))}
}

// short cuts a value quoted in an error message, which goes to logs.
func short(s string) string {
	if len(s) <= 80 {
		return s
	}
	cut := 80
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
