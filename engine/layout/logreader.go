package layout

import (
	"bufio"
	"fmt"
	"io"

	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// readBufSize is the read-ahead under a segment reader, which reads each
// record in two parts: without it a scan costs two system calls a record.
const readBufSize = 256 << 10

// LogReader returns an instance's records in order across its segments. It
// is safe on a live log: an incomplete record at the end of the last segment
// ends the log (TornTail reports it), as the writer may be in the middle of
// appending it. A segment the MANIFEST seals (a replica took over from the
// primary that wrote it) ends at its seal: whatever a deposed primary
// appended after it is never read.
type LogReader struct {
	fs    vfs.FS
	in    *Instance
	segs  []uint64
	i     int
	f     vfs.File
	sr    *logfmt.SegmentReader
	last  int64 // sequence number of the last record returned
	seg   uint64
	off   int64
	torn  error
	notes []string
	// endSeg, endOff: where the valid part of the last segment read ends.
	endSeg uint64
	endOff int64
	own    bool // OwnBuffers
	strict bool // Strict
}

// Strict reads the log as one no one writes, as recovery does: zeros where
// a record should be, followed by a write issued after that record was
// synced, are corruption (a synced record lost). Without it the log is
// read as one that may be being written (logfmt.SegmentReader.SetLive):
// followers and tools read running instances, where a write that reaches
// the file between two reads leaves the same bytes, and take it as a torn
// tail. Call it before the first Next.
func (lr *LogReader) Strict() {
	lr.strict = true
	if lr.sr != nil {
		lr.sr.SetLive(false)
	}
}

// OwnBuffers makes the reader read each record into a buffer of its own
// (logfmt.SegmentReader.SetOwnBuffers), which the caller may keep: the
// bytes of the records Next returns stay valid (not the Record struct and
// its Sources, which are reused). Call it before the first Next.
func (lr *LogReader) OwnBuffers() {
	lr.own = true
	if lr.sr != nil {
		lr.sr.SetOwnBuffers()
	}
}

// RecordBytes returns the encoded bytes of the record the last Next
// returned (logfmt.SegmentReader.RecordBytes).
func (lr *LogReader) RecordBytes() []byte {
	if lr.sr == nil {
		return nil
	}
	return lr.sr.RecordBytes()
}

// NewLogReader opens the log at segment from (0: the first present).
func (in *Instance) NewLogReader(from uint64) (*LogReader, error) {
	segs, err := in.Segments()
	if err != nil {
		return nil, err
	}
	lr := &LogReader{fs: in.FS, in: in}
	for _, s := range segs {
		if s >= from {
			lr.segs = append(lr.segs, s)
		}
	}
	return lr, nil
}

// NewLogReaderAt opens the log at a known record boundary: segment seg at
// byte offset off, where the record after prev starts (from an index).
func (in *Instance) NewLogReaderAt(seg uint64, off int64, prev int64) (*LogReader, error) {
	lr, err := in.NewLogReader(seg)
	if err != nil {
		return nil, err
	}
	if len(lr.segs) == 0 || lr.segs[0] != seg {
		return nil, fmt.Errorf("%s: %w: segment %d is gone", in.SegmentPath(seg), logfmt.ErrCorrupt, seg)
	}
	path := in.SegmentPath(seg)
	f, err := lr.fs.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open log segment: %w", err)
	}
	var hdr [logfmt.SegmentHeaderSize]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: read header: %w", path, err)
	}
	h, err := logfmt.ParseSegmentHeader(hdr[:])
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := st.Size()
	if seal, ok := in.Manifest.Seal(seg); ok && seal < size {
		size = seal
	}
	lr.f, lr.seg, lr.last = f, seg, prev
	lr.sr = logfmt.ResumeSegmentReader(bufio.NewReaderSize(io.NewSectionReader(f, off, max(size-off, 0)), readBufSize), h, off, prev)
	lr.sr.SetLive(true)
	return lr, nil
}

// End is where the valid part of the last segment read so far ends: its
// number and the byte offset after its last whole record (0 if even its
// header is incomplete). After Next returned io.EOF it is the end of the
// log, the offset a promoted replica seals the segment at.
func (lr *LogReader) End() (segment uint64, offset int64) { return lr.endSeg, lr.endOff }

// Position is where the last record returned starts: its segment number and
// byte offset.
func (lr *LogReader) Position() (segment uint64, offset int64) { return lr.seg, lr.off }

// TornTail returns the torn-tail error that ended the log, nil if it ended
// cleanly.
func (lr *LogReader) TornTail() error { return lr.torn }

// Notes returns remarks about torn tails met before the last segment, which
// an earlier crash left and which lost nothing acknowledged.
func (lr *LogReader) Notes() []string { return lr.notes }

// Next returns the next record, io.EOF at the end of the log. The record is
// reused by the next call. Errors name the segment file.
func (lr *LogReader) Next() (*logfmt.Record, error) {
	for {
		if lr.sr == nil {
			if lr.i >= len(lr.segs) {
				return nil, io.EOF
			}
			if err := lr.open(lr.segs[lr.i]); err != nil {
				return nil, err
			}
			if lr.sr == nil {
				continue // an empty segment
			}
		}
		off := lr.sr.Offset()
		rec, err := lr.sr.Next()
		if err == nil {
			if lr.last != 0 && rec.Seq != lr.last+1 {
				return nil, fmt.Errorf("%s at offset %d: %w: record %d follows record %d", lr.in.SegmentPath(lr.seg), off, logfmt.ErrCorrupt, rec.Seq, lr.last)
			}
			lr.last, lr.off = rec.Seq, off
			return rec, nil
		}
		path := lr.in.SegmentPath(lr.seg)
		lastSeg := lr.i == len(lr.segs)-1
		lr.endSeg, lr.endOff = lr.seg, lr.sr.Offset()
		switch {
		case err == io.EOF:
		case logfmt.IsTornTail(err) && lastSeg:
			lr.torn = fmt.Errorf("%s: %w", path, err)
		case logfmt.IsTornTail(err):
			lr.notes = append(lr.notes, fmt.Sprintf("%s: %v (left by a crash; the next segment continues)", path, err))
		default:
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		lr.closeSegment()
		lr.i++
	}
}

func (lr *LogReader) open(n uint64) error {
	path := lr.in.SegmentPath(n)
	f, err := lr.fs.Open(path)
	if err != nil {
		return fmt.Errorf("open log segment: %w", err)
	}
	var r io.Reader = f
	if seal, ok := lr.in.Manifest.Seal(n); ok {
		r = io.NewSectionReader(f, 0, seal)
	}
	sr, err := logfmt.NewSegmentReader(bufio.NewReaderSize(r, readBufSize))
	if err != nil {
		f.Close()
		lr.endSeg, lr.endOff = n, 0
		if _, sealed := lr.in.Manifest.Seal(n); sealed && logfmt.IsTornTail(err) {
			// Sealed before its header was whole: it holds no record.
			lr.i++
			return nil
		}
		if logfmt.IsTornTail(err) {
			// A segment whose header was being written holds no record.
			if lr.i == len(lr.segs)-1 {
				lr.torn = fmt.Errorf("%s: %w", path, err)
			} else {
				lr.notes = append(lr.notes, fmt.Sprintf("%s: %v (an empty segment left by a crash)", path, err))
			}
			lr.i++
			return nil
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if h := sr.Header(); uint64(h.Number) != n {
		f.Close()
		return fmt.Errorf("%s: %w: header says segment %d", path, logfmt.ErrCorrupt, h.Number)
	}
	if lr.own {
		sr.SetOwnBuffers()
	}
	sr.SetLive(!lr.strict)
	lr.f, lr.sr, lr.seg = f, sr, n
	return nil
}

func (lr *LogReader) closeSegment() {
	if lr.f != nil {
		lr.f.Close()
	}
	lr.f, lr.sr = nil, nil
}

// Close releases the open segment.
func (lr *LogReader) Close() error {
	lr.closeSegment()
	lr.i = len(lr.segs)
	return nil
}
