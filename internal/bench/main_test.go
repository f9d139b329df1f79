package bench

import (
	"os"
	"testing"

	"github.com/synapsedte/dtebridge/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
