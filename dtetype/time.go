package dtetype

import "time"

// The bounds of the times the bridge carries. PostgreSQL's dates and
// timestamps run from 4713 BC to 294276 AD and include infinity and
// -infinity; the bridge carries a time through JSON (workflow payloads),
// which holds years 0 to 9999 only. A legacy value beyond the bounds, an
// infinity included, is carried as the bound: legacy and the shadow are
// compared with the same bounds, so such values translate, judge, project
// and reconcile like any other.
var (
	// MaxTime stands for infinity and every time after 9999.
	MaxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC)
	// MinTime stands for -infinity and every time before year 1 (BC).
	MinTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ClampTime bounds t to [MinTime, MaxTime].
func ClampTime(t time.Time) time.Time {
	switch {
	case t.After(MaxTime):
		return MaxTime
	case t.Before(MinTime):
		return MinTime
	}
	return t
}

// FormatTime renders a time for reports: RFC 3339 in UTC, and the bounds
// as infinity and -infinity.
func FormatTime(t time.Time) string {
	switch {
	case !t.Before(MaxTime):
		return "infinity"
	case !t.After(MinTime):
		return "-infinity"
	}
	return t.UTC().Format(time.RFC3339)
}
