package supervise

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
)

// Run status and lock file names inside an instance directory.
const (
	RunFile  = "RUN"
	LockFile = "LOCK"
)

// RunStatus is what `ambr ls` and `ambr kill` read about a running instance.
type RunStatus struct {
	ICPid  int `json:"ic_pid"`
	AppPid int `json:"app_pid,omitempty"`
	// AppStarted (Unix ns) tells app processes apart: pids are reused.
	AppStarted int64  `json:"app_started,omitempty"`
	App        string `json:"app"`
	RecvPort   int    `json:"recv_port,omitempty"`
	SendPort   int    `json:"send_port,omitempty"`
	Started    int64  `json:"started"`
	Restarts   int    `json:"app_restarts"`
	// Problems are conditions that need an operator, by peer instance
	// (lost acknowledged input).
	Problems map[string]string `json:"problems,omitempty"`
}

// WriteRunStatus replaces dir/RUN (atomically; it is not durable state).
func WriteRunStatus(dir string, s RunStatus) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, RunFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, RunFile))
}

// ReadRunStatus reads dir/RUN; ok is false if there is none or no
// coordinator holds the instance's lock (a killed one leaves RUN behind,
// and its pid may linger as a zombie or be reused: the lock does not lie).
func ReadRunStatus(dir string) (s RunStatus, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, RunFile))
	if err != nil || json.Unmarshal(b, &s) != nil {
		return RunStatus{}, false
	}
	return s, Locked(dir)
}

// Locked reports whether a coordinator holds the instance's lock.
func Locked(dir string) bool {
	l := flock.New(filepath.Join(dir, LockFile))
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

// probeGrace is how long a lock is retried before it counts as held. Locked
// and lockedFile (ambr ls, the TUI, the replicas' status readers) probe a lock
// by taking it shared for an instant, and a start that tried only once during
// such an instant was refused as "already running" although nothing ran.
const probeGrace = 500 * time.Millisecond

// tryLockPatiently calls a flock TryLockContext or TryRLockContext for up to
// probeGrace: a lock that is still held then is held by a running process.
func tryLockPatiently(try func(context.Context, time.Duration) (bool, error)) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeGrace)
	defer cancel()
	ok, err := try(ctx, 5*time.Millisecond)
	if errors.Is(err, context.DeadlineExceeded) {
		return false, nil
	}
	return ok, err
}

// RemoveRunStatus removes dir/RUN.
func RemoveRunStatus(dir string) { _ = os.Remove(filepath.Join(dir, RunFile)) }

// Alive reports whether a process with pid exists.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Lock takes the instance's lock, so that only one coordinator ever runs an
// instance. The pid is written into the file for messages.
func Lock(dir string) (*flock.Flock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	l := flock.New(path)
	ok, err := tryLockPatiently(l.TryLockContext)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if !ok {
		b, _ := os.ReadFile(path)
		pid := strings.TrimSpace(string(b))
		return nil, fmt.Errorf("instance %s is already running (coordinator pid %s); stop it first, or choose another --name", filepath.Base(dir), pid)
	}
	_ = os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
	return l, nil
}
