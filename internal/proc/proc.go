// Package proc starts and guards the helper processes that dtebridge runs
// locally (PostgreSQL, the Temporal dev server, Prometheus), so that none of
// them outlives the process that started it, however that process ends.
package proc

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// prepare sets up cmd so that it runs in its own process group, where a
// terminal's Ctrl-C does not reach it (the owner stops it in order), and so
// that the kernel sends it sig if the starting process dies.
func prepare(cmd *exec.Cmd, sig syscall.Signal) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = sig
}

// watchdogScript waits on stdin. A line on stdin disarms it. End of file means
// the owner died without cleaning up: it then signals the guarded process,
// waits up to 30 seconds for it to exit, kills it if needed and removes the
// listed paths. $1 is the pid, $2 the signal name, the rest are paths.
const watchdogScript = `trap '' INT TERM HUP
if read -r line; then exit 0; fi
pid=$1; sig=$2; shift 2
kill -s "$sig" "$pid" 2>/dev/null
i=0
while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 300 ]; do sleep 0.1; i=$((i+1)); done
kill -s KILL "$pid" 2>/dev/null
[ "$#" -gt 0 ] && rm -rf -- "$@"
exit 0`

// Watchdog cleans up after a guarded process when its owner dies without
// doing so: a panic, an os.Exit, a SIGKILL. It is a tiny shell process in its
// own process group that waits for the owner's end of a pipe to close.
type Watchdog struct {
	w   *os.File
	cmd *exec.Cmd
}

// Guard starts a watchdog for pid. If the calling process dies before Disarm,
// the watchdog sends sig to pid, kills it after 30 seconds, and removes paths.
func Guard(pid int, sig syscall.Signal, paths ...string) (*Watchdog, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("error creating watchdog pipe: %w", err)
	}
	args := append([]string{"-c", watchdogScript, "dtebridge-watchdog", strconv.Itoa(pid), signalName(sig)}, paths...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Stdin = r
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("error starting watchdog: %w", err)
	}
	r.Close()
	return &Watchdog{w: w, cmd: cmd}, nil
}

// Disarm tells the watchdog that the owner cleaned up, and waits for it to exit.
func (d *Watchdog) Disarm() {
	if d == nil || d.w == nil {
		return
	}
	_, _ = io.WriteString(d.w, "disarm\n")
	d.w.Close()
	d.w = nil
	_ = d.cmd.Wait()
}

func signalName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGQUIT:
		return "QUIT"
	case syscall.SIGKILL:
		return "KILL"
	default:
		return "TERM"
	}
}

// FreePort returns a TCP port on host that is free to listen on. It leaves
// the port in TIME_WAIT so the kernel does not hand it out again to another
// bind(:0) for a while (the technique of the Temporal SDK's test suite).
func FreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("error finding a free port on %s: %w", host, err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr)
	c, err := net.DialTCP("tcp", nil, addr)
	if err != nil {
		return 0, fmt.Errorf("error finding a free port on %s: %w", host, err)
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		return 0, fmt.Errorf("error finding a free port on %s: %w", host, err)
	}
	s.Close() // closing the server side first puts the port in TIME_WAIT
	c.Close()
	return addr.Port, nil
}

// Alive reports whether a process with pid exists.
func Alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Process is a started helper process, guarded by a watchdog.
type Process struct {
	cmd  *exec.Cmd
	sig  syscall.Signal
	wd   *Watchdog
	done chan struct{}
	err  error
}

// Start starts cmd in its own process group. stopSig is the signal that asks
// it to shut down cleanly; the kernel also sends it if this process dies, and
// a watchdog then removes cleanup (for example a data directory).
func Start(cmd *exec.Cmd, stopSig syscall.Signal, cleanup ...string) (*Process, error) {
	prepare(cmd, stopSig)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Process{cmd: cmd, sig: stopSig, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	wd, err := Guard(cmd.Process.Pid, stopSig, cleanup...)
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, err
	}
	p.wd = wd
	return p, nil
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the exit error, once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Stop sends the stop signal, waits up to grace for the process to exit, then
// kills it. It disarms the watchdog once the process is gone; the caller
// removes its own files after that.
func (p *Process) Stop(grace time.Duration) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(p.sig)
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.wd.Disarm()
}

// Kill kills the process at once (SIGKILL), as a crash would, waits for it
// to exit and disarms the watchdog.
func (p *Process) Kill() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.wd.Disarm()
}
