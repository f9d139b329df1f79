// Package localpg runs a throwaway PostgreSQL cluster from the system's
// PostgreSQL binaries (initdb and postgres), for tests and for the demo.
//
// The cluster lives in a temporary directory, listens on a loopback port, and
// trusts local connections. It is tuned for speed, not durability (fsync is
// off): it must never hold data anyone wants to keep. As root, the server runs
// as the postgres OS user, because PostgreSQL refuses to run as root. A
// watchdog stops the server and removes the directory if the owning process
// dies without calling Stop.
package localpg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/internal/proc"
)

// ErrBinariesNotFound means initdb or postgres could not be found.
var ErrBinariesNotFound = errors.New("PostgreSQL server binaries (initdb, postgres) not found; install them (Debian/Ubuntu: apt-get install postgresql), set PG_BINDIR to their directory, or pass --database-url to use an existing server")

// Config configures a local cluster. The zero value is ready to use.
type Config struct {
	// BinDir is the directory holding initdb and postgres. Default: $PG_BINDIR
	// as read by the caller, else the newest /usr/lib/postgresql/*/bin, else
	// the directory of initdb on PATH.
	BinDir string
	// Port is the TCP port on 127.0.0.1. Default: a free port.
	Port int
	// MaxConnections is the server's max_connections. Default: 300.
	MaxConnections int
	// Durable runs with fsync and synchronous commit on, as a production
	// server does, for benchmarks whose figures must be realistic. Default:
	// off, which is much faster for tests.
	Durable bool
	// Settings are further server settings (name to value), given after
	// and so overriding the defaults above, for tests of a server
	// configured otherwise.
	Settings map[string]string
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
}

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	dir  string
	port int
	p    *proc.Process
}

// FindBinDir returns the directory of the PostgreSQL server binaries.
func FindBinDir(explicit string) (string, error) {
	var candidates []string
	if explicit != "" {
		candidates = append(candidates, explicit)
	}
	versions, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(versions, func(i, j int) bool { return pgVersion(versions[i]) > pgVersion(versions[j]) })
	candidates = append(candidates, versions...)
	if p, err := exec.LookPath("initdb"); err == nil {
		candidates = append(candidates, filepath.Dir(p))
	}
	for _, dir := range candidates {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
		if dir == explicit {
			return "", fmt.Errorf("%w (looked in %s)", ErrBinariesNotFound, explicit)
		}
	}
	return "", ErrBinariesNotFound
}

func pgVersion(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start initialises and starts a new cluster. It returns once the server
// accepts connections.
func Start(ctx context.Context, cfg *Config) (*Cluster, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	binDir, err := FindBinDir(cfg.BinDir)
	if err != nil {
		return nil, err
	}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "dtebridge-pg-")
	if err != nil {
		return nil, fmt.Errorf("error creating cluster directory: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(dir)
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("error handing %s to the postgres user: %w", dir, err)
		}
		if err := reachable(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	logger.Debug("initialising local PostgreSQL", "dir", dir, "bindir", binDir)
	initdb := exec.CommandContext(ctx, filepath.Join(binDir, "initdb"),
		"-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("error running initdb: %w: %s", err, lastLines(out, 5))
	}

	maxConns := cfg.MaxConnections
	if maxConns == 0 {
		maxConns = 300
	}
	// A taken port shows up only when postgres starts, so retry a few times.
	for attempt := 0; ; attempt++ {
		port := cfg.Port
		if port == 0 {
			if port, err = proc.FreePort("127.0.0.1"); err != nil {
				return nil, err
			}
		}
		c, err := start(ctx, binDir, dir, port, maxConns, cfg.Durable, cfg.Settings, cred)
		if err == nil {
			ok = true
			logger.Debug("local PostgreSQL ready", "port", port)
			return c, nil
		}
		if cfg.Port != 0 || attempt == 2 || ctx.Err() != nil {
			return nil, err
		}
		logger.Debug("retrying local PostgreSQL start", "error", err)
	}
}

func start(ctx context.Context, binDir, dir string, port, maxConns int, durable bool, settings map[string]string, cred *syscall.Credential) (*Cluster, error) {
	logPath := filepath.Join(dir, "postgres.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("error creating server log: %w", err)
	}
	defer logFile.Close()
	durability := "off"
	if durable {
		durability = "on"
	}
	cmd := exec.Command(filepath.Join(binDir, "postgres"),
		"-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir,
		"-c", "max_connections="+strconv.Itoa(maxConns),
		"-c", "fsync="+durability,
		"-c", "synchronous_commit="+durability,
		"-c", "full_page_writes="+durability,
		"-c", "shared_buffers=128MB",
		"-c", "max_wal_size=1GB",
		"-c", "log_min_messages=warning",
		"-c", "timezone=UTC",
		// Log-based capture decodes the WAL: every local cluster allows it,
		// with room for a slot per test database.
		"-c", "wal_level=logical",
		"-c", "max_replication_slots=100",
		"-c", "max_wal_senders=100",
		"-c", "max_slot_wal_keep_size=4GB",
	)
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		cmd.Args = append(cmd.Args, "-c", name+"="+settings[name])
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	// SIGINT is PostgreSQL's fast shutdown: roll back sessions and stop.
	p, err := proc.Start(cmd, syscall.SIGINT, dir)
	if err != nil {
		return nil, fmt.Errorf("error starting postgres: %w", err)
	}
	c := &Cluster{dir: dir, port: port, p: p}
	deadline := time.Now().Add(60 * time.Second)
	for {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err == nil {
			conn.Close(ctx)
			return c, nil
		}
		select {
		case <-p.Done():
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres exited during start-up: %s", lastLines(out, 5))
		case <-ctx.Done():
			p.Stop(5 * time.Second)
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.Stop(5 * time.Second)
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("postgres did not accept connections within 60s: %w: %s", err, lastLines(out, 5))
		}
	}
}

// serverCredential returns the credential to run the server with: the
// postgres OS user when running as root, else nil (the current user).
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, and PostgreSQL refuses to run as root, but there is no postgres OS user to run it as (%w): install the postgresql package, which creates it, or run as another user", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// reachable checks that the postgres user can traverse dir and its parents.
func reachable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("the postgres user cannot reach %s (mode %s): set TMPDIR to a directory it can reach, such as /tmp", d, fi.Mode().Perm())
		}
		if filepath.Dir(d) == d {
			return nil
		}
	}
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// URL returns a connection URL for database on this cluster.
func (c *Cluster) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port returns the server's TCP port.
func (c *Cluster) Port() int { return c.port }

// Dir returns the cluster's temporary directory.
func (c *Cluster) Dir() string { return c.dir }

// Pid returns the postmaster's process id.
func (c *Cluster) Pid() int { return c.p.Pid() }

// CreateDatabase creates an empty database and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("error connecting to local PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("error creating database %q: %w", name, err)
	}
	return c.URL(name), nil
}

// DropDatabase drops a database, disconnecting any sessions still in it.
func (c *Cluster) DropDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return fmt.Errorf("error connecting to local PostgreSQL: %w", err)
	}
	defer conn.Close(ctx)
	// A database with replication slots cannot be dropped: stop whoever
	// reads them, then drop them.
	for attempt := 0; ; attempt++ {
		rows, err := conn.Query(ctx, `SELECT slot_name::text, active_pid FROM pg_replication_slots WHERE database = $1`, name)
		if err != nil {
			return fmt.Errorf("error listing the replication slots of database %q: %w", name, err)
		}
		type slot struct {
			name string
			pid  *int32
		}
		slots, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (slot, error) {
			var s slot
			return s, r.Scan(&s.name, &s.pid)
		})
		if err != nil {
			return fmt.Errorf("error listing the replication slots of database %q: %w", name, err)
		}
		if len(slots) == 0 {
			break
		}
		if attempt == 100 {
			return fmt.Errorf("error dropping database %q: its replication slots stay in use", name)
		}
		for _, s := range slots {
			if s.pid != nil {
				conn.Exec(ctx, "SELECT pg_terminate_backend($1)", *s.pid)
			} else {
				conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", s.name)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("error dropping database %q: %w", name, err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown) and removes its directory.
func (c *Cluster) Stop() error {
	c.p.Stop(30 * time.Second)
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("error removing %s: %w", c.dir, err)
	}
	return nil
}

// Tail returns the last n lines of the server log, for error reports.
func (c *Cluster) Tail(n int) string {
	out, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	return lastLines(bytes.TrimSpace(out), n)
}
