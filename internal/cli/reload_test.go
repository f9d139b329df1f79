package cli

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/synapsedte/dtebridge/internal/bridgetest"
	"github.com/synapsedte/dtebridge/internal/legacysim"
	"github.com/synapsedte/dtebridge/internal/testenv"
)

// TestServeReloadsOnSIGHUP: dtebridge serve, as a process, reloads its
// configuration file on SIGHUP: the gate's new threshold is in force (and
// in its metrics) without a restart.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	t.Parallel()
	b := bridgetest.New(t, legacysim.Seed, &bridgetest.Options{NoServe: true})
	path := filepath.Join(t.TempDir(), "dtebridge.yaml")
	write := func() {
		out, err := yaml.Marshal(b.Cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	cmd := exec.Command(binary, "--database-url", b.DB.URL, "--config", path, "--temporal-address", testenv.Temporal(t).Address(),
		"serve", "--listen", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`HTTP on (\S+)\.`).FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		io.Copy(io.Discard, stdout)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start: %s", stderr.String())
	}
	gauge := func() string {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return regexp.MustCompile(`(?m)^dtebridge_cutover_gate_min_consistency (\S+)$`).FindStringSubmatch(string(body) + "\n")[1]
	}
	if g := gauge(); g != "0.999" {
		t.Fatalf("gate threshold before the reload: %q", g)
	}
	b.Cfg.Cutover.Gate.MinConsistency = 0.95
	write()
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bridgetest.WaitFor(t, 20*time.Second, "the reload", func() bool { return gauge() == "0.95" })
	if !strings.Contains(stderr.String(), "configuration reloaded") {
		t.Errorf("the reload was not logged: %s", stderr.String())
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after Ctrl-C: %v\n%s", err, stderr.String())
	}
}
