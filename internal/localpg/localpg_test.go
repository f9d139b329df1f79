package localpg

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/synapsedte/dtebridge/internal/proc"
)

func TestMissingBinariesSayHowToInstall(t *testing.T) {
	t.Parallel()
	_, err := FindBinDir(t.TempDir())
	if !errors.Is(err, ErrBinariesNotFound) {
		t.Fatalf("error = %v, want ErrBinariesNotFound", err)
	}
	if !strings.Contains(err.Error(), "apt-get install postgresql") || !strings.Contains(err.Error(), "--database-url") {
		t.Errorf("error %q does not say how to install the binaries or avoid them", err)
	}
	_, err = Start(context.Background(), &Config{BinDir: "/nonexistent"})
	if !errors.Is(err, ErrBinariesNotFound) {
		t.Errorf("Start: error = %v, want ErrBinariesNotFound", err)
	}
}

func TestStartStop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, err := Start(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	url, err := c.CreateDatabase(ctx, "roundtrip")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRow(ctx, `SELECT 41 + 1`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if n != 42 {
		t.Errorf("SELECT 41 + 1 = %d", n)
	}
	pid, dir := c.Pid(), c.Dir()
	if os.Geteuid() == 0 {
		st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(uidLine(string(st)), "\t0\t") {
			t.Errorf("postgres runs as root: %s", uidLine(string(st)))
		}
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for proc.Alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if proc.Alive(pid) {
		t.Errorf("postmaster %d still running after Stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop", dir)
	}
}

func uidLine(status string) string {
	for _, l := range strings.Split(status, "\n") {
		if strings.HasPrefix(l, "Uid:") {
			return l + "\t"
		}
	}
	return ""
}
