package vfs

import (
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
