package logfmt

import (
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
	// SegmentFormatVersion is the version of the segment file layout.
	SegmentFormatVersion = 1
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
	if h.Version != SegmentFormatVersion {
		return h, fmt.Errorf("%w: segment format version %d, this build reads %d", ErrCorrupt, h.Version, SegmentFormatVersion)
	}
	return h, nil
}

// SegmentReader returns the records of one log segment in order. It reads a
// live segment safely: the writer appends whole records and syncs, so a
// reader that meets an incomplete record at the end stops there with a torn
// tail error and the offset of the last good record.
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
}

// NewSegmentReader reads the segment header from r. A segment shorter than
// its header is a torn tail at offset 0.
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
	h, err := ParseSegmentHeader(hdr[:])
	if err != nil {
		return nil, fmt.Errorf("%w at offset 0", err)
	}
	s.header = h
	s.off = SegmentHeaderSize
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
	s.buf = s.buf[:RecordFixedSize]
	n, err := io.ReadFull(s.r, s.buf)
	switch {
	case err == io.EOF:
		return nil, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, fmt.Errorf("%w at offset %d: record header cut short after %d of %d bytes", ErrTornTail, s.off, n, RecordFixedSize)
	case err != nil:
		return nil, fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	length, _ := RecordLength(s.buf)
	if length < RecordFixedSize || length > MaxRecordSize || s.buf[recOffVersion] != RecordFormatVersion {
		return nil, s.damaged(fmt.Sprintf("record length %d / version %d invalid", length, s.buf[recOffVersion]))
	}
	if cap(s.buf) < length {
		nb := make([]byte, length)
		copy(nb, s.buf)
		s.buf = nb
	}
	s.buf = s.buf[:length]
	n, err = io.ReadFull(s.r, s.buf[RecordFixedSize:])
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		// A damaged length field also looks like this; damaged tells the
		// two apart by looking for valid records in what was read.
		s.buf = s.buf[:RecordFixedSize+n]
		return nil, s.damaged(fmt.Sprintf("record of %d bytes cut short after %d", length, RecordFixedSize+n))
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

// damaged classifies a bad record at s.off. A write of the log is synced
// as a whole before the next one begins, and its first record carries
// FlagWriteStart. If a valid record that starts a later write follows the
// damage, the damaged write had been synced: the damage is in the middle of
// the log (corrupt). Otherwise the damage lies in the last write, which a
// crash interrupted before it was synced, so nothing in it was ever
// acknowledged: a torn tail, even if some of its later pages reached the
// disk. s.buf holds what was read of the bad record so far.
func (s *SegmentReader) damaged(reason string) error {
	rest, err := io.ReadAll(s.r)
	if err != nil {
		return fmt.Errorf("logfmt: read record at offset %d: %w", s.off, err)
	}
	tail := append(append([]byte(nil), s.buf...), rest...)
	if at, ok := findWriteStart(tail[1:], s.last); ok {
		return fmt.Errorf("%w at offset %d: %s (a later write begins at offset %d)", ErrCorrupt, s.off, reason, s.off+1+int64(at))
	}
	return fmt.Errorf("%w at offset %d: %s", ErrTornTail, s.off, reason)
}

// reason strips a sentinel's text from err so the caller can wrap the bare
// reason with its own sentinel and offset.
func reason(err error) string {
	msg := err.Error()
	for _, sentinel := range []error{ErrCorrupt, ErrTruncated, ErrMalformed} {
		msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
	}
	return msg
}

// findWriteStart looks for a complete, checksummed record that starts a
// write (FlagWriteStart) with a sequence number above after, anywhere in b.
// It is only used on the error path.
func findWriteStart(b []byte, after int64) (int, bool) {
	var r Record
	for i := 0; i+RecordFixedSize <= len(b); i++ {
		c := b[i:]
		if c[recOffVersion] != RecordFormatVersion || c[recOffFlags]&FlagWriteStart == 0 {
			continue
		}
		length := int(binary.LittleEndian.Uint32(c[recOffLength:]))
		if length < RecordFixedSize || length > len(c) {
			continue
		}
		if seq := int64(binary.LittleEndian.Uint64(c[recOffSeq:])); seq <= after {
			continue
		}
		if _, err := DecodeRecord(c, &r); err == nil {
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
	return &SegmentReader{r: r, header: h, off: off, last: prev, buf: make([]byte, 0, 64<<10)}
}
