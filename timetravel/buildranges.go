package timetravel

import (
	"os"
	"path/filepath"
	"sort"

	"github.com/ambr-dev/ambr/engine/layout"
)

// buildRange is a part of the history one recorded build ran: from the
// record after checkpoint ckpt (first) on, until the next range.
type buildRange struct {
	first int64  // the first record the build handled
	ckpt  uint64 // the checkpoint it started from (its state is this build's)
	exe   string // the kept binary
	sha   string
}

// buildRanges reads the MANIFEST's build records into ranges of the
// history, oldest first: every record is replayed with the build that ran
// it (an upgrade, a new build of the app). Records whose build is gone, or
// whose starting checkpoint cannot be read, stay with the range before.
// It returns nil when one build ran everything.
func buildRanges(in *layout.Instance) []buildRange {
	if len(in.Manifest.Builds) < 2 {
		return nil
	}
	var out []buildRange
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
		out = append(out, buildRange{first: first, ckpt: b.FromCheckpoint, exe: exe, sha: b.App.SHA256})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].first < out[j].first })
	if len(out) < 2 {
		return nil
	}
	return out
}

// rangeFor returns the range that holds record seq (nil: none known).
func rangeFor(ranges []buildRange, seq int64) *buildRange {
	var r *buildRange
	for i := range ranges {
		if ranges[i].first <= seq {
			r = &ranges[i]
		}
	}
	return r
}
