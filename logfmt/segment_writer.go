package logfmt

import (
	"fmt"
	"io"
)

// SegmentWriter writes a log segment: the header, then records. It buffers
// one record at a time and leaves syncing to the caller, who owns the file.
// The coordinator's group commit encodes many records with AppendRecord and
// writes them at once; SegmentWriter is for tools and tests.
type SegmentWriter struct {
	w   io.Writer
	buf []byte
	off int64
}

// NewSegmentWriter writes the header of segment n to w.
func NewSegmentWriter(w io.Writer, n uint32) (*SegmentWriter, error) {
	s := &SegmentWriter{w: w}
	hdr := AppendSegmentHeader(nil, n)
	if _, err := w.Write(hdr); err != nil {
		return nil, fmt.Errorf("logfmt: write segment header: %w", err)
	}
	s.off = int64(len(hdr))
	return s, nil
}

// Append encodes and writes one record, as a write of its own
// (FlagWriteStart is set).
func (s *SegmentWriter) Append(r *Record) error {
	var err error
	flags := r.Flags
	r.Flags |= FlagWriteStart
	s.buf, err = AppendRecord(s.buf[:0], r)
	r.Flags = flags
	if err != nil {
		return err
	}
	if _, err := s.w.Write(s.buf); err != nil {
		return fmt.Errorf("logfmt: write record %d at offset %d: %w", r.Seq, s.off, err)
	}
	s.off += int64(len(s.buf))
	return nil
}

// Offset returns the number of bytes written so far.
func (s *SegmentWriter) Offset() int64 { return s.off }
