package timetravel

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/ambr-dev/ambr/engine/layout"
)

// BuildRange is a part of the history one recorded build ran: from the
// record after checkpoint Checkpoint (First) on, until the next range.
type BuildRange struct {
	First      int64  // the first record the build handled
	Checkpoint uint64 // the checkpoint it started from (its state is this build's)
	Exe        string // the kept binary (absolute; "" if it is gone)
	SHA256     string
	Source     string // what the user named
	Version    uint32 // the app version it ran as (0 also in older MANIFESTs)
	N          int    // its place in the MANIFEST's builds, from 1
}

// Builds reads the MANIFEST's build records into ranges of the history,
// oldest first, whether or not their binaries are still kept: which build
// ran which records. Builds whose starting checkpoint cannot be read stay
// with the range before. It returns nil for a MANIFEST that records none.
func Builds(in *layout.Instance) []BuildRange {
	var out []BuildRange
	for i, b := range in.Manifest.Builds {
		first := int64(1)
		if b.FromCheckpoint > 1 {
			ck, err := in.ReadCheckpoint(b.FromCheckpoint)
			if err != nil {
				continue
			}
			first = ck.NextSeq
		}
		exe := b.App.Path
		if exe != "" {
			if _, err := os.Stat(exe); err != nil {
				exe = ""
			} else if abs, err := filepath.Abs(exe); err == nil {
				exe = abs
			}
		}
		out = append(out, BuildRange{First: first, Checkpoint: b.FromCheckpoint, Exe: exe, SHA256: b.App.SHA256,
			Source: b.App.Source, Version: b.Version, N: i + 1})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First < out[j].First })
	return out
}

// BuildRanges is Builds for replaying: only the builds whose binaries are
// kept (a record whose build is gone stays with the range before), and
// nil when one build ran everything — every record is then replayed with
// the one build.
func BuildRanges(in *layout.Instance) []BuildRange {
	if len(in.Manifest.Builds) < 2 {
		return nil
	}
	var out []BuildRange
	for _, r := range Builds(in) {
		if r.Exe != "" {
			out = append(out, r)
		}
	}
	if len(out) < 2 {
		return nil
	}
	return out
}

// RangeFor returns the range that holds record seq (nil: none known).
func RangeFor(ranges []BuildRange, seq int64) *BuildRange {
	var r *BuildRange
	for i := range ranges {
		if ranges[i].First <= seq {
			r = &ranges[i]
		}
	}
	return r
}
