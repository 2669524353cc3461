package bench

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fadviseDontNeed asks the kernel to drop a synced file's pages from the
// page cache (posix_fadvise DONTNEED; no privileges needed).
func fadviseDontNeed(f *os.File) error {
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// isTmpfs reports whether dir is on a RAM file system (not a real disk).
func isTmpfs(dir string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false
	}
	return st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC
}

// childAttr makes the giant suite's children die with the bench process.
func childAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }

// fdatasync is what the engine's log syncs with (engine/vfs).
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
