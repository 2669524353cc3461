package timetravel

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PointKind says how a Point names a place in a log.
type PointKind int

// The kinds of Point.
const (
	PointSeq PointKind = iota + 1
	PointTime
	PointCheckpoint
	PointEnd
)

// Point is a parsed point in time of an instance's history.
type Point struct {
	Kind PointKind
	// Seq is the sequence number for PointSeq.
	Seq int64
	// Time is the wall-clock time for PointTime.
	Time time.Time
	// Checkpoint and Offset are K and N of checkpoint:K+N.
	Checkpoint uint64
	Offset     int64
	text       string
}

// String returns the point as the user wrote it.
func (p Point) String() string { return p.text }

// ParsePoint parses P as cli.md defines it. Errors say what forms exist.
func ParsePoint(s string) (Point, error) {
	p := Point{text: s}
	bad := func(why string) (Point, error) {
		return Point{}, fmt.Errorf("bad point %q: %s (use a sequence number like 1234 or seq:1234, an RFC 3339 time like 2026-11-21T10:15:00Z, checkpoint:K+N, or end)", s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case s == "end":
		p.Kind = PointEnd
		return p, nil
	case strings.HasPrefix(s, "checkpoint:"):
		rest := strings.TrimPrefix(s, "checkpoint:")
		k, n, hasN := strings.Cut(rest, "+")
		kv, err := strconv.ParseUint(k, 10, 64)
		if err != nil || kv == 0 {
			return bad("checkpoint number must be a positive integer")
		}
		p.Kind, p.Checkpoint = PointCheckpoint, kv
		if hasN {
			nv, err := strconv.ParseInt(n, 10, 64)
			if err != nil || nv < 0 {
				return bad("the offset after + must be a non-negative integer")
			}
			p.Offset = nv
		}
		return p, nil
	}
	num := strings.TrimPrefix(s, "seq:")
	if v, err := strconv.ParseInt(num, 10, 64); err == nil {
		if v < 1 {
			return bad("sequence numbers start at 1")
		}
		p.Kind, p.Seq = PointSeq, v
		return p, nil
	}
	if strings.HasPrefix(s, "seq:") {
		return bad("not a sequence number")
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return bad("not a number, a time, checkpoint:K+N or end")
	}
	p.Kind, p.Time = PointTime, t
	return p, nil
}
