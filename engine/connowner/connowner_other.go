//go:build !linux

package connowner

import "net"

func lookup(local, remote *net.TCPAddr) (Owner, error) { return Owner{}, ErrUnsupported }

func parent(pid int) (int, error) { return 0, ErrUnsupported }

func startTime(pid int) uint64 { return 0 }

func command(pid int) string { return "" }
