package localtemporal

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMissingCLISaysHowToInstall(t *testing.T) {
	t.Parallel()
	_, err := Start(context.Background(), &Config{Path: "/nonexistent/temporal"})
	if !errors.Is(err, ErrCLINotFound) {
		t.Fatalf("error = %v, want ErrCLINotFound", err)
	}
	for _, want := range []string{"make build", Version, "--temporal-address"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
