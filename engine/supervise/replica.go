package supervise

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gofrs/flock"
)

// ReplicaStatus is the RUN.N of replica N of an instance, as `ambr ls` and
// `ambr kill` read it.
type ReplicaStatus struct {
	Replica int `json:"replica"`
	// Role is "standby", "primary", "checkpointer" or "waiting checkpointer"
	// (another one holds the role); Epoch the epoch it became primary in.
	Role  string `json:"role"`
	Epoch uint64 `json:"epoch,omitempty"`
	RunStatus
}

// ReplicaRunFile and ReplicaLockFile are replica n's status and lock.
func ReplicaRunFile(n int) string  { return RunFile + "." + strconv.Itoa(n) }
func ReplicaLockFile(n int) string { return LockFile + "." + strconv.Itoa(n) }

// ReplicaLock is what a replica holds while it runs: LOCK shared (so that a
// run without --replica, which takes it exclusively, cannot run beside
// replicas) and LOCK.N exclusively (no two processes are replica N).
type ReplicaLock struct{ shared, own *flock.Flock }

// Unlock releases both locks.
func (l *ReplicaLock) Unlock() {
	_ = l.own.Unlock()
	_ = l.shared.Unlock()
}

// LockReplica takes replica n's locks in dir.
func LockReplica(dir string, n int) (*ReplicaLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	shared := flock.New(filepath.Join(dir, LockFile))
	ok, err := tryLockPatiently(shared.TryRLockContext)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", shared.Path(), err)
	}
	if !ok {
		b, _ := os.ReadFile(shared.Path())
		return nil, fmt.Errorf("instance %s is running without replicas (coordinator pid %s); stop it first, then start every replica with --replica", filepath.Base(dir), strings.TrimSpace(string(b)))
	}
	path := filepath.Join(dir, ReplicaLockFile(n))
	own := flock.New(path)
	if ok, err = tryLockPatiently(own.TryLockContext); err != nil || !ok {
		_ = shared.Unlock()
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		b, _ := os.ReadFile(path)
		return nil, fmt.Errorf("replica %d of %s is already running (coordinator pid %s); stop it first, or give another --replica", n, filepath.Base(dir), strings.TrimSpace(string(b)))
	}
	_ = os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return &ReplicaLock{shared: shared, own: own}, nil
}

// WriteReplicaStatus replaces dir/RUN.N (atomically; not durable state).
func WriteReplicaStatus(dir string, s ReplicaStatus) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	name := ReplicaRunFile(s.Replica)
	tmp := filepath.Join(dir, name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

// RemoveReplicaStatus removes dir/RUN.N.
func RemoveReplicaStatus(dir string, n int) { _ = os.Remove(filepath.Join(dir, ReplicaRunFile(n))) }

// ReadReplicaStatuses returns the status of every running replica in dir,
// by replica number: a RUN.N counts only while its LOCK.N is held.
func ReadReplicaStatuses(dir string) []ReplicaStatus {
	names, _ := filepath.Glob(filepath.Join(dir, RunFile+".*"))
	var out []ReplicaStatus
	for _, p := range names {
		n, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(p), RunFile+"."))
		if err != nil || n < 0 {
			continue
		}
		b, err := os.ReadFile(p)
		var s ReplicaStatus
		if err != nil || json.Unmarshal(b, &s) != nil || s.Replica != n {
			continue
		}
		if !lockedFile(filepath.Join(dir, ReplicaLockFile(n))) {
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Replica < out[j].Replica })
	return out
}

func lockedFile(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	l := flock.New(path)
	ok, err := l.TryRLock()
	if err != nil {
		return false
	}
	if ok {
		_ = l.Unlock()
		return false
	}
	return true
}
