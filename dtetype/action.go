package dtetype

// Actions of engine commands on one phase of one report, and of the legacy
// writes they become.
const (
	// ActionStart starts a phase.
	ActionStart = "start"
	// ActionComplete completes a phase.
	ActionComplete = "complete"
	// ActionOverride overrides a phase's state and/or schedule status.
	ActionOverride = "override"
	// ActionClearOverride clears an override.
	ActionClearOverride = "clear-override"
	// ActionReopen reopens a completed phase.
	ActionReopen = "reopen"
	// ActionRestore writes the engine's state of a phase back over the
	// legacy row: the revert conflict policy sends it, users do not.
	ActionRestore = "restore"
)

// Actions returns the actions users may send.
func Actions() []string {
	return []string{ActionStart, ActionComplete, ActionOverride, ActionClearOverride, ActionReopen}
}
