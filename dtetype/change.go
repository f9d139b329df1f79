package dtetype

import "time"

// Op is the kind of a legacy change.
type Op string

// The change operations. OpSnapshot is a row read by a backfill, not a write.
const (
	OpInsert   Op = "insert"
	OpUpdate   Op = "update"
	OpDelete   Op = "delete"
	OpSnapshot Op = "snapshot"
)

// Origins of a change: the legacy application, or the bridge's own
// write-back.
const (
	OriginLegacy = "legacy"
	OriginBridge = "dtebridge"
)

// Override is a legacy override of state and/or schedule status.
type Override struct {
	State  State      `json:"state,omitempty"`
	Status Status     `json:"status,omitempty"`
	Reason string     `json:"reason,omitempty"`
	By     string     `json:"by,omitempty"`
	At     *time.Time `json:"at,omitempty"`
}

// PhaseChange is one legacy row change in canonical terms: what the bridge
// delivers to the shadow. State and Status are the effective values (the
// override if set, else the base); BaseState and BaseStatus are the row's
// own columns.
type PhaseChange struct {
	// EventID is stable across redelivery: consumers deduplicate by it.
	EventID string `json:"event_id"`
	// Seq orders a key's changes: later changes have larger values.
	Seq int64 `json:"seq"`
	Key Key   `json:"key"`
	// RowID is the legacy row's primary key, rendered as text. A key can
	// have several rows for one phase where legacy has duplicates.
	RowID string `json:"row_id"`
	Phase Phase  `json:"phase"`
	Op    Op     `json:"op"`

	State      State     `json:"state"`
	Status     Status    `json:"status"`
	BaseState  State     `json:"base_state"`
	BaseStatus Status    `json:"base_status"`
	Override   *Override `json:"override,omitempty"`

	PlannedStart *time.Time `json:"planned_start,omitempty"`
	PlannedEnd   *time.Time `json:"planned_end,omitempty"`
	ActualStart  *time.Time `json:"actual_start,omitempty"`
	ActualEnd    *time.Time `json:"actual_end,omitempty"`
	StartedBy    string     `json:"started_by,omitempty"`
	CompletedBy  string     `json:"completed_by,omitempty"`
	// StartedByRole and CompletedByRole are the actors' roles as legacy
	// names them, where the bridge can look them up.
	StartedByRole   string `json:"started_by_role,omitempty"`
	CompletedByRole string `json:"completed_by_role,omitempty"`

	// LegacyPhase is the phase label as legacy wrote it.
	LegacyPhase string `json:"legacy_phase"`
	// LegacyStatus is the legacy status column, where one exists.
	LegacyStatus string `json:"legacy_status,omitempty"`
	// TxTime is the start time of the legacy transaction; TxID its id, so
	// the changes of one transaction can be handled together (empty for
	// rows a backfill or re-drive read).
	TxTime time.Time `json:"tx_time"`
	TxID   string    `json:"tx_id,omitempty"`
	// CapturedAt is when the capture trigger recorded the change.
	CapturedAt time.Time `json:"captured_at"`
	// Origin is OriginLegacy or OriginBridge.
	Origin string `json:"origin"`
}
