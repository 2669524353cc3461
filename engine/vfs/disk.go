package vfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Default returns the operating system's file system. File.Sync is
// fdatasync(2) on Linux (fsync elsewhere) and SyncDir fsyncs the directory.
func Default() FS { return diskFS{} }

type diskFS struct{}

var _ FS = diskFS{}

// diskError rewraps an error of package os as this package's error for op,
// keeping the path os reported (for MkdirAll, the component that failed).
func diskError(op, path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pathError(op, pe.Path, pe.Err)
	}
	return pathError(op, path, err)
}

func (diskFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o666)
	if err != nil {
		return nil, diskError("create", name, err)
	}
	return &diskFile{f: f, name: name}, nil
}

func (diskFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, diskError("open", name, err)
	}
	// os.Open opens directories too; this interface is for files only.
	fi, err := f.Stat()
	if err == nil && fi.IsDir() {
		err = syscall.EISDIR
	}
	if err != nil {
		f.Close()
		return nil, diskError("open", name, err)
	}
	return &diskFile{f: f, name: name}, nil
}

func (diskFS) OpenAppend(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, diskError("open-append", name, err)
	}
	return &diskFile{f: f, name: name}, nil
}

func (diskFS) Remove(name string) error {
	if err := os.Remove(name); err != nil {
		return diskError("remove", name, err)
	}
	return nil
}

func (diskFS) Rename(oldname, newname string) error {
	if err := os.Rename(oldname, newname); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = le.Err
		}
		return linkError("rename", oldname, newname, err)
	}
	return nil
}

func (diskFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return diskError("mkdirall", dir, err)
	}
	return nil
}

func (diskFS) ReadDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, diskError("readdir", dir, err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return names, nil // os.ReadDir sorts by name
}

func (diskFS) Stat(name string) (os.FileInfo, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, diskError("stat", name, err)
	}
	return fi, nil
}

func (diskFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return diskError("syncdir", dir, err)
	}
	defer d.Close()
	fi, err := d.Stat()
	if err == nil && !fi.IsDir() {
		err = syscall.ENOTDIR
	}
	if err == nil {
		err = d.Sync() // fsync: fdatasync on a directory is not enough everywhere
	}
	if err != nil {
		return diskError("syncdir", dir, err)
	}
	return nil
}

type diskFile struct {
	f    *os.File
	name string
}

var _ File = (*diskFile)(nil)

func (d *diskFile) Read(p []byte) (int, error) {
	n, err := d.f.Read(p)
	if err != nil && err != io.EOF {
		err = diskError("read", d.name, err)
	}
	return n, err
}

func (d *diskFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		err = diskError("readat", d.name, err)
	}
	return n, err
}

func (d *diskFile) Write(p []byte) (int, error) {
	n, err := d.f.Write(p)
	if err != nil {
		err = diskError("write", d.name, err)
	}
	return n, err
}

// WriteVec writes bufs in one system call where it can (writev).
func (d *diskFile) WriteVec(bufs [][]byte) (int64, error) {
	n, err := writev(d.f, bufs)
	if err != nil {
		err = diskError("write", d.name, err)
	}
	return n, err
}

func (d *diskFile) Sync() error {
	if err := datasync(d.f); err != nil {
		return diskError("sync", d.name, err)
	}
	return nil
}

func (d *diskFile) Truncate(size int64) error {
	if err := d.f.Truncate(size); err != nil {
		return diskError("truncate", d.name, err)
	}
	return nil
}

func (d *diskFile) Stat() (os.FileInfo, error) {
	fi, err := d.f.Stat()
	if err != nil {
		return nil, diskError("stat", d.name, err)
	}
	return fi, nil
}

func (d *diskFile) Close() error {
	if err := d.f.Close(); err != nil {
		return diskError("close", d.name, err)
	}
	return nil
}
