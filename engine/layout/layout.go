package layout

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// File names inside an instance directory. Part of the on-disk layout.
const (
	ManifestFile     = "MANIFEST"
	ManifestTempFile = "MANIFEST.tmp"
	segmentPrefix    = "log-"
	checkpointPrefix = "chkpt-"
	BrokenSuffix     = ".broken"
)

// DefaultHome is the runtime home used when neither --home nor AMBR_HOME is set.
const DefaultHome = ".ambr"

// HomeFromEnv returns flagValue if set, else $AMBR_HOME, else DefaultHome.
func HomeFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if h := os.Getenv("AMBR_HOME"); h != "" {
		return h
	}
	return DefaultHome
}

// VersionDir is the directory of an app version's logs and checkpoints.
func VersionDir(version uint32) string { return "v" + strconv.FormatUint(uint64(version), 10) }

// SegmentName is the file name of log segment n.
func SegmentName(n uint64) string { return segmentPrefix + strconv.FormatUint(n, 10) }

// CheckpointName is the file name of checkpoint n.
func CheckpointName(n uint64) string { return checkpointPrefix + strconv.FormatUint(n, 10) }

func parseNumbered(name, prefix string) (uint64, bool) {
	if !strings.HasPrefix(name, prefix) {
		return 0, false
	}
	n, err := strconv.ParseUint(name[len(prefix):], 10, 64)
	return n, err == nil && n > 0
}

// ParseSegmentName returns n for "log-<n>".
func ParseSegmentName(name string) (uint64, bool) { return parseNumbered(name, segmentPrefix) }

// ParseCheckpointName returns n for "chkpt-<n>".
func ParseCheckpointName(name string) (uint64, bool) { return parseNumbered(name, checkpointPrefix) }

// ErrNoInstance says a directory holds no instance: there is no MANIFEST.
var ErrNoInstance = errors.New("not an ambr instance (no MANIFEST)")

// ResolveDir turns what a user typed for NAME into an instance directory:
// a path to a directory (anything with a path separator, or an existing
// directory holding a MANIFEST) is used as it is; anything else is the name
// of an instance under home.
func ResolveDir(home, nameOrDir string) string {
	if strings.ContainsRune(nameOrDir, filepath.Separator) || strings.HasPrefix(nameOrDir, ".") {
		return nameOrDir
	}
	if _, err := os.Stat(filepath.Join(nameOrDir, ManifestFile)); err == nil {
		return nameOrDir
	}
	return filepath.Join(home, nameOrDir)
}

// Instance is an opened instance directory.
type Instance struct {
	FS       vfs.FS
	Dir      string
	Manifest *logfmt.Manifest
}

// Open reads the MANIFEST of the instance in dir.
func Open(fsys vfs.FS, dir string) (*Instance, error) {
	m, err := ReadManifest(fsys, dir)
	if err != nil {
		return nil, err
	}
	return &Instance{FS: fsys, Dir: dir, Manifest: m}, nil
}

// ReadManifest reads and verifies dir/MANIFEST. A missing file is
// ErrNoInstance.
func ReadManifest(fsys vfs.FS, dir string) (*logfmt.Manifest, error) {
	path := filepath.Join(dir, ManifestFile)
	f, err := fsys.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", dir, ErrNoInstance)
		}
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	m, err := logfmt.DecodeManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// LogDir is the directory of the current version's files.
//
// Every version's log lives in v0/: a live upgrade moves the MANIFEST's
// version but keeps one history, which the tools replay across versions
// (the MANIFEST's build ranges say which build ran which part).
func (in *Instance) LogDir() string { return filepath.Join(in.Dir, VersionDir(0)) }

// SegmentPath is the path of log segment n of the current version.
func (in *Instance) SegmentPath(n uint64) string { return filepath.Join(in.LogDir(), SegmentName(n)) }

// CheckpointPath is the path of checkpoint n of the current version.
func (in *Instance) CheckpointPath(n uint64) string {
	return filepath.Join(in.LogDir(), CheckpointName(n))
}

// Segments lists the numbers of the log segments present, ascending.
func (in *Instance) Segments() ([]uint64, error) {
	return listNumbered(in.FS, in.LogDir(), ParseSegmentName)
}

// Checkpoints lists the numbers of the checkpoint files present, ascending.
func (in *Instance) Checkpoints() ([]uint64, error) {
	return listNumbered(in.FS, in.LogDir(), ParseCheckpointName)
}

// ListSegments lists log segment numbers in dir, ascending.
func ListSegments(fsys vfs.FS, dir string) ([]uint64, error) {
	return listNumbered(fsys, dir, ParseSegmentName)
}

// ListCheckpoints lists checkpoint numbers in dir, ascending.
func ListCheckpoints(fsys vfs.FS, dir string) ([]uint64, error) {
	return listNumbered(fsys, dir, ParseCheckpointName)
}

func listNumbered(fsys vfs.FS, dir string, parse func(string) (uint64, bool)) ([]uint64, error) {
	names, err := fsys.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []uint64
	for _, name := range names {
		if n, ok := parse(name); ok {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// ReadCheckpoint reads and verifies checkpoint n.
func (in *Instance) ReadCheckpoint(n uint64) (*logfmt.Checkpoint, error) {
	return ReadCheckpointFile(in.FS, in.CheckpointPath(n))
}

// ReadCheckpointRoom is ReadCheckpoint that also returns the buffer the
// state was read into with room free bytes before it, or nil
// (logfmt.ReadCheckpointRoom).
func (in *Instance) ReadCheckpointRoom(n uint64, room int) (*logfmt.Checkpoint, []byte, error) {
	return readCheckpointFile(in.FS, in.CheckpointPath(n), room)
}

// ReadCheckpointFile reads and verifies one checkpoint file.
func ReadCheckpointFile(fsys vfs.FS, path string) (*logfmt.Checkpoint, error) {
	c, _, err := readCheckpointFile(fsys, path, 0)
	return c, err
}

func readCheckpointFile(fsys vfs.FS, path string, room int) (*logfmt.Checkpoint, []byte, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read checkpoint: %w", err)
	}
	defer f.Close()
	size := int64(-1)
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	c, framed, err := logfmt.ReadCheckpointRoom(f, size, room)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, framed, nil
}
