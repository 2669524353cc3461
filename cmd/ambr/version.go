package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what `ambr version` prints, and its JSON form.
type versionInfo struct {
	// Version is the module version (v1.2.3 when installed with go install
	// module@version; "(devel)" for a build from a checkout).
	Version string `json:"version"`
	// Commit is the VCS revision the binary was built from, if the build
	// recorded it (go build inside a git checkout does).
	Commit string `json:"commit,omitempty"`
	// CommitTime is that revision's time (RFC 3339).
	CommitTime string `json:"commit_time,omitempty"`
	// Modified says the checkout had uncommitted changes.
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
}

func readVersion() versionInfo {
	v := versionInfo{Version: "(unknown)", GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one-line form `ambr --version` prints.
func (v versionInfo) String() string {
	s := "ambr " + v.Version
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (commit " + c
		if v.Modified {
			s += ", modified"
		}
		if v.CommitTime != "" {
			s += ", " + v.CommitTime
		}
		s += ")"
	}
	return s + ", " + v.GoVersion + " " + v.Platform
}

func newVersionCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print ambr's version, commit and Go version",
		Long: `Print the module version ambr was built as, the commit it was built from (if
the build recorded one), and the Go version and platform. 'ambr --version'
prints the same line.

--json prints one JSON object with the fields version, commit, commit_time,
modified, go_version, platform.

Exit codes: 0 printed; 2 bad flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			v := readVersion()
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			_, err := fmt.Fprintln(g.stdout, v)
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
