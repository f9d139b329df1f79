// Command dtebridge is the SynapseDTE migration bridge: it runs the legacy
// workflow and its Temporal successor side by side. See README.md, or run
// dtebridge --help.
package main

import (
	"os"

	"github.com/synapsedte/dtebridge/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args, os.Stdout, os.Stderr))
}
