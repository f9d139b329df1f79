// Package localprom runs a throwaway Prometheus server on loopback that
// scrapes the bridge, for the metrics end-to-end tests and for
// dtebridge demo --with-prometheus.
//
// It uses the system's prometheus binary (Debian package prometheus). The
// server keeps its data in a temporary directory, runs in its own process
// group under a watchdog, and is gone, directory included, when it stops.
package localprom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/synapsedte/dtebridge/internal/proc"
)

// ErrNotFound means the prometheus binary could not be found.
var ErrNotFound = errors.New("prometheus not found: make installs the pinned one into ./bin (make tools), or set PROMETHEUS_BIN")

// Config configures a server.
type Config struct {
	// Targets are host:port addresses serving /metrics, scraped as job
	// dtebridge.
	Targets []string
	// ScrapeInterval is also the rule evaluation interval. Default: 1s.
	ScrapeInterval time.Duration
	// RuleFiles are loaded as alerting and recording rules.
	RuleFiles []string
	// Rules are rule files by content, written into the server's directory.
	Rules [][]byte
	// Path is the prometheus binary. Default: $PROMETHEUS_BIN, else PATH.
	Path string
}

// Server is a running Prometheus.
type Server struct {
	address string
	dir     string
	p       *proc.Process
}

// Find returns the prometheus binary.
func Find(explicit string) (string, error) {
	for _, p := range []string{explicit, os.Getenv("PROMETHEUS_BIN")} {
		if p != "" {
			if _, err := os.Stat(p); err != nil {
				return "", fmt.Errorf("%w (looked for %s)", ErrNotFound, p)
			}
			return p, nil
		}
	}
	p, err := exec.LookPath("prometheus")
	if err != nil {
		return "", ErrNotFound
	}
	return p, nil
}

// Start starts Prometheus on a free loopback port and returns once it is
// ready.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	path, err := Find(cfg.Path)
	if err != nil {
		return nil, err
	}
	interval := cfg.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	dir, err := os.MkdirTemp("", "dtebridge-prometheus-")
	if err != nil {
		return nil, err
	}
	// The server may run as another user when we are root; let it write.
	_ = os.Chmod(dir, 0o777)
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", interval, interval)
	ruleFiles := slices.Clone(cfg.RuleFiles)
	for i, r := range cfg.Rules {
		f := filepath.Join(dir, fmt.Sprintf("rules-%d.yml", i))
		if err := os.WriteFile(f, r, 0o644); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		ruleFiles = append(ruleFiles, f)
	}
	if len(ruleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range ruleFiles {
			abs, err := filepath.Abs(f)
			if err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			fmt.Fprintf(&b, "  - %q\n", abs)
		}
	}
	b.WriteString("scrape_configs:\n  - job_name: dtebridge\n    static_configs:\n      - targets: [")
	for i, t := range cfg.Targets {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", t)
	}
	b.WriteString("]\n")
	conf := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port, err := proc.FreePort("127.0.0.1")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), dir: dir}
	out := &strings.Builder{}
	cmd := exec.Command(path, "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+s.address, "--storage.tsdb.retention.time=1d", "--log.level=warn")
	cmd.Stdout, cmd.Stderr = out, out
	if s.p, err = proc.Start(cmd, syscall.SIGTERM, dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("error starting %s: %w", path, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get("http://" + s.address + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.p.Done():
			os.RemoveAll(dir)
			return nil, fmt.Errorf("prometheus exited during start-up: %v: %s", s.p.Err(), out.String())
		case <-ctx.Done():
			s.Stop()
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("prometheus was not ready within 1m: %s", out.String())
		}
	}
}

// Address returns host:port.
func (s *Server) Address() string { return s.address }

// URL returns the server's base URL.
func (s *Server) URL() string { return "http://" + s.address }

// Pid returns the server's process id.
func (s *Server) Pid() int { return s.p.Pid() }

// Stop stops the server and removes its data.
func (s *Server) Stop() {
	s.p.Stop(10 * time.Second)
	os.RemoveAll(s.dir)
}

// Sample is one series of an instant query's result.
type Sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float returns the sample's value.
func (s Sample) Float() float64 {
	v, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// Query evaluates an instant query through the HTTP API. An expression
// Prometheus rejects is an error.
func (s *Server) Query(ctx context.Context, expr string) ([]Sample, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &body); err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("query %q: %s", expr, body.Error)
	}
	switch body.Data.ResultType {
	case "vector":
		var out []Sample
		err := json.Unmarshal(body.Data.Result, &out)
		return out, err
	case "scalar":
		var v [2]any
		if err := json.Unmarshal(body.Data.Result, &v); err != nil {
			return nil, err
		}
		return []Sample{{Value: v}}, nil
	default:
		return nil, fmt.Errorf("query %q: unexpected result type %s", expr, body.Data.ResultType)
	}
}

// Targets returns the health of each scrape target ("up", "down",
// "unknown").
func (s *Server) Targets(ctx context.Context) (map[string]string, error) {
	var body struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := s.get(ctx, "/api/v1/targets", &body); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, t := range body.Data.ActiveTargets {
		out[t.ScrapeURL] = t.Health + strings.TrimSuffix(" "+t.LastError, " ")
	}
	return out, nil
}

// get fetches an HTTP API path and decodes its JSON answer into v.
func (s *Server) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", s.URL()+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}
