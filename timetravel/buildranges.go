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
	Exe        string // the kept binary (absolute)
	SHA256     string
	Source     string // what the user named
}

// BuildRanges reads the MANIFEST's build records into ranges of the
// history, oldest first: every record is replayed with the build that ran
// it (an upgrade, a new build of the app). Records whose build is gone, or
// whose starting checkpoint cannot be read, stay with the range before.
// It returns nil when one build ran everything.
func BuildRanges(in *layout.Instance) []BuildRange {
	if len(in.Manifest.Builds) < 2 {
		return nil
	}
	var out []BuildRange
	for _, b := range in.Manifest.Builds {
		if b.App.Path == "" {
			continue
		}
		if _, err := os.Stat(b.App.Path); err != nil {
			continue
		}
		first := int64(1)
		if b.FromCheckpoint > 1 {
			ck, err := in.ReadCheckpoint(b.FromCheckpoint)
			if err != nil {
				continue
			}
			first = ck.NextSeq
		}
		exe := b.App.Path
		if abs, err := filepath.Abs(exe); err == nil {
			exe = abs
		}
		out = append(out, BuildRange{First: first, Checkpoint: b.FromCheckpoint, Exe: exe, SHA256: b.App.SHA256, Source: b.App.Source})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].First < out[j].First })
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
