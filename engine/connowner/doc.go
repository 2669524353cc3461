// Package connowner tells which local process holds the other end of a
// loopback TCP connection, so that a coordinator can refuse app
// connections from processes it did not start. The app protocol carries no
// credentials (it must stay byte-exact for AMBROSIA's bindings), so the
// check is made outside it, by the kernel's own bookkeeping:
//
//	accepted conn: local 127.0.0.1:L  remote 127.0.0.1:R
//	/proc/net/tcp{,6}: the socket with local R, remote L → its uid and inode
//	/proc/*/fd/*  → "socket:[inode]" → the pids that hold it
//	/proc/PID/stat → parent pid, up to the supervisor: a descendant or not
//
// This works on Linux. Elsewhere Lookup returns ErrUnsupported and callers
// fall back to what they can check (see engine.AppPolicy).
//
// What it cannot stop: root (or the same user, with ptrace) can read the
// log and the app's memory anyway; a process the app itself hands its
// socket to counts as a holder.
package connowner
