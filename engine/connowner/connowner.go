package connowner

import (
	"errors"
	"fmt"
	"net"
	"slices"
)

// ErrUnsupported is returned where the platform gives no way to resolve a
// connection to its process.
var ErrUnsupported = errors.New("connowner: resolving a connection to its process is supported on Linux only")

// ErrNotFound is returned when the other end of a connection is gone (the
// process closed it or exited) or belongs to no process this one may see.
var ErrNotFound = errors.New("connowner: no process holds the other end of the connection")

// Owner is who holds the other end of a connection.
type Owner struct {
	// UID owns the socket.
	UID int
	// PIDs are the processes that hold it open, in increasing order: one,
	// unless it was inherited or passed on. Empty if no process readable by
	// this one holds it (another user's, without privileges).
	PIDs []int
}

// Pid is the process that holds the socket, for messages and pairing: the
// first of PIDs, or 0.
func (o Owner) Pid() int {
	if len(o.PIDs) == 0 {
		return 0
	}
	return o.PIDs[0]
}

// String describes the owner for a warning line.
func (o Owner) String() string {
	switch len(o.PIDs) {
	case 0:
		return fmt.Sprintf("a process of uid %d that has exited or that this one cannot see", o.UID)
	case 1:
		return fmt.Sprintf("pid %d (uid %d)", o.PIDs[0], o.UID)
	default:
		return fmt.Sprintf("pids %v (uid %d)", o.PIDs, o.UID)
	}
}

// Lookup returns the owner of the other end of conn, an accepted loopback
// TCP connection.
func Lookup(conn net.Conn) (Owner, error) {
	local, ok1 := conn.LocalAddr().(*net.TCPAddr)
	remote, ok2 := conn.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return Owner{}, fmt.Errorf("connowner: %T is not a TCP connection", conn)
	}
	if !remote.IP.IsLoopback() {
		return Owner{}, fmt.Errorf("connowner: %s is not a loopback address", remote)
	}
	// The other end's socket has our remote address as its local one.
	return lookup(remote, local)
}

// IsDescendant reports whether pid is root or one of root's descendants.
func IsDescendant(pid, root int) bool {
	for seen := 0; pid > 1 && seen < 4096; seen++ {
		if pid == root {
			return true
		}
		ppid, err := parent(pid)
		if err != nil {
			return false
		}
		pid = ppid
	}
	return pid == root
}

// AllDescendants reports whether every pid of o is root or a descendant of
// root, and o has at least one.
func (o Owner) AllDescendants(root int) bool {
	return len(o.PIDs) > 0 && !slices.ContainsFunc(o.PIDs, func(p int) bool { return !IsDescendant(p, root) })
}

// StartTime is when pid started, in clock ticks since boot (0 if unknown):
// with the pid, it tells a process apart from a later one given the same
// pid.
func StartTime(pid int) uint64 { return startTime(pid) }

// Command is pid's command name ("" if unknown), for messages.
func Command(pid int) string { return command(pid) }
