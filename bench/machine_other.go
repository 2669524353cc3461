//go:build !linux

package bench

import (
	"os"
	"syscall"
)

// fadviseDontNeed is a no-op here: reads may come from the page cache.
func fadviseDontNeed(*os.File) error { return nil }

func isTmpfs(string) bool { return false }

func childAttr() *syscall.SysProcAttr { return nil }

func fdatasync(f *os.File) error { return f.Sync() }
