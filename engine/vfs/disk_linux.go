package vfs

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// datasync is fdatasync(2): it flushes the file's data and the metadata
// needed to read it back (the size), but not, say, its modification time.
func datasync(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = unix.Fdatasync(int(fd))
			if serr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		// Control fails only when the file is closed (or closing).
		return os.ErrClosed
	}
	return serr
}

// writev writes bufs with writev(2), as many calls as partial writes and
// the kernel's limit of iovecs per call take.
func writev(f *os.File, bufs [][]byte) (int64, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	const maxIov = 1024 // IOV_MAX on Linux
	var total int64
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for len(bufs) > 0 {
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
				continue
			}
			n, err := unix.Writev(int(fd), bufs[:min(len(bufs), maxIov)])
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				// EAGAIN included: regular files do not return it, and
				// waiting on one for readiness would fail anyway.
				werr = err
				return true
			}
			if n == 0 {
				werr = io.ErrUnexpectedEOF // no progress: do not spin
				return true
			}
			total += int64(n)
			for n > 0 {
				if n >= len(bufs[0]) {
					n -= len(bufs[0])
					bufs = bufs[1:]
				} else {
					bufs[0] = bufs[0][n:]
					n = 0
				}
			}
		}
		return true
	}); err != nil {
		return total, err
	}
	return total, werr
}
