//go:build !linux

package vfs

import "os"

// datasync falls back to fsync where fdatasync is not available.
func datasync(f *os.File) error { return f.Sync() }

// writev writes bufs one after the other where writev(2) is not used.
func writev(f *os.File, bufs [][]byte) (int64, error) { return writeEach(f, bufs) }
