package logfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Log segment constants. Part of the format.
const (
	// SegmentMagic opens every log segment file.
	SegmentMagic = "ambrlog\x00"
	// SegmentFormatVersion is the version of the segment file layout this
	// package writes. A version 2 segment holds version 2 records (whose
	// writes may be pipelined, see Record.UnsyncedFrom); a version 1
	// segment, version 1 records (each write synced before the next). Both
	// are read.
	SegmentFormatVersion = 2
	// SegmentFormatVersion1 is the segment layout written before writes
	// were pipelined.
	SegmentFormatVersion1 = 1
	// SegmentHeaderSize is the size of the header at the start of a segment.
	SegmentHeaderSize = 16
)

// SegmentHeader is the fixed header of a log segment file.
type SegmentHeader struct {
	Version uint32
	// Number is n in the segment's file name log-<n>.
	Number uint32
}

// AppendSegmentHeader appends the 16-byte header of segment number n.
func AppendSegmentHeader(dst []byte, n uint32) []byte {
	dst = append(dst, SegmentMagic...)
	dst = binary.LittleEndian.AppendUint32(dst, SegmentFormatVersion)
	return binary.LittleEndian.AppendUint32(dst, n)
}

// ParseSegmentHeader decodes a segment header. A short input is ErrTruncated
// (a segment whose creation was cut short); a wrong magic or version is
// ErrCorrupt.
func ParseSegmentHeader(b []byte) (SegmentHeader, error) {
	if len(b) < SegmentHeaderSize {
		return SegmentHeader{}, fmt.Errorf("%w: segment header of %d bytes, needs %d", ErrTruncated, len(b), SegmentHeaderSize)
	}
	if string(b[:8]) != SegmentMagic {
		return SegmentHeader{}, fmt.Errorf("%w: not an ambr log segment (magic %q)", ErrCorrupt, b[:8])
	}
	h := SegmentHeader{Version: binary.LittleEndian.Uint32(b[8:]), Number: binary.LittleEndian.Uint32(b[12:])}
	if h.Version != SegmentFormatVersion && h.Version != SegmentFormatVersion1 {
		return h, fmt.Errorf("%w: segment format version %d, this build reads %d and %d", ErrCorrupt, h.Version, SegmentFormatVersion1, SegmentFormatVersion)
	}
	return h, nil
}

// RecordVersion returns the format version of the records a segment of this
// header holds.
func (h SegmentHeader) RecordVersion() byte {
	if h.Version == SegmentFormatVersion1 {
		return RecordFormatVersion1
	}
	return RecordFormatVersion
}

// SegmentReader returns the records of one log segment in order, of either
// segment format version. It reads a live segment safely: the writer appends
// whole records and syncs, so a reader that meets an incomplete record at
// the end stops there with a torn tail error and the offset of the last good
// record. The writer extends a segment with zeros ahead of its records
// (an fdatasync that need not commit a new file size is cheaper), so zeros
// from a record boundary to the end of the file are a clean end; a segment
// closed in order has none.
//
//	r, err := NewSegmentReader(f)
//	for {
//		rec, err := r.Next()
//		if err == io.EOF { break }             // clean end
//		if IsTornTail(err) { break }          // end of the log; r.Offset() is where it was cut
//		if err != nil { return err }          // damage in the middle: ErrCorrupt
//		...
//	}
type SegmentReader struct {
	r      io.Reader
	header SegmentHeader
	off    int64 // offset after the last good record
	buf    []byte
	rec    Record
	last   int64 // sequence number of the last good record, 0 before the first
	err    error
	// live: SetLive.
	live bool
	// recVersion and fixed: the version of the segment's records and the
	// size of their fixed part.
	recVersion byte
	fixed      int
	// own: each record is read into a buffer of its own (SetOwnBuffers);
	// scratch holds the start of the next until its length is known.
	own     bool
	scratch []byte
}

// SetOwnBuffers makes Next read each record into a buffer of its own rather
// than into one it reuses: the Record's Messages and RecordBytes then stay
// valid after later calls, and the caller may keep them and write over
// them (the Record struct and its Sources are still reused). Records and
// errors are the same.
func (s *SegmentReader) SetOwnBuffers() { s.own = true }

// RecordBytes returns the encoded bytes of the record the last Next
// returned, whose tail its Messages are. Without SetOwnBuffers the next
// call reuses them.
func (s *SegmentReader) RecordBytes() []byte { return s.buf }

// NewSegmentReader reads the segment header from r. A segment shorter than
// its header, or whose header reads as zeros (written, never synced, lost),
// is a torn tail at offset 0.
func NewSegmentReader(r io.Reader) (*SegmentReader, error) {
	s := &SegmentReader{r: r, buf: make([]byte, 0, 64<<10)}
	var hdr [SegmentHeaderSize]byte
	n, err := io.ReadFull(r, hdr[:])
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w at offset 0: segment header cut short after %d bytes", ErrTornTail, n)
		}
		return nil, fmt.Errorf("logfmt: read segment header: %w", err)
	}
	if hdr == [SegmentHeaderSize]byte{} {
		// The header was written but never synced, and its sector did not
		// reach the disk: nothing in the segment was ever synced.
		return nil, fmt.Errorf("%w at offset 0: segment header reads as zeros (never synced)", ErrTornTail)
	}
	h, err := ParseSegmentHeader(hdr[:])
	if err != nil {
		return nil, fmt.Errorf("%w at offset 0", err)
	}
	s.header = h
	s.off = SegmentHeaderSize
	s.recVersion = h.RecordVersion()
	s.fixed = recordFixedSize(s.recVersion)
	return s, nil
}

// Header returns the segment's header.
func (s *SegmentReader) Header() SegmentHeader { return s.header }

// Offset returns the offset just past the last record Next returned: after a
// torn tail, the length to truncate the segment to.
func (s *SegmentReader) Offset() int64 { return s.off }

// LastSeq returns the sequence number of the last good record, 0 if none.
func (s *SegmentReader) LastSeq() int64 { return s.last }

// Next returns the next record. The Record and the bytes it points into are
// reused by the following call. At a clean end it returns io.EOF; at an
// incomplete or unverifiable last record, an error for which IsTornTail is
// true; at a damaged record followed by valid ones, an ErrCorrupt error. Both
// name the offset. Once Next returns an error it returns it again.
func (s *SegmentReader) Next() (*Record, error) {
	if s.err != nil {
		return nil, s.err
	}
	rec, err := s.next()
	if err != nil {
		s.err = err
		return nil, err
	}
	return rec, nil
}

func (s *SegmentReader) next() (*Record, error) {
	// The smallest fixed part first: it holds the length and version.
	if s.own {
		// Not into the last record's buffer, which is the caller's.
		if s.scratch == nil {
			s.scratch = make([]byte, RecordFixedSize)
		}
		s.buf = s.scratch
	}
	s.buf = s.buf[:RecordFixedSizeV1]
	n, err := io.ReadFull(s.r, s.buf)
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		if isZeros(s.buf[:n]) {
			return nil, io.EOF // the end of a preallocated segment
		}
		return nil, fmt.Errorf("%w at offset %d: record header cut short after %d of %d bytes", ErrTornTail, s.off, n, s.fixed)
	case err != nil:
		return nil, fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	length, _ := RecordLength(s.buf)
	if length == 0 && isZeros(s.buf) {
		return nil, s.zeros()
	}
	if length < s.fixed || length > MaxRecordSize || s.buf[recOffVersion] != s.recVersion {
		return nil, s.damaged(fmt.Sprintf("record length %d / version %d invalid", length, s.buf[recOffVersion]))
	}
	if cap(s.buf) < length || s.own {
		nb := make([]byte, length)
		copy(nb, s.buf)
		s.buf = nb
	}
	s.buf = s.buf[:length]
	n, err = io.ReadFull(s.r, s.buf[RecordFixedSizeV1:])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// A damaged length field also looks like this; damaged tells the
		// two apart by looking for valid records in what was read.
		s.buf = s.buf[:RecordFixedSizeV1+n]
		return nil, s.damaged(fmt.Sprintf("record of %d bytes cut short after %d", length, RecordFixedSizeV1+n))
	case err != nil:
		return nil, fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	if _, err := DecodeRecord(s.buf, &s.rec); err != nil {
		return nil, s.damaged(reason(err))
	}
	if s.last != 0 && s.rec.Seq != s.last+1 {
		return nil, fmt.Errorf("%w at offset %d: record sequence %d follows %d", ErrCorrupt, s.off, s.rec.Seq, s.last)
	}
	s.last = s.rec.Seq
	s.off += int64(length)
	return &s.rec, nil
}

// damaged classifies a bad record at s.off, the record that should carry
// sequence number s.last+1 (call it N). The first record of each write of
// the log carries FlagWriteStart and UnsyncedFrom: the lowest sequence
// number written but not yet known synced when the write was issued (0:
// none). A crash leaves damage only in writes not yet synced, whose pages
// may reach the disk in any order. So if some valid write start after the
// damage was issued when N was already synced (UnsyncedFrom 0 or above N),
// the damage is in the middle of the log: corrupt. Otherwise every write
// after N was issued while N was not durable, nothing from N on was ever
// acknowledged, and the damage is a torn tail, even if later pages reached
// the disk. In a version 1 segment every write was synced before the next
// began (UnsyncedFrom is always 0), so any later write start means
// corruption. A reader that has read no record of the segment (and was not
// resumed after one) takes N as 1: a writer that starts a segment at
// another sequence number must sync the segment's first write before it
// issues another, so that no later write of the segment can have been
// issued while the first was unsynced. s.buf holds what was read of the
// bad record so far.
func (s *SegmentReader) damaged(reason string) error {
	rest, err := io.ReadAll(s.r)
	if err != nil {
		return fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	return s.classify(reason, rest)
}

// classify is damaged's rule, given the bytes after s.buf to the end.
func (s *SegmentReader) classify(reason string, rest []byte) error {
	tail := append(append([]byte(nil), s.buf...), rest...)
	if at, ok := findSyncedAfter(tail[1:], s.recVersion, s.last); ok {
		return fmt.Errorf("%w at offset %d: %s (a later write begins at offset %d)", ErrCorrupt, s.off, reason, s.off+1+int64(at))
	}
	return fmt.Errorf("%w at offset %d: %s", ErrTornTail, s.off, reason)
}

// zeros handles a record that reads as zeros at s.off. The log writer
// extends a segment with zeros ahead of its writes (see SegmentReader), so
// zeros from s.off to the end of the file are where the records end: a
// clean end, io.EOF. Zeros followed by anything else are a record that
// never reached the disk, classified as damaged does: a torn tail, or
// corruption if a later write began after this record was synced.
func (s *SegmentReader) zeros() error {
	rest, err := io.ReadAll(s.r)
	if err != nil {
		return fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	if isZeros(rest) {
		return io.EOF
	}
	if s.live {
		return fmt.Errorf("%w at offset %d: record reads as zeros, bytes after it do not (a write that reached the file between two reads)", ErrTornTail, s.off)
	}
	return s.classify("record reads as zeros", rest)
}

// SetLive(true) tells the reader that the segment may be being written. The
// writer writes over the zeros it extended the segment with, so a reader
// may read zeros where the next record goes, and then, in its next read,
// bytes written since: that is a torn tail for now, not damage. Without
// SetLive (recovery, which reads a segment no one writes) zeros followed by
// a write issued after their record was synced are corruption: a synced
// record lost.
func (s *SegmentReader) SetLive(live bool) { s.live = live }

// isZeros reports whether b is all zero bytes, comparing a page at a time.
func isZeros(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

var zeroPage [4096]byte

// reason strips a sentinel's text from err so the caller can wrap the bare
// reason with its own sentinel and offset.
func reason(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{ErrCorrupt, ErrTruncated, ErrMalformed} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return msg
}

// findSyncedAfter looks anywhere in b for a complete, checksummed record of
// format version v that starts a write (FlagWriteStart) with a sequence
// number above after and that was issued when record after+1 was known to
// be synced (UnsyncedFrom 0 or above after+1). It is only used on the error
// path.
func findSyncedAfter(b []byte, v byte, after int64) (int, bool) {
	var r Record
	fixed := recordFixedSize(v)
	for i := 0; i+fixed <= len(b); i++ {
		c := b[i:]
		if c[recOffVersion] != v || c[recOffFlags]&FlagWriteStart == 0 {
			continue
		}
		length := int(binary.LittleEndian.Uint32(c[recOffLength:]))
		if length < fixed || length > len(c) {
			continue
		}
		if seq := int64(binary.LittleEndian.Uint64(c[recOffSeq:])); seq <= after {
			continue
		}
		if _, err := DecodeRecord(c, &r); err != nil {
			continue
		}
		if r.UnsyncedFrom == 0 || r.UnsyncedFrom > after+1 {
			return i, true
		}
	}
	return 0, false
}

// ResumeSegmentReader returns a reader of segment h that starts at the
// record boundary off (r must be positioned there), as if it had just read
// the record with sequence number prev. An index of record offsets lets a
// reader start anywhere without reading what comes before.
func ResumeSegmentReader(r io.Reader, h SegmentHeader, off int64, prev int64) *SegmentReader {
	v := h.RecordVersion()
	return &SegmentReader{r: r, header: h, off: off, last: prev, buf: make([]byte, 0, 64<<10), recVersion: v, fixed: recordFixedSize(v)}
}
