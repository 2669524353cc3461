package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/etcdreg"
	"github.com/ambr-dev/ambr/engine/supervise"
)

// runLock is what `ambr run` holds on its instance: the instance's LOCK
// alone, or with --replica N, LOCK shared and LOCK.N.
type runLock interface{ Unlock() }

type flockUnlocker struct{ unlock func() error }

func (f flockUnlocker) Unlock() { _ = f.unlock() }

// lockRun takes the locks of a run (replica < 0: without replicas).
func lockRun(dir string, replica int) (runLock, error) {
	if replica >= 0 {
		return supervise.LockReplica(dir, replica)
	}
	l, err := supervise.Lock(dir)
	if err != nil {
		if rs := supervise.ReadReplicaStatuses(dir); len(rs) > 0 {
			var ns []string
			for _, r := range rs {
				ns = append(ns, fmt.Sprint(r.Replica))
			}
			return nil, fmt.Errorf("instance %s runs as replicas (%s); start another one with --replica N, or stop them first", filepath.Base(dir), strings.Join(ns, ", "))
		}
		return nil, err
	}
	return flockUnlocker{l.Unlock}, nil
}

// runStatusFile writes and removes the status of a run: RUN, or RUN.N with
// the replica's role.
type runStatusFile struct {
	dir     string
	replica int // < 0: no replicas
	mu      sync.Mutex
	role    string
	epoch   uint64
}

func (f *runStatusFile) write(s supervise.RunStatus) error {
	if f.replica < 0 {
		return supervise.WriteRunStatus(f.dir, s)
	}
	f.mu.Lock()
	role, epoch := f.role, f.epoch
	f.mu.Unlock()
	return supervise.WriteReplicaStatus(f.dir, supervise.ReplicaStatus{Replica: f.replica, Role: role, Epoch: epoch, RunStatus: s})
}

func (f *runStatusFile) remove() {
	if f.replica < 0 {
		supervise.RemoveRunStatus(f.dir)
		return
	}
	supervise.RemoveReplicaStatus(f.dir, f.replica)
}

// isPrimary says whether the replica runs as primary now.
func (f *runStatusFile) isPrimary() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.role == "primary"
}

func (f *runStatusFile) setRole(role string, epoch uint64) {
	f.mu.Lock()
	f.role, f.epoch = role, epoch
	f.mu.Unlock()
}

// replicaOptions makes opts those of replica n of the instance in dir:
// a standby until the election makes it primary. onRole is told each role
// change after the status file knows it.
func replicaOptions(opts *engine.Options, dir string, n int, ttl time.Duration, logger *slog.Logger, status *runStatusFile, onRole func()) {
	if n < 0 {
		return
	}
	opts.Replica = n
	onWait := func(reason string) { logger.Info(fmt.Sprintf("replica %d: %s", n, reason)) }
	if reg, ok := opts.Registry.(*etcdreg.Registry); ok {
		// Across hosts: the primary holds an etcd lease (its own TTL;
		// --lease-ttl is the file election's).
		opts.Election = &etcdreg.Election{Registry: reg, Instance: opts.Name, Dir: dir, Replica: n, OnWait: onWait}
	} else {
		opts.Election = &engine.FileElection{Dir: dir, Replica: n, TTL: ttl, OnWait: onWait}
	}
	opts.OnRole = func(role string, epoch uint64) {
		status.setRole(role, epoch)
		onRole()
	}
}

// deposedError says why a replica stopped when a newer primary took over,
// and what to do; nil for other errors.
func deposedError(err error) error {
	var d *engine.DeposedError
	if !errors.As(err, &d) {
		return nil
	}
	return problemErrorf("%v; nothing of it was acknowledged after the takeover. Run the same command again to rejoin as a standby", d)
}

// replicaView is one replica in `ambr ls`.
type replicaView struct {
	Replica int    `json:"replica"`
	Role    string `json:"role"`
	Epoch   uint64 `json:"epoch,omitempty"`
	ICPid   int    `json:"ic_pid"`
	AppPid  int    `json:"app_pid,omitempty"`
}

func replicaViews(rs []supervise.ReplicaStatus) []replicaView {
	var out []replicaView
	for _, r := range rs {
		out = append(out, replicaView{Replica: r.Replica, Role: r.Role, Epoch: r.Epoch, ICPid: r.ICPid, AppPid: r.AppPid})
	}
	return out
}

// printReplicas prints the replicas of the instances that have them, under
// the table of `ambr ls`.
func printReplicas(w io.Writer, views []instanceView) {
	for _, v := range views {
		for _, r := range v.Replicas {
			epoch := ""
			if r.Role == "primary" {
				epoch = fmt.Sprintf(" (epoch %d)", r.Epoch)
			}
			fmt.Fprintf(w, "%s: replica %d %s%s, ic pid %s, app pid %s\n", v.Name, r.Replica, r.Role, epoch, pidText(r.ICPid), pidText(r.AppPid))
		}
	}
}

// replicaToKill finds the status of the replica `ambr kill` is to kill:
// the primary, replica n, or (neither) the primary if there are replicas.
func replicaToKill(dir, name string, primary bool, n int) (supervise.RunStatus, bool, error) {
	if primary && n >= 0 {
		return supervise.RunStatus{}, false, usageErrorf("choose one of --primary, --replica N")
	}
	rs := supervise.ReadReplicaStatuses(dir)
	if len(rs) == 0 {
		if primary || n >= 0 {
			return supervise.RunStatus{}, false, usageErrorf("instance %s has no running replicas ('ambr ls' shows what runs)", name)
		}
		return supervise.RunStatus{}, false, nil
	}
	for _, r := range rs {
		if n >= 0 && r.Replica == n || n < 0 && r.Role == "primary" {
			return r.RunStatus, true, nil
		}
	}
	if n >= 0 {
		return supervise.RunStatus{}, false, usageErrorf("replica %d of %s is not running ('ambr ls' shows its replicas)", n, name)
	}
	return supervise.RunStatus{}, false, usageErrorf("instance %s has no primary right now (a standby is taking over); try again", name)
}
