package adapter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/synapsedte/dtebridge/dtetype"
	"github.com/synapsedte/dtebridge/store"
)

// ErrNoLeader means no capture leader runs to serve a re-drive: no
// dtebridge serve is running against this database.
var ErrNoLeader = errors.New("no capture leader is running (start dtebridge serve)")

// RedriveResult is the outcome of re-drives.
type RedriveResult struct {
	// Applied are the reports whose shadow applied the re-drive.
	Applied []dtetype.Key `json:"applied"`
	// Failed are the reports the leader could not re-drive, and why.
	Failed map[string]string `json:"failed"`
	// Pending are the reports still waiting when the wait ended; the
	// running bridge finishes them by itself.
	Pending []dtetype.Key `json:"pending"`
}

// Redrive is the one way to rebuild reports' shadows from legacy truth
// (repair, rollback, quarantine resync, definition migration): it asks the
// capture leader, which reads the reports' rows at an epoch boundary and
// delivers them through the mirror (search attributes, batch splitting,
// the stream's sequence numbers), and waits up to wait for the shadow to
// apply them. Without a running leader it requests nothing and returns
// ErrNoLeader.
func Redrive(ctx context.Context, st *store.Store, req store.RedriveRequest, wait time.Duration) (*RedriveResult, error) {
	if len(req.Keys) == 0 {
		return &RedriveResult{Failed: map[string]string{}}, nil
	}
	alive, err := st.LeaderAlive(ctx, store.MirrorConsumer)
	if err != nil {
		return nil, err
	}
	if !alive {
		return nil, fmt.Errorf("%w: nothing was re-driven", ErrNoLeader)
	}
	ids, err := st.RequestRedrives(ctx, req)
	if err != nil {
		return nil, err
	}
	return AwaitRedrives(ctx, st, ids, wait)
}

// AwaitRedrives wakes the capture leader and waits up to wait for the
// re-drives ids to be applied by the shadow.
func AwaitRedrives(ctx context.Context, st *store.Store, ids []int64, wait time.Duration) (*RedriveResult, error) {
	res := &RedriveResult{Failed: map[string]string{}, Applied: []dtetype.Key{}, Pending: []dtetype.Key{}}
	if len(ids) == 0 {
		return res, nil
	}
	if err := st.WakeCapture(ctx); err != nil {
		return nil, err
	}
	progress, err := st.WaitRedrives(ctx, ids, wait)
	if err != nil {
		return nil, err
	}
	for _, p := range progress {
		switch {
		case p.Error != "":
			res.Failed[p.Key.String()] = p.Error
		case p.Applied:
			res.Applied = append(res.Applied, p.Key)
		default:
			res.Pending = append(res.Pending, p.Key)
		}
	}
	return res, nil
}
