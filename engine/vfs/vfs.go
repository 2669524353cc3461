package vfs

import (
	"fmt"
	"io"
	"io/fs"
	"os"
)

// File is an open file of an FS.
//
// Writes go to the file's offset (files from Create) or to the current end
// (files from OpenAppend); there is no Seek and no WriteAt, so every write the
// coordinator does is an append, or, where Truncate extended a file ahead of
// its offset (the log writer's preallocated segments), a write over the
// zeros it added. Read reads sequentially from the file's
// offset; ReadAt does not move it. A File is safe for concurrent use, but
// concurrent Read or Write calls on one File see an unspecified interleaving.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.Closer
	// Sync is the durability barrier for this file's data: when it returns
	// nil, everything written before it survives a crash (fdatasync on disk).
	// It does not make the file's directory entry durable; see FS.SyncDir.
	// After a failed Sync the state of the unsynced data is unknown: treat
	// the error as fatal for the file.
	Sync() error
	// Truncate changes the file's size, cutting data off or extending it
	// with zeros. It does not move the file's offset and is not durable
	// before the next Sync.
	Truncate(size int64) error
	Stat() (os.FileInfo, error)
}

// FS is the file system. Names are slash-separated paths; relative names are
// resolved as the operating system would (Default) or from "/" (MemFS).
//
// Every error returned is wrapped with the operation and the path, prefixed
// "vfs: " ("vfs: sync /x/log-3: input/output error"), and test with errors.Is
// (fs.ErrNotExist, fs.ErrExist, syscall.EIO, ...) rather than os.IsNotExist,
// which does not unwrap. The one exception is io.EOF from Read and ReadAt,
// returned as is.
type FS interface {
	// Create creates the named file, or truncates it if it exists, and
	// opens it read-write at offset 0.
	Create(name string) (File, error)
	// Open opens an existing regular file read-only.
	Open(name string) (File, error)
	// OpenAppend opens an existing regular file read-write; every Write
	// goes to the current end of the file.
	OpenAppend(name string) (File, error)
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// Rename renames a file or directory, replacing newname if it is an
	// existing file. Renaming onto an existing directory fails.
	Rename(oldname, newname string) error
	// MkdirAll creates dir and any missing parents.
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir returns the names of the entries in dir, sorted.
	ReadDir(dir string) ([]string, error)
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the creates, renames and removes of entries in dir
	// durable. It does not sync the contents of the files in dir, nor dir's
	// own entry in its parent.
	SyncDir(dir string) error
}

// OpKind names an operation on an FS or a File.
type OpKind int

// The operations. MemFS records the mutating ones (Create, Write, Sync,
// Truncate, Close, Remove, Rename, MkdirAll, SyncDir); ErrorFS sees all of them.
const (
	OpCreate OpKind = iota + 1
	OpOpen
	OpOpenAppend
	OpRead
	OpReadAt
	OpWrite
	OpSync
	OpTruncate
	OpStat // FS.Stat and File.Stat
	OpClose
	OpRemove
	OpRename
	OpMkdirAll
	OpReadDir
	OpSyncDir
)

var opNames = [...]string{
	OpCreate:     "create",
	OpOpen:       "open",
	OpOpenAppend: "open-append",
	OpRead:       "read",
	OpReadAt:     "readat",
	OpWrite:      "write",
	OpSync:       "sync",
	OpTruncate:   "truncate",
	OpStat:       "stat",
	OpClose:      "close",
	OpRemove:     "remove",
	OpRename:     "rename",
	OpMkdirAll:   "mkdirall",
	OpReadDir:    "readdir",
	OpSyncDir:    "syncdir",
}

func (k OpKind) String() string {
	if k > 0 && int(k) < len(opNames) {
		return opNames[k]
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Op is one operation, as passed to a MemFS hook or an Injector.
type Op struct {
	Kind OpKind
	// Path is the name the operation was given; for file operations, the
	// name the file was opened with (cleaned, for MemFS).
	Path string
	// NewPath is the new name of a Rename, empty otherwise.
	NewPath string
	// Index numbers the operations seen by one MemFS or ErrorFS, from 1.
	// After the operation with Index i, MemFS.OpCount() == i.
	Index int
}

func (op Op) String() string {
	if op.Kind == OpRename {
		return fmt.Sprintf("rename %s %s", op.Path, op.NewPath)
	}
	return op.Kind.String() + " " + op.Path
}

// pathError wraps err the way every error of this package is wrapped.
func pathError(op, path string, err error) error {
	return fmt.Errorf("vfs: %w", &fs.PathError{Op: op, Path: path, Err: err})
}

func linkError(op, oldname, newname string, err error) error {
	return fmt.Errorf("vfs: %w", &os.LinkError{Op: op, Old: oldname, New: newname, Err: err})
}

// WriteVec writes bufs to f, in order, as if by one Write of their
// concatenation: in one system call where f supports it (the disk's files
// do, with writev), one Write per buffer otherwise. It saves gathering large
// buffers into one before writing them. bufs may be modified.
func WriteVec(f File, bufs [][]byte) (int64, error) {
	if v, ok := f.(interface {
		WriteVec([][]byte) (int64, error)
	}); ok {
		return v.WriteVec(bufs)
	}
	return writeEach(f, bufs)
}

// writeEach writes bufs with one Write each.
func writeEach(w io.Writer, bufs [][]byte) (int64, error) {
	var total int64
	for _, b := range bufs {
		n, err := w.Write(b)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}
