package supervise

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofrs/flock"
)

// holdShared takes path's lock shared, the way Locked and lockedFile probe
// it, and lets it go after d.
func holdShared(t *testing.T, path string, d time.Duration) {
	t.Helper()
	probe := flock.New(path)
	ok, err := probe.TryRLock()
	if err != nil || !ok {
		t.Fatalf("probe lock %s: ok %v, %v", path, ok, err)
	}
	time.AfterFunc(d, func() { _ = probe.Unlock() })
}

// A start during a status probe's instant of holding the lock is not
// refused as "already running" (seen as a restart refused just after
// SIGKILL while ambr ls ran).
func TestLockWaitsOutAProbe(t *testing.T) {
	dir := t.TempDir()
	holdShared(t, filepath.Join(dir, LockFile), 30*time.Millisecond)
	l, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock during a probe: %v", err)
	}
	if !Locked(dir) {
		t.Fatal("Locked after Lock: false")
	}
	_ = l.Unlock()

	// LockReplica takes LOCK shared, which a probe does not stop; LOCK.1
	// exclusively, which it does for an instant.
	holdShared(t, filepath.Join(dir, ReplicaLockFile(1)), 30*time.Millisecond)
	r, err := LockReplica(dir, 1)
	if err != nil {
		t.Fatalf("LockReplica during a probe: %v", err)
	}
	if !lockedFile(filepath.Join(dir, ReplicaLockFile(1))) {
		t.Fatal("lockedFile after LockReplica: false")
	}
	r.Unlock()
}

// A lock held by a running coordinator is still refused, with the message
// that says so.
func TestLockRefusedWhileHeld(t *testing.T) {
	dir := t.TempDir()
	r, err := LockReplica(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Unlock()
	if _, err := LockReplica(dir, 0); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second replica 0: %v, want already running", err)
	}
	if _, err := Lock(dir); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("Lock beside replicas: %v, want already running", err)
	}
	if _, err := LockReplica(dir, 1); err != nil {
		t.Fatalf("replica 1 beside replica 0: %v", err)
	}
}
