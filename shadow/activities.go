package shadow

import (
	"context"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/store"
)

// Projection is a shadow workflow's state as written to the bridge schema.
type Projection struct {
	Key               dtetype.Key       `json:"key"`
	DefinitionID      string            `json:"definition_id"`
	DefinitionVersion string            `json:"definition_version"`
	Version           int64             `json:"version"`
	AppliedSeq        int64             `json:"applied_seq"`
	Applied           int64             `json:"applied"`
	ViolationCounts   map[string]int    `json:"violation_counts"`
	Violations        []Violation       `json:"violations"`
	Historical        []Violation       `json:"historical,omitempty"`
	Attributes        map[string]string `json:"attributes,omitempty"`
	Divergent         bool              `json:"divergent,omitempty"`
	Phases            []PhaseState      `json:"phases"`
}

func projectionOf(s *State) Projection {
	p := Projection{Key: s.Key, DefinitionID: s.DefinitionID, DefinitionVersion: s.DefinitionVersion,
		Version: s.ProjectionVersion, AppliedSeq: s.AppliedSeq, Applied: s.Applied,
		ViolationCounts: s.ViolationCounts, Violations: s.Violations, Historical: s.Historical, Attributes: s.Attributes,
		Divergent: s.Divergence != nil && s.Divergence.Divergent}
	for _, ps := range s.Phases {
		p.Phases = append(p.Phases, *ps)
	}
	return p
}

// Activities are the shadow workflow's activities. They hold the bridge
// schema; the workflow calls them with a nil receiver and the worker runs
// the registered instance.
type Activities struct {
	Store *store.Store
}

// Project writes a workflow's projection into the bridge schema. It is
// idempotent: a write whose version is not newer than the stored one
// changes nothing.
func (a *Activities) Project(ctx context.Context, p Projection) error {
	sp := store.Projection{Key: p.Key, DefinitionID: p.DefinitionID, DefinitionVersion: p.DefinitionVersion, Version: p.Version,
		AppliedSeq: p.AppliedSeq, Applied: p.Applied, ViolationCounts: p.ViolationCounts, Recent: p.Violations, Historical: p.Historical, Attributes: p.Attributes, Divergent: p.Divergent}
	if p.Violations == nil {
		sp.Recent = []Violation{}
	}
	if p.Historical == nil {
		sp.Historical = []Violation{}
	}
	for _, ps := range p.Phases {
		sp.Phases = append(sp.Phases, ps.Projected())
	}
	return a.Store.Project(ctx, sp)
}

// Projected is the phase as its projection holds it: the one mapping from
// a workflow's state to the bridge schema, which the deep check also uses
// to compare the two.
func (ps *PhaseState) Projected() store.ProjectedPhase {
	var at *time.Time
	if !ps.UpdatedAt.IsZero() {
		t := ps.UpdatedAt
		at = &t
	}
	return store.ProjectedPhase{Phase: ps.Phase, RowID: ps.RowID, Rows: ps.Rows, State: ps.State, BaseState: ps.BaseState,
		LegacyStatus: ps.LegacyStatus, Status: ps.Status, Override: ps.Override, PlannedStart: ps.PlannedStart, PlannedEnd: ps.PlannedEnd,
		ActualStart: ps.ActualStart, ActualEnd: ps.ActualEnd, StartedBy: ps.StartedBy, CompletedBy: ps.CompletedBy,
		StatusColumn: ps.LegacyStatusColumn, LastEventID: ps.LastEventID, LastSeq: ps.LastSeq, TxTime: at}
}
