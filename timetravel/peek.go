package timetravel

import (
	"errors"
	"io"
	"sort"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// segStart is a segment and the sequence number of its first record; the
// marks of the last segment say where some of its records start.
type segStart struct {
	seg   uint64
	first int64
	off   int64
}

// markEvery is how often Peek notes where a record of the last segment
// starts, so that the last page is read without scanning the segment again.
const markEvery = 4096

// Peek finds the first and last records of the log without the index, in
// about the time it takes to read the last segment: it reads the first
// record of each segment and scans the last one. With Build it is how a
// never-indexed log opens at once: Range serves what is not indexed yet
// from the segments.
func (ix *Index) Peek() (first, last int64, err error) {
	segs, err := ix.in.Segments()
	if err != nil {
		return 0, 0, err
	}
	var dir []segStart
	for _, s := range segs {
		lr, err := ix.in.NewLogReaderAt(s, logfmt.SegmentHeaderSize, 0)
		if err != nil {
			return 0, 0, err
		}
		rec, err := lr.Next()
		lr.Close()
		if errors.Is(err, io.EOF) || logfmt.IsTornTail(err) {
			continue // an empty segment
		}
		if err != nil {
			return 0, 0, err
		}
		dir = append(dir, segStart{seg: s, first: rec.Seq, off: logfmt.SegmentHeaderSize})
	}
	if len(dir) == 0 {
		ix.mu.Lock()
		ix.dir = dir
		ix.mu.Unlock()
		return 0, 0, nil
	}
	// The last segment, from its first record (or where the index is).
	tail := dir[len(dir)-1]
	lr, err := ix.in.NewLogReaderAt(tail.seg, logfmt.SegmentHeaderSize, tail.first-1)
	if err != nil {
		return 0, 0, err
	}
	defer lr.Close()
	last = tail.first - 1
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if last >= tail.first {
				break // damage: the log is readable up to here
			}
			return 0, 0, err
		}
		last = rec.Seq
		if (rec.Seq-tail.first)%markEvery == 0 && rec.Seq != tail.first {
			_, off := lr.Position()
			dir = append(dir, segStart{seg: tail.seg, first: rec.Seq, off: off})
		}
	}
	ix.mu.Lock()
	ix.dir = dir
	ix.mu.Unlock()
	ix.peekFirst.Store(dir[0].first)
	ix.peekLast.Store(last)
	return dir[0].first, last, nil
}

// scanRange calls f for records from..to read straight from the log, from
// the start of the segment that holds from, or the nearest of Peek's marks
// before it.
func (ix *Index) scanRange(from, to int64, f func(IndexEntry) bool) error {
	ix.mu.Lock()
	dir := ix.dir
	ix.mu.Unlock()
	if dir == nil {
		if _, _, err := ix.Peek(); err != nil {
			return err
		}
		ix.mu.Lock()
		dir = ix.dir
		ix.mu.Unlock()
	}
	i := sort.Search(len(dir), func(i int) bool { return dir[i].first > from }) - 1
	if i < 0 {
		i = 0
	}
	if len(dir) == 0 {
		return nil
	}
	var lr *layout.LogReader
	var err error
	lr, err = ix.in.NewLogReaderAt(dir[i].seg, dir[i].off, dir[i].first-1)
	if err != nil {
		return err
	}
	defer lr.Close()
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.Seq < from {
			continue
		}
		if rec.Seq > to {
			return nil
		}
		seg, off := lr.Position()
		e := IndexEntry{Seq: rec.Seq, Segment: seg, Offset: off, Time: rec.LoggedTime(), Size: rec.EncodedSize(), Summary: summarize(rec)}
		if !f(e) {
			return nil
		}
	}
}
