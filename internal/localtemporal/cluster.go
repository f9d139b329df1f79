package localtemporal

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"

	"github.com/synapsedte/dtebridge/internal/proc"
)

// ServerVersion is the pinned Temporal server that make builds into ./bin,
// with its SQL schema tool, for the production topology.
const ServerVersion = "v1.29.1"

// Binaries of the production topology, as make names them in ./bin.
const (
	ServerBinary  = "temporal-server"
	SQLToolBinary = "temporal-sql-tool"
)

// ErrServerNotFound means the Temporal server or its SQL tool could not be
// found.
var ErrServerNotFound = errors.New("Temporal server (temporal-server, temporal-sql-tool) not found; run `make tools`, which builds the pinned version into ./bin (go install go.temporal.io/server/cmd/server@" + ServerVersion + " and go.temporal.io/server/cmd/tools/sql@" + ServerVersion + ")")

// Services are Temporal's four services, in the order the cluster starts
// them.
var Services = []string{"history", "matching", "frontend", "worker"}

// ClusterConfig configures a Temporal server with PostgreSQL persistence
// and SQL visibility.
type ClusterConfig struct {
	// ServerPath and SQLToolPath are the binaries. Default: FindTool.
	ServerPath, SQLToolPath string
	// PostgresURL connects to the PostgreSQL server that keeps Temporal's
	// state, as a user that may create databases. Required.
	PostgresURL string
	// Database names Temporal's database; its visibility database is
	// Database + "_visibility". Both are created, and dropped at Stop.
	// Default: temporal_<pid>_<n>.
	Database string
	// Split runs each service in a process of its own (frontend, history,
	// matching, worker), as production does; otherwise one process runs
	// them all.
	Split bool
	// HistoryShards is persistence.numHistoryShards. Default: 4.
	HistoryShards int
	// DynamicConfig is added to the server's dynamic configuration, key to
	// YAML value, e.g. "limit.maxIDLength": "1000".
	DynamicConfig map[string]string
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
	// Output receives the servers' own logs (level warn). Default: discard.
	Output io.Writer
}

// Cluster is a running Temporal server with PostgreSQL persistence.
type Cluster struct {
	cfg     ClusterConfig
	dir     string
	address string
	dbs     []string
	ports   map[string]int // service name to gRPC port
	members map[string]int // service name to membership port
	mu      sync.Mutex
	procs   map[string]*proc.Process // process name to process
	tails   map[string]*tail
	logger  *slog.Logger
	// pg is PostgresURL's server, as the SQL tool and the server's
	// configuration name it.
	pg struct{ host, port, user, password string }
}

var clusterSeq struct {
	sync.Mutex
	n int
}

// FindTool returns the path of one of the pinned Temporal binaries (name is
// ServerBinary or SQLToolBinary), looked for as FindCLI looks for the CLI.
func FindTool(explicit, name string) (string, error) {
	return find(explicit, name, ErrServerNotFound)
}

// StartCluster creates Temporal's databases, applies the schemas with the
// SQL tool, starts the services and returns once the frontend answers.
func StartCluster(ctx context.Context, cfg *ClusterConfig) (_ *Cluster, err error) {
	c := &Cluster{cfg: *cfg, procs: map[string]*proc.Process{}, tails: map[string]*tail{}, ports: map[string]int{}, members: map[string]int{}, logger: cfg.Logger}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if c.cfg.ServerPath, err = FindTool(cfg.ServerPath, ServerBinary); err != nil {
		return nil, err
	}
	if c.cfg.SQLToolPath, err = FindTool(cfg.SQLToolPath, SQLToolBinary); err != nil {
		return nil, err
	}
	if c.cfg.PostgresURL == "" {
		return nil, errors.New("localtemporal: ClusterConfig.PostgresURL is required")
	}
	u, err := url.Parse(c.cfg.PostgresURL)
	if err != nil {
		return nil, fmt.Errorf("localtemporal: invalid PostgresURL: %w", err)
	}
	c.pg.host, c.pg.port, c.pg.user = u.Hostname(), cmp.Or(u.Port(), "5432"), u.User.Username()
	c.pg.password, _ = u.User.Password()
	if c.cfg.HistoryShards == 0 {
		c.cfg.HistoryShards = 4
	}
	if c.cfg.Database == "" {
		clusterSeq.Lock()
		clusterSeq.n++
		c.cfg.Database = fmt.Sprintf("temporal_%d_%d", os.Getpid(), clusterSeq.n)
		clusterSeq.Unlock()
	}
	if c.dir, err = os.MkdirTemp("", "dtebridge-temporal-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if err := c.setupSchemas(ctx); err != nil {
		return nil, err
	}
	if err := c.writeConfig(); err != nil {
		return nil, err
	}
	for _, name := range c.processes() {
		if err := c.startProcess(ctx, name); err != nil {
			return nil, err
		}
	}
	if err := c.waitFrontend(ctx, 2*time.Minute); err != nil {
		return nil, err
	}
	c.logger.Debug("Temporal cluster ready", "address", c.address, "split", c.cfg.Split)
	return c, nil
}

// Address returns the frontend's host:port.
func (c *Cluster) Address() string { return c.address }

// Databases returns the names of Temporal's two databases.
func (c *Cluster) Databases() []string { return slices.Clone(c.dbs) }

// processes names the server processes: each service, or "all".
func (c *Cluster) processes() []string {
	if c.cfg.Split {
		return Services
	}
	return []string{"all"}
}

// setupSchemas creates both databases and applies the schemas the server
// binary embeds, as an operator does with temporal-sql-tool.
func (c *Cluster) setupSchemas(ctx context.Context) error {
	// The SQL tool takes over a database that exists; the harness creates
	// its own and drops them at Stop, so it refuses one it did not create.
	conn, err := pgx.Connect(ctx, c.cfg.PostgresURL)
	if err != nil {
		return fmt.Errorf("localtemporal: %w", err)
	}
	var taken []string
	err = conn.QueryRow(ctx, "SELECT coalesce(array_agg(datname::text), '{}') FROM pg_database WHERE datname = ANY($1)",
		[]string{c.cfg.Database, c.cfg.Database + "_visibility"}).Scan(&taken)
	conn.Close(ctx)
	if err != nil {
		return fmt.Errorf("localtemporal: %w", err)
	}
	if len(taken) > 0 {
		return fmt.Errorf("localtemporal: database %s exists; the cluster creates its own databases and drops them at Stop: choose another ClusterConfig.Database", strings.Join(taken, ", "))
	}
	base := []string{"--plugin", "postgres12", "--endpoint", c.pg.host, "--port", c.pg.port, "--user", c.pg.user, "--password", c.pg.password}
	for _, db := range []struct{ name, schema string }{
		{c.cfg.Database, "postgresql/v12/temporal"},
		{c.cfg.Database + "_visibility", "postgresql/v12/visibility"},
	} {
		c.dbs = append(c.dbs, db.name)
		for _, step := range [][]string{
			{"create-database"},
			{"setup-schema", "--version", "0.0"},
			{"update-schema", "--schema-name", db.schema},
		} {
			args := append(append(slices.Clone(base), "--database", db.name), step...)
			out, err := exec.CommandContext(ctx, c.cfg.SQLToolPath, args...).CombinedOutput()
			if err != nil {
				return fmt.Errorf("temporal-sql-tool %s on %s: %w: %s", step[0], db.name, err, lastLine(out))
			}
		}
	}
	return nil
}

const configTemplate = `log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: {{.Shards}}
  datastores:
{{- range .Stores}}
    {{.Name}}:
      sql:
        pluginName: postgres12
        databaseName: {{.Database}}
        connectAddr: "{{$.PGAddr}}"
        connectProtocol: tcp
        user: "{{$.PGUser}}"
        password: "{{$.PGPassword}}"
        maxConns: {{.Conns}}
        maxIdleConns: {{.Conns}}
        maxConnLifetime: 1h
{{- end}}
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
services:
{{- range .Services}}
  {{.Name}}:
    rpc:
      grpcPort: {{.GRPC}}
      membershipPort: {{.Membership}}
      bindOnLocalHost: true
{{- end}}
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: "{{.Frontend}}"
dcRedirectionPolicy:
  policy: noop
dynamicConfigClient:
  filepath: "{{.DynamicConfig}}"
  pollInterval: 10s
`

// writeConfig writes config/development.yaml and the dynamic config into
// the cluster's directory, with free loopback ports for every service.
func (c *Cluster) writeConfig() error {
	type store struct {
		Name, Database string
		Conns          int
	}
	type service struct {
		Name             string
		GRPC, Membership int
	}
	data := struct {
		Shards                     int
		Stores                     []store
		PGAddr, PGUser, PGPassword string
		Services                   []service
		Frontend, DynamicConfig    string
	}{Shards: c.cfg.HistoryShards, PGAddr: net.JoinHostPort(c.pg.host, c.pg.port), PGUser: c.pg.user, PGPassword: c.pg.password,
		Stores:        []store{{"default", c.dbs[0], 20}, {"visibility", c.dbs[1], 10}},
		DynamicConfig: filepath.Join(c.dir, "dynamicconfig.yaml")}
	for _, name := range Services {
		grpc, err := proc.FreePort("127.0.0.1")
		if err != nil {
			return err
		}
		membership, err := smallPort()
		if err != nil {
			return err
		}
		c.ports[name], c.members[name] = grpc, membership
		data.Services = append(data.Services, service{name, grpc, membership})
	}
	c.address = net.JoinHostPort("127.0.0.1", strconv.Itoa(c.ports["frontend"]))
	data.Frontend = c.address
	if err := os.MkdirAll(filepath.Join(c.dir, "config"), 0o755); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(c.dir, "config", "development.yaml"))
	if err != nil {
		return err
	}
	if err := template.Must(template.New("config").Parse(configTemplate)).Execute(f, data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	var dc strings.Builder
	for _, k := range slices.Sorted(maps.Keys(c.cfg.DynamicConfig)) {
		fmt.Fprintf(&dc, "%s:\n  - value: %s\n", k, c.cfg.DynamicConfig[k])
	}
	return os.WriteFile(data.DynamicConfig, []byte(dc.String()), 0o644)
}

// startProcess starts one server process: a service, or "all".
func (c *Cluster) startProcess(ctx context.Context, name string) error {
	args := []string{"--root", c.dir, "--config", "config", "--env", "development", "--allow-no-auth", "start"}
	if name != "all" {
		args = append(args, "--service", name)
	}
	c.mu.Lock()
	t := c.tails[name]
	if t == nil {
		t = &tail{w: c.cfg.Output}
		c.tails[name] = t
	}
	c.mu.Unlock()
	cmd := exec.Command(c.cfg.ServerPath, args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = t, t
	// Should this process die without stopping the cluster, the watchdog
	// stops the server and removes its directory (the databases go with
	// the throwaway PostgreSQL cluster, or stay on a server of one's own).
	p, err := proc.Start(cmd, syscall.SIGTERM, c.dir)
	if err != nil {
		return fmt.Errorf("error starting Temporal %s: %w", name, err)
	}
	c.mu.Lock()
	c.procs[name] = p
	c.mu.Unlock()
	// A service is up once it has joined the cluster: it listens on its
	// membership port (the worker service serves no gRPC).
	ports := []int{c.members[name]}
	if name == "all" {
		ports = []int{c.members["history"], c.members["matching"], c.members["frontend"], c.members["worker"]}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for _, port := range ports {
		for {
			conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				conn.Close()
				break
			}
			select {
			case <-p.Done():
				return fmt.Errorf("temporal %s exited during start-up: %v: %s", name, p.Err(), t.String())
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("temporal %s did not listen on port %d within 2m: %s", name, port, t.String())
			}
		}
	}
	c.logger.Debug("Temporal service started", "service", name, "pid", p.Pid())
	return nil
}

// waitFrontend waits until a client can reach the frontend.
func (c *Cluster) waitFrontend(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tc, err := client.DialContext(ctx, client.Options{HostPort: c.address, Logger: quietLogger{}})
		if err == nil {
			tc.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("temporal frontend did not answer within %s: %w: %s", timeout, err, c.Tail("frontend"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill kills a service's process with SIGKILL, as a crash would, and waits
// until it is gone. On a cluster that is not split, the service is "all".
func (c *Cluster) Kill(service string) error {
	c.mu.Lock()
	p := c.procs[service]
	delete(c.procs, service)
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("no running Temporal process %q", service)
	}
	p.Kill()
	return nil
}

// Restart starts a killed service again, on the same ports and databases.
func (c *Cluster) Restart(ctx context.Context, service string) error {
	c.mu.Lock()
	_, running := c.procs[service]
	c.mu.Unlock()
	if running {
		return fmt.Errorf("temporal %s is running", service)
	}
	if err := c.startProcess(ctx, service); err != nil {
		return err
	}
	if service == "frontend" || service == "all" {
		return c.waitFrontend(ctx, 2*time.Minute)
	}
	return nil
}

// Pid returns the process id of a service's process, or 0.
func (c *Cluster) Pid(service string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.procs[service]; p != nil {
		return p.Pid()
	}
	return 0
}

// Tail returns the last lines a server process logged, for error reports.
func (c *Cluster) Tail(service string) string {
	c.mu.Lock()
	t := c.tails[service]
	if t == nil {
		t = c.tails["all"]
	}
	c.mu.Unlock()
	if t == nil {
		return ""
	}
	return t.String()
}

// Stop stops every process (the worker service first, history last),
// drops the databases and removes the directory.
func (c *Cluster) Stop() {
	order := slices.Clone(c.processes())
	slices.Reverse(order)
	for _, name := range order {
		c.mu.Lock()
		p := c.procs[name]
		delete(c.procs, name)
		c.mu.Unlock()
		if p != nil {
			p.Stop(15 * time.Second)
		}
	}
	if len(c.dbs) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if conn, err := pgx.Connect(ctx, c.cfg.PostgresURL); err == nil {
			for _, db := range c.dbs {
				if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{db}.Sanitize()+" WITH (FORCE)"); err != nil {
					c.logger.Warn("could not drop Temporal's database", "database", db, "error", err)
				}
			}
			conn.Close(ctx)
		}
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1]
}

// smallPort returns a free loopback port below 32768: Temporal's SQL
// persistence keeps membership ports in a smallint column, and the
// kernel's ephemeral ports start above it.
func smallPort() (int, error) {
	for range 200 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port below 32768 on 127.0.0.1")
}
