package vfs

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync/atomic"
)

// Injector decides which operations of an ErrorFS fail. MaybeError is called
// before every operation, possibly from several goroutines at once; a
// non-nil error fails the operation.
type Injector interface {
	MaybeError(op Op) error
}

// InjectorFunc is an Injector written as a function.
type InjectorFunc func(op Op) error

func (f InjectorFunc) MaybeError(op Op) error { return f(op) }

// ErrorFS wraps an FS and fails the operations its Injector chooses, on the
// FS and on the files it opens. A failed operation is not passed to the
// inner FS at all: an injected Write writes nothing, an injected Sync syncs
// nothing, an injected Create creates nothing. The one exception is Close,
// which closes the inner file anyway so that nothing leaks. ErrorFS is safe
// for concurrent use if its Injector and inner FS are.
//
// An injected error is wrapped like every error of this package, in an
// *fs.PathError (an *os.LinkError for Rename) with the operation and path,
// unless the Injector already returned one:
//
//	vfs: sync /inst/v0/log-3: input/output error
type ErrorFS struct {
	inner FS
	inj   Injector
	ops   atomic.Int64
}

var _ FS = (*ErrorFS)(nil)

// NewErrorFS returns an ErrorFS that runs operations on inner unless inj
// fails them. A nil inj fails nothing.
func NewErrorFS(inner FS, inj Injector) *ErrorFS {
	return &ErrorFS{inner: inner, inj: inj}
}

// Inner returns the wrapped FS.
func (e *ErrorFS) Inner() FS { return e.inner }

// maybeError numbers the operation and asks the injector about it.
func (e *ErrorFS) maybeError(kind OpKind, path, newPath string) error {
	op := Op{Kind: kind, Path: path, NewPath: newPath, Index: int(e.ops.Add(1))}
	if e.inj == nil {
		return nil
	}
	err := e.inj.MaybeError(op)
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return err
	}
	if kind == OpRename {
		return linkError(kind.String(), path, newPath, err)
	}
	return pathError(kind.String(), path, err)
}

func (e *ErrorFS) wrap(f File, err error, name string) (File, error) {
	if err != nil {
		return nil, err
	}
	return &errorFile{fs: e, inner: f, name: name}, nil
}

func (e *ErrorFS) Create(name string) (File, error) {
	if err := e.maybeError(OpCreate, name, ""); err != nil {
		return nil, err
	}
	f, err := e.inner.Create(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) Open(name string) (File, error) {
	if err := e.maybeError(OpOpen, name, ""); err != nil {
		return nil, err
	}
	f, err := e.inner.Open(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) OpenAppend(name string) (File, error) {
	if err := e.maybeError(OpOpenAppend, name, ""); err != nil {
		return nil, err
	}
	f, err := e.inner.OpenAppend(name)
	return e.wrap(f, err, name)
}

func (e *ErrorFS) Remove(name string) error {
	if err := e.maybeError(OpRemove, name, ""); err != nil {
		return err
	}
	return e.inner.Remove(name)
}

func (e *ErrorFS) Rename(oldname, newname string) error {
	if err := e.maybeError(OpRename, oldname, newname); err != nil {
		return err
	}
	return e.inner.Rename(oldname, newname)
}

func (e *ErrorFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := e.maybeError(OpMkdirAll, dir, ""); err != nil {
		return err
	}
	return e.inner.MkdirAll(dir, perm)
}

func (e *ErrorFS) ReadDir(dir string) ([]string, error) {
	if err := e.maybeError(OpReadDir, dir, ""); err != nil {
		return nil, err
	}
	return e.inner.ReadDir(dir)
}

func (e *ErrorFS) Stat(name string) (os.FileInfo, error) {
	if err := e.maybeError(OpStat, name, ""); err != nil {
		return nil, err
	}
	return e.inner.Stat(name)
}

func (e *ErrorFS) SyncDir(dir string) error {
	if err := e.maybeError(OpSyncDir, dir, ""); err != nil {
		return err
	}
	return e.inner.SyncDir(dir)
}

type errorFile struct {
	fs    *ErrorFS
	inner File
	name  string
}

var _ File = (*errorFile)(nil)

func (f *errorFile) Read(p []byte) (int, error) {
	if err := f.fs.maybeError(OpRead, f.name, ""); err != nil {
		return 0, err
	}
	return f.inner.Read(p)
}

func (f *errorFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.maybeError(OpReadAt, f.name, ""); err != nil {
		return 0, err
	}
	return f.inner.ReadAt(p, off)
}

func (f *errorFile) Write(p []byte) (int, error) {
	if err := f.fs.maybeError(OpWrite, f.name, ""); err != nil {
		return 0, err
	}
	return f.inner.Write(p)
}

func (f *errorFile) Sync() error {
	if err := f.fs.maybeError(OpSync, f.name, ""); err != nil {
		return err
	}
	return f.inner.Sync()
}

func (f *errorFile) Truncate(size int64) error {
	if err := f.fs.maybeError(OpTruncate, f.name, ""); err != nil {
		return err
	}
	return f.inner.Truncate(size)
}

func (f *errorFile) Stat() (os.FileInfo, error) {
	if err := f.fs.maybeError(OpStat, f.name, ""); err != nil {
		return nil, err
	}
	return f.inner.Stat()
}

func (f *errorFile) Close() error {
	injected := f.fs.maybeError(OpClose, f.name, "")
	err := f.inner.Close()
	if injected != nil {
		return injected
	}
	return err
}

// Fault is an Injector that fails the operations matching a kind and a path
// with one error, until disabled. Make one with ErrorOn or ErrorAfter. It is
// safe for concurrent use.
type Fault struct {
	kinds []OpKind // nil matches every kind
	path  string   // substring of Op.Path or Op.NewPath; "" matches all
	err   error
	after int64 // matching operations let through before failing

	matched  atomic.Int64
	hits     atomic.Int64
	disabled atomic.Bool
}

// ErrorOn returns a Fault that fails with err every operation of the given
// kind whose path (or new path, for Rename) contains pathSubstring; an empty
// pathSubstring matches every path. err is typically syscall.EIO or
// syscall.ENOSPC.
func ErrorOn(kind OpKind, pathSubstring string, err error) *Fault {
	return &Fault{kinds: []OpKind{kind}, path: pathSubstring, err: err}
}

// ErrorAfter returns a Fault that lets the first n operations of the given
// kinds (of any kind if none is given) through and fails every later one
// with err: the n-th, counting from 0, and on.
func ErrorAfter(n int, err error, kinds ...OpKind) *Fault {
	return &Fault{kinds: slices.Clone(kinds), err: err, after: int64(n)}
}

// MaybeError implements Injector. While the Fault is disabled it neither
// counts operations nor fails them.
func (f *Fault) MaybeError(op Op) error {
	if f.disabled.Load() {
		return nil
	}
	if f.kinds != nil && !slices.Contains(f.kinds, op.Kind) {
		return nil
	}
	if f.path != "" && !strings.Contains(op.Path, f.path) && !strings.Contains(op.NewPath, f.path) {
		return nil
	}
	if f.matched.Add(1) <= f.after {
		return nil
	}
	f.hits.Add(1)
	return f.err
}

// Disable clears the fault: operations succeed again.
func (f *Fault) Disable() { f.disabled.Store(true) }

// Enable makes a disabled fault fail operations again.
func (f *Fault) Enable() { f.disabled.Store(false) }

// Hits returns how many operations the Fault has failed.
func (f *Fault) Hits() int { return int(f.hits.Load()) }
