package dtetype

import (
	"hash/fnv"
	"strconv"
	"time"
)

// Cutover modes of a phase.
const (
	// ModeLegacy: the phase is not mirrored; legacy alone runs it.
	ModeLegacy = "legacy"
	// ModeShadow: mirrored and compared; legacy is authoritative.
	ModeShadow = "shadow"
	// ModeNew: the new engine is authoritative for the reports it covers.
	ModeNew = "new"
)

// Modes returns every cutover mode.
func Modes() []string { return []string{ModeLegacy, ModeShadow, ModeNew} }

// Mode is a phase's cutover mode.
type Mode struct {
	Phase Phase  `json:"phase"`
	Mode  string `json:"mode"`
	// Percent is the share of reports on the new engine, for mode new.
	Percent   int        `json:"percent"`
	UpdatedAt *time.Time `json:"updated_at"`
	UpdatedBy string     `json:"updated_by,omitempty"`
}

// Bucket places a report in 0..9999, stably: the percentage split of a
// phase on new covers the reports whose bucket is below percent × 100.
func Bucket(k Key) int {
	h := fnv.New64a()
	h.Write([]byte(strconv.FormatInt(k.CycleID, 10) + "/" + strconv.FormatInt(k.ReportID, 10)))
	return int(h.Sum64() % 10000)
}

// Covers reports whether mode m puts report k on the new engine; promoted
// says the report is pinned there.
func (m Mode) Covers(k Key, promoted bool) bool {
	return m.Mode == ModeNew && (promoted || Bucket(k) < m.Percent*100)
}

// ModeOf returns one phase's mode from a set of modes; a phase never set is
// in shadow mode.
func ModeOf(modes map[Phase]Mode, p Phase) Mode {
	if m, ok := modes[p]; ok {
		return m
	}
	return Mode{Phase: p, Mode: ModeShadow}
}
