package main

import (
	"fmt"
	"runtime/debug"

	"github.com/urfave/cli/v2"
)

// revision returns the VCS revision keyward was built from, with
// "-modified" when the tree had uncommitted changes, from the build
// information the go command records (-buildvcs); "unknown" without it.
func revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-modified"
			}
		}
	}
	if rev == "" {
		return "unknown"
	}
	return rev + modified
}

// printVersion prints the version and the revision: `keyward --version`
// and `keyward version`.
func printVersion(c *cli.Context) {
	fmt.Fprintf(c.App.Writer, "keyward %s (revision %s)\n", Version, revision())
}
