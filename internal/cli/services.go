package cli

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
)

// services are the PostgreSQL database and Temporal cluster a command works
// with: the ones the global flags name, or local ones it started itself.
type services struct {
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	// TemporalUI is the Web UI address of a local dev server, else "".
	TemporalUI string

	pg       *localpg.Cluster
	temporal *localtemporal.Server
}

type servicesOptions struct {
	// Database is the database to create in a local cluster.
	Database string
	// TemporalCLI is the temporal binary for a local dev server.
	TemporalCLI string
	// UI enables the local dev server's Web UI.
	UI bool
	// Report receives one line per service started.
	Report func(format string, args ...any)
}

// startServices starts whatever g does not point at, both at once. On error,
// whatever did start is stopped again.
func startServices(ctx context.Context, g *globals, o servicesOptions) (*services, error) {
	s := &services{DatabaseURL: g.DatabaseURL, TemporalAddress: g.Temporal.Address, TemporalNamespace: g.TemporalNamespace}
	var wg sync.WaitGroup
	var pgErr, tErr error
	if s.DatabaseURL == "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.pg, pgErr = localpg.Start(ctx, &localpg.Config{Logger: g.Logger})
			if pgErr == nil {
				s.DatabaseURL, pgErr = s.pg.CreateDatabase(ctx, o.Database)
			}
			if pgErr == nil {
				o.Report("Started local PostgreSQL on 127.0.0.1:%d (database %s)", s.pg.Port(), o.Database)
			}
		}()
	}
	if s.TemporalAddress == "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.temporal, tErr = localtemporal.Start(ctx, &localtemporal.Config{Path: o.TemporalCLI, UI: o.UI, Namespace: s.TemporalNamespace, Logger: g.Logger})
			if tErr == nil {
				s.TemporalAddress = s.temporal.Address()
				s.TemporalUI = s.temporal.UIAddress()
				o.Report("Started Temporal dev server at %s", s.TemporalAddress)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(pgErr, tErr); err != nil {
		s.stop()
		return nil, fmt.Errorf("error starting local services: %w", err)
	}
	return s, nil
}

// stop stops the local services, if any.
func (s *services) stop() {
	if s.temporal != nil {
		s.temporal.Stop()
		s.temporal = nil
	}
	if s.pg != nil {
		_ = s.pg.Stop()
		s.pg = nil
	}
}
