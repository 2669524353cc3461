package supervise

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
)

// InstanceInfo is what `ambr ls` and the TUI show about an instance.
type InstanceInfo struct {
	Name, Dir     string
	Running       bool
	ICPid, AppPid int
	Version       uint32
	LastSeq       int64
	LogBytes      int64
	Segments      int
	Checkpoints   int
	Newest        uint64
	App           string
	Error         string
	// Problems are what the running coordinator reports needs an
	// operator, by peer instance.
	Problems map[string]string
	// Replicas are the running replicas of an instance run with
	// --replica; ICPid and AppPid are then the primary's.
	Replicas []ReplicaStatus
}

// ListInstances describes the instances under home (directories with a
// MANIFEST), by name.
func ListInstances(home string) ([]InstanceInfo, error) {
	entries, err := os.ReadDir(home)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", home, err)
	}
	var out []InstanceInfo
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(home, e.Name())
		if _, err := os.Stat(filepath.Join(dir, layout.ManifestFile)); err != nil {
			continue
		}
		out = append(out, Describe(e.Name(), dir))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Describe reads the instance in dir: its MANIFEST, segments, checkpoints,
// last record and whether a coordinator runs it. Read-only.
func Describe(name, dir string) InstanceInfo {
	v := InstanceInfo{Name: name, Dir: dir}
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		v.Error = err.Error()
		return v
	}
	v.Version, v.Newest, v.App = in.Manifest.Version, in.Manifest.Checkpoint, in.Manifest.App.Source
	if st, ok := ReadRunStatus(dir); ok {
		v.Running, v.ICPid, v.AppPid, v.Problems = true, st.ICPid, st.AppPid, st.Problems
	}
	if v.Replicas = ReadReplicaStatuses(dir); len(v.Replicas) > 0 {
		v.Running = true
		for _, r := range v.Replicas {
			if r.Role == "primary" {
				v.ICPid, v.AppPid, v.Problems = r.ICPid, r.AppPid, r.Problems
			}
		}
	}
	segs, _ := in.Segments()
	ckpts, _ := in.Checkpoints()
	v.Segments, v.Checkpoints = len(segs), len(ckpts)
	var lastSize int64
	for _, s := range segs {
		if fi, err := os.Stat(in.SegmentPath(s)); err == nil {
			v.LogBytes += fi.Size()
			lastSize = fi.Size()
		}
	}
	// The last record: read the newest segment that holds one.
	for i := len(segs) - 1; i >= 0 && v.LastSeq == 0; i-- {
		lr, err := in.NewLogReader(segs[i])
		if err != nil {
			break
		}
		for {
			r, err := lr.Next()
			if err != nil {
				if err != io.EOF {
					v.Error = err.Error()
				}
				break
			}
			v.LastSeq = r.Seq
		}
		// The segment being written (or left so by a crash) may hold
		// zeros past its records: the writer extends it ahead of them.
		// Count the log to where its records end.
		if seg, off := lr.End(); seg == segs[len(segs)-1] && off > 0 && off < lastSize {
			v.LogBytes -= lastSize - off
		}
		lr.Close()
	}
	return v
}
