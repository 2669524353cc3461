package supervise

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestKeepStoredBuildWritesNothing: once a build is stored, resolving it
// again writes nothing under the home (after a disk-full stop, ambr run must
// be able to start again), and a stored copy that does not match its name is
// replaced.
func TestKeepStoredBuildWritesNothing(t *testing.T) {
	home := t.TempDir()
	app := filepath.Join(t.TempDir(), "app.sh")
	if err := os.WriteFile(app, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := Resolve(t.Context(), app, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	st1, err := os.Stat(first.Path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Resolve(t.Context(), app, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(second.Path)
	if err != nil {
		t.Fatal(err)
	}
	if second.Path != first.Path || second.SHA256 != first.SHA256 || st1.Sys().(*syscall.Stat_t).Ino != st2.Sys().(*syscall.Stat_t).Ino || !st1.ModTime().Equal(st2.ModTime()) {
		t.Fatalf("the stored build was written again: %+v (inode %d) then %+v (inode %d)", first, st1.Sys().(*syscall.Stat_t).Ino, second, st2.Sys().(*syscall.Stat_t).Ino)
	}
	entries, _ := os.ReadDir(BinDir(home))
	if len(entries) != 1 {
		t.Fatalf(".bin holds %d entries, want the one build: %v", len(entries), entries)
	}
	// A damaged stored copy is not trusted: it is stored again.
	if err := os.WriteFile(first.Path, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	third, err := Resolve(t.Context(), app, home, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum, err := fileSHA256(third.Path); err != nil || sum != first.SHA256 {
		t.Fatalf("the damaged copy was kept: sha256 %s, %v; want %s", sum, err, first.SHA256)
	}
}
