// Package testenv gives tests real services: one throwaway PostgreSQL cluster
// and one Temporal dev server per test binary, both started on first use and
// stopped when the binary's tests end, and a fresh database per test.
//
// A package that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
package testenv

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/internal/localpg"
	"github.com/synapsedte/dtebridge/internal/localtemporal"
)

var (
	mu       sync.Mutex
	cluster  *localpg.Cluster
	pgErr    error
	temporal *localtemporal.Server
	tempErr  error
	dbSeq    atomic.Int64
)

// Main runs m and then stops whatever services the tests started.
func Main(m *testing.M) int {
	code := m.Run()
	Stop()
	return code
}

// Stop stops the shared services. Main calls it; tests that need to restart a
// service use the service's own handle instead.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if temporal != nil {
		temporal.Stop()
		temporal = nil
	}
	if cluster != nil {
		if err := cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
		}
		cluster = nil
	}
}

// Cluster returns the shared PostgreSQL cluster, starting it on first use.
func Cluster(t testing.TB) *localpg.Cluster {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if cluster == nil && pgErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cluster, pgErr = localpg.Start(ctx, &localpg.Config{BinDir: os.Getenv("PG_BINDIR")})
	}
	if pgErr != nil {
		t.Fatalf("starting local PostgreSQL: %v", pgErr)
	}
	return cluster
}

// DB is a fresh database for one test.
type DB struct {
	// Name is the database name.
	Name string
	// URL connects to it as the cluster's superuser.
	URL string
	// Pool is a connection pool on URL, closed at cleanup.
	Pool *pgxpool.Pool
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9]+`)

// NewDB creates a database for t in the shared cluster and drops it when t
// ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	c := Cluster(t)
	name := fmt.Sprintf("t%d_%s", dbSeq.Add(1), unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_"))
	if len(name) > 63 {
		name = name[:63]
	}
	ctx := context.Background()
	url, err := c.CreateDatabase(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		if err := c.DropDatabase(context.Background(), name); err != nil {
			t.Error(err)
		}
	})
	return &DB{Name: name, URL: url, Pool: pool}
}

// Temporal returns the shared Temporal dev server, starting it on first use.
func Temporal(t testing.TB) *localtemporal.Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if temporal == nil && tempErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		temporal, tempErr = localtemporal.Start(ctx, &localtemporal.Config{Path: os.Getenv("DTEBRIDGE_TEMPORAL_CLI")})
	}
	if tempErr != nil {
		t.Fatalf("starting Temporal dev server: %v", tempErr)
	}
	return temporal
}

// TemporalClient returns a client of the shared dev server, closed at cleanup.
func TemporalClient(t testing.TB) client.Client {
	t.Helper()
	s := Temporal(t)
	c, err := client.Dial(client.Options{HostPort: s.Address(), Namespace: s.Namespace()})
	if err != nil {
		t.Fatalf("dialing Temporal at %s: %v", s.Address(), err)
	}
	t.Cleanup(c.Close)
	return c
}
