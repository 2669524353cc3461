package connowner

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/prometheus/procfs"
)

func lookup(local, remote *net.TCPAddr) (Owner, error) {
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return Owner{}, fmt.Errorf("connowner: %w", err)
	}
	read := fs.NetTCP
	if local.IP.To4() == nil {
		read = fs.NetTCP6
	}
	lines, err := read()
	if err != nil {
		return Owner{}, fmt.Errorf("connowner: read the socket table: %w", err)
	}
	var inode uint64
	var uid int
	for _, l := range lines {
		if int(l.LocalPort) == local.Port && int(l.RemPort) == remote.Port && l.LocalAddr.Equal(local.IP) && l.RemAddr.Equal(remote.IP) {
			inode, uid = l.Inode, int(l.UID)
			break
		}
	}
	if inode == 0 {
		return Owner{}, ErrNotFound
	}
	procs, err := fs.AllProcs()
	if err != nil {
		return Owner{}, fmt.Errorf("connowner: list processes: %w", err)
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	o := Owner{UID: uid}
	for _, p := range procs {
		targets, err := p.FileDescriptorTargets()
		if err != nil {
			continue // gone, or another user's
		}
		if slices.Contains(targets, want) {
			o.PIDs = append(o.PIDs, p.PID)
		}
	}
	slices.Sort(o.PIDs)
	return o, nil
}

func parent(pid int) (int, error) {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0, err
	}
	st, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return st.PPID, nil
}

func startTime(pid int) uint64 {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return 0
	}
	st, err := p.Stat()
	if err != nil {
		return 0
	}
	return st.Starttime
}

func command(pid int) string {
	p, err := procfs.NewProc(pid)
	if err != nil {
		return ""
	}
	c, err := p.Comm()
	if err != nil {
		return ""
	}
	return c
}
