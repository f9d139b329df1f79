package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// demoCmd prepares the built binary to run the demo with a unique tag in its
// environment, which every process it starts inherits, and a private TMPDIR.
func demoCmd(t *testing.T, args ...string) (*exec.Cmd, string, string) {
	t.Helper()
	tag := fmt.Sprintf("DTEBRIDGE_TEST_TAG=%s-%d", t.Name(), time.Now().UnixNano())
	// Not t.TempDir: its parent is private, and the postgres user must reach
	// its cluster directory.
	tmp, err := os.MkdirTemp("", "dtebridge-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	if err := os.Chmod(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, append([]string{"demo", "--no-progress"}, args...)...)
	cmd.Env = append(os.Environ(), tag, "TMPDIR="+tmp)
	return cmd, tag, tmp
}

// tagged returns the pids of live processes whose environment holds tag.
func tagged(tag string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !bytes.Contains(env, []byte(tag+"\x00")) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat")); err == nil && strings.Contains(string(stat), ") Z ") {
			continue // a zombie has exited; its parent just has not reaped it yet
		}
		pids = append(pids, pid)
	}
	return pids
}

// checkNothingLeft waits up to 45 seconds for every tagged process to exit
// and TMPDIR to be empty.
func checkNothingLeft(t *testing.T, tag, tmp string) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		pids := tagged(tag)
		left, _ := os.ReadDir(tmp)
		if len(pids) == 0 && len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			t.Fatalf("left behind: processes %v, files %v", pids, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDemoRunsAndLeavesNothing runs the demo as make demo does, in both
// profiles: the fault is found and repaired, a phase is cut over through the
// gate, commands are written back, the end is 100% consistent, and nothing
// is left behind, Prometheus included.
func TestDemoRunsAndLeavesNothing(t *testing.T) {
	t.Parallel()
	for _, profile := range []string{"seed", "production"} {
		t.Run(profile, func(t *testing.T) {
			t.Parallel()
			args := []string{"--reports", "30", "--duration", "4s", "--rate", "40", "--profile", profile}
			if profile == "seed" {
				args = append(args, "--with-prometheus")
			} else {
				// The production profile runs log-based capture, which
				// delivers the fault instead of leaving it to reconcile.
				args = append(args, "--capture", "logical")
			}
			cmd, tag, tmp := demoCmd(t, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				t.Fatalf("demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			out := stdout.String()
			want := []string{
				"Simulated 15 reports",
				"gate for planning (3 runs within 24h0m0s spanning ≥ 1s at ≥ 99.90%, no unexpected divergences) passes",
				"planning: shadow -> new 50%", "on the new engine: start, a second start (refused: invalid_transition), complete",
				"consistency 100.00%; 0 unexpected", "planning           new 50%",
				"Temporal Web UI: http://127.0.0.1:", "Stopping the services",
				"Writing legacy history before the bridge exists", "Backfilled the history; how it measures against the new rules",
				"historical findings in", "\nhistorical  ",
			}
			if profile == "seed" {
				want = append(want, "Prometheus: http://127.0.0.1:", "attached capture triggers to",
					"found actor_mismatch", "found dates_mismatch", "found state_mismatch",
					"3 of 3 divergences repaired", "repaired 3 of 3. Now 0 unexpected divergences.")
			} else {
				want = append(want, "published public.workflow_phases for log-based capture",
					"0 unexpected divergences: capture delivered the fault like any legacy change",
					"log-based capture delivered it, so reconcile found nothing to repair. Now 0 unexpected divergences.")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("demo output lacks %q:\n%s", w, out)
				}
			}
			checkNothingLeft(t, tag, tmp)
		})
	}
}

func TestDemoKeepRunningStopsOnInterrupt(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			cmd, tag, tmp := demoCmd(t, "--reports", "5", "--duration", "1s", "--rate", "10", "--keep-running")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			ready := false
			for sc.Scan() {
				if strings.Contains(sc.Text(), "press Ctrl-C") {
					ready = true
					break
				}
			}
			if !ready {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("demo never said it keeps running")
			}
			if len(tagged(tag)) < 3 {
				t.Errorf("expected the demo, postgres and temporal to be running, found pids %v", tagged(tag))
			}
			go func() {
				for sc.Scan() {
				}
			}()
			cmd.Process.Signal(sig)
			err = cmd.Wait()
			if sig == syscall.SIGINT && err != nil {
				t.Errorf("demo exited with %v after Ctrl-C, want 0", err)
			}
			checkNothingLeft(t, tag, tmp)
		})
	}
}
