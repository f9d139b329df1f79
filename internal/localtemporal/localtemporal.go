// Package localtemporal runs the official Temporal CLI dev server
// (temporal server start-dev) on loopback, for tests and for the demo.
//
// The server keeps its state in memory and is gone when it stops. It runs in
// its own process group under a watchdog, so it never outlives its owner.
package localtemporal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/synapsedte/dtebridge/internal/proc"
)

// Version is the pinned Temporal CLI version that make installs into ./bin.
const Version = "v1.5.1"

// ErrCLINotFound means the temporal binary could not be found.
var ErrCLINotFound = errors.New("Temporal CLI (temporal) not found; run `make build`, which installs the pinned version into ./bin (go install github.com/temporalio/cli/cmd/temporal@" + Version + "), or pass --temporal-address to use an existing cluster")

// Config configures a dev server. The zero value is ready to use.
type Config struct {
	// Path is the temporal binary. Default: FindCLI("").
	Path string
	// Namespace is created at start. Default: "default".
	Namespace string
	// UI enables the Web UI on loopback. Default: off (headless).
	UI bool
	// SearchAttributes are registered at start, name to type (Keyword, Int,
	// Bool, ...). Default: none.
	SearchAttributes map[string]string
	// DBFile persists the server's state in this SQLite file, so a restart
	// keeps workflows. Default: in memory.
	DBFile string
	// Port is the frontend port on 127.0.0.1. Default: a free port.
	Port int
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
	// Output receives the server's own log. Default: discard.
	Output io.Writer
}

// Server is a running dev server.
type Server struct {
	address   string
	uiAddress string
	namespace string
	p         *proc.Process
}

// FindCLI returns the path of the temporal binary: explicit if set, else
// temporal next to the running executable, else ./bin/temporal in this
// directory or a parent (the module root, when running tests), else PATH.
func FindCLI(explicit string) (string, error) {
	return find(explicit, "temporal", ErrCLINotFound)
}

// find looks for binary name as FindCLI says, returning notFound if absent.
func find(explicit, name string, notFound error) (string, error) {
	if explicit != "" {
		if isExecutable(explicit) {
			return explicit, nil
		}
		return "", fmt.Errorf("%w (looked for %s)", notFound, explicit)
	}
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), name); isExecutable(p) {
			return p, nil
		}
	}
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if p := filepath.Join(dir, "bin", name); isExecutable(p) {
				return p, nil
			}
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil || filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", notFound
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// Start starts a dev server on free loopback ports and returns once it
// answers a client.
func Start(ctx context.Context, cfg *Config) (*Server, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	path, err := FindCLI(cfg.Path)
	if err != nil {
		return nil, err
	}
	namespace := cfg.Namespace
	if namespace == "" {
		namespace = "default"
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := start(ctx, path, namespace, cfg, logger)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		logger.Debug("retrying Temporal dev server start", "error", err)
	}
	return nil, lastErr
}

func start(ctx context.Context, path, namespace string, cfg *Config, logger *slog.Logger) (*Server, error) {
	port := cfg.Port
	if port == 0 {
		var err error
		if port, err = proc.FreePort("127.0.0.1"); err != nil {
			return nil, err
		}
	}
	args := []string{"server", "start-dev",
		"--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--namespace", namespace,
		"--log-level", "error",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
	}
	s := &Server{address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), namespace: namespace}
	if cfg.UI {
		uiPort, err := proc.FreePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		args = append(args, "--ui-ip", "127.0.0.1", "--ui-port", strconv.Itoa(uiPort))
		s.uiAddress = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(uiPort))
	} else {
		args = append(args, "--headless")
	}
	if cfg.DBFile != "" {
		args = append(args, "--db-filename", cfg.DBFile)
	}
	for _, name := range slices.Sorted(maps.Keys(cfg.SearchAttributes)) {
		args = append(args, "--search-attribute", name+"="+cfg.SearchAttributes[name])
	}
	out := &tail{w: cfg.Output}
	cmd := exec.Command(path, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	logger.Debug("starting Temporal dev server", "path", path, "address", s.address)
	var err error
	s.p, err = proc.Start(cmd, syscall.SIGINT)
	if err != nil {
		return nil, fmt.Errorf("error starting %s: %w", path, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, err := client.DialContext(ctx, client.Options{HostPort: s.address, Namespace: namespace, Logger: quietLogger{}})
		if err == nil {
			c.Close()
			logger.Debug("Temporal dev server ready", "address", s.address)
			return s, nil
		}
		select {
		case <-s.p.Done():
			return nil, fmt.Errorf("temporal dev server exited during start-up: %v: %s", s.p.Err(), out.String())
		case <-ctx.Done():
			s.p.Stop(10 * time.Second)
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.p.Stop(10 * time.Second)
			return nil, fmt.Errorf("temporal dev server did not answer within 2m: %w: %s", err, out.String())
		}
	}
}

// Address returns the frontend host:port.
func (s *Server) Address() string { return s.address }

// UIAddress returns the Web UI URL, or "" when the UI is off.
func (s *Server) UIAddress() string { return s.uiAddress }

// Namespace returns the namespace created at start.
func (s *Server) Namespace() string { return s.namespace }

// Pid returns the server's process id.
func (s *Server) Pid() int { return s.p.Pid() }

// Stop shuts the server down and waits for it to exit.
func (s *Server) Stop() { s.p.Stop(15 * time.Second) }

// tail keeps the last few KiB of the server's output for error messages and
// forwards everything to w.
type tail struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 4096 {
		t.buf = t.buf[len(t.buf)-4096:]
	}
	if t.w != nil {
		_, _ = t.w.Write(p)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// quietLogger drops the SDK's log lines while we poll for readiness.
type quietLogger struct{}

func (quietLogger) Debug(string, ...interface{}) {}
func (quietLogger) Info(string, ...interface{})  {}
func (quietLogger) Warn(string, ...interface{})  {}
func (quietLogger) Error(string, ...interface{}) {}

var _ sdklog.Logger = quietLogger{}
