package logfmt

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// MaxMessageSize is the default limit on the size of one message (for a
// MessageReader) or of one record body (for a RecordReader). A size field
// above the limit is taken for garbage. It is a safety limit of this
// implementation, not part of the format; checkpoint state bytes, which
// stream outside any frame, are not subject to it.
const MaxMessageSize = 1 << 30

const (
	// streamBufSize is the size of the bufio.Reader under a stream decoder.
	streamBufSize = 64 << 10
	// minGrowth is the least a stream decoder's buffer grows by when it
	// reads a frame larger than the buffer. The buffer grows with the bytes
	// that actually arrive, so a garbage size field cannot make the decoder
	// allocate much more than the stream holds.
	minGrowth = 64 << 10
	// freshFirst is the most a fresh read allocates before the bytes
	// arrive.
	freshFirst = 8 << 20
	// FreshRoom is the room an owning MessageReader leaves in front of each
	// message's type byte, in the buffer of its own that it reads the
	// message into (see Buf): enough for a frame header of any size and a
	// record's wire header, so that the owner can frame a message's bytes
	// anew in place (the coordinator frames an app's RPC for delivery over
	// its destination, and logs a giant self-call as a record of its own
	// where it lies).
	FreshRoom = 32
)

// MessageReader decodes the stream of bare messages that the app sends to the
// IC. It reads through a bufio.Reader and reuses its buffer: what Next returns
// is valid until the next call to Next.
//
//	mr := logfmt.NewMessageReader(conn)
//	for {
//		m, err := mr.Next()
//		if err == io.EOF {
//			break
//		} else if err != nil {
//			return err
//		}
//		if m.Type == logfmt.TypeCheckpoint {
//			io.Copy(checkpointFile, mr.State())
//		}
//	}
type MessageReader struct {
	// MaxMessageSize is the largest message (size field) accepted; a larger
	// one is an error that wraps ErrMalformed. Zero means MaxMessageSize.
	MaxMessageSize int

	s wireStream
}

// NewOwningMessageReader returns a MessageReader that reads from r and
// gives each message's Data a buffer of its own, which the caller may keep
// (rather than one reused by the next call): no copy for a caller that
// keeps messages.
func NewOwningMessageReader(r io.Reader) *MessageReader {
	mr := NewMessageReader(r)
	mr.s.fresh = true
	return mr
}

// Buf returns, for an owning MessageReader, the buffer of its own that the
// message last returned by Next was read into: FreshRoom bytes of room, the
// type byte, then the message's Data, which ends it. The caller owns all of
// it. It returns nil for a reader that is not owning, or before a message.
func (r *MessageReader) Buf() []byte { return r.s.last }

// NewMessageReader returns a MessageReader that reads from r.
func NewMessageReader(r io.Reader) *MessageReader {
	mr := &MessageReader{}
	mr.s.init(r)
	return mr
}

// Next returns the next message. It returns io.EOF, unwrapped, if the stream
// ends cleanly between two messages; an error that wraps io.ErrUnexpectedEOF
// and ErrTruncated if it ends inside one; and an error that wraps
// ErrMalformed if the bytes cannot be a message (a size below 1 or above the
// limit, a Checkpoint message without a valid state length). Errors are
// sticky. If the previous message was a Checkpoint message, Next first skips
// what the caller did not read of its state.
func (r *MessageReader) Next() (Message, error) {
	s := &r.s
	if s.err != nil {
		return Message{}, s.err
	}
	if err := s.skipState(); err != nil {
		return Message{}, s.fail(err)
	}
	start := s.off
	size, err := s.readSize(start)
	if err != nil {
		return Message{}, s.fail(err)
	}
	limit := r.MaxMessageSize
	if limit <= 0 {
		limit = MaxMessageSize
	}
	if size < 1 || size > int64(limit) {
		return Message{}, s.fail(fmt.Errorf("%w: message size %d at offset %d (want 1 to %d)", ErrMalformed, size, start, limit))
	}
	b, err := s.readN(int(size))
	if err != nil {
		return Message{}, s.fail(s.midItem(err, "message", start))
	}
	m := Message{Type: MessageType(b[0]), Data: b[1:]}
	if m.Type == TypeCheckpoint {
		n, err := m.CheckpointStateLen()
		if err != nil {
			return Message{}, s.fail(invalidInside(err, "checkpoint message", start))
		}
		s.state.remaining = n
	}
	return m, nil
}

// State returns a reader of the state bytes that follow the Checkpoint
// message last returned by Next: exactly N bytes, then io.EOF. If the stream
// ends before N bytes, it returns an error that wraps io.ErrUnexpectedEOF. The
// caller need not read it all; Next skips the rest. After any other message
// the reader is empty. The reader is valid until the next call to Next.
func (r *MessageReader) State() io.Reader { return &r.s.state }

// Offset returns the number of bytes consumed from the stream so far.
func (r *MessageReader) Offset() int64 { return r.s.off }

// RecordReader decodes the stream of records that the IC sends to the app:
// each a 24-byte WireHeader, then a body of framed messages. When a record's
// last message is a Checkpoint message, its state bytes follow the record
// directly on the stream, outside the record's Size; State reads them. It
// reads through a bufio.Reader and reuses its buffer: what Next returns is
// valid until the next call to Next.
type RecordReader struct {
	// MaxBodySize is the largest record body accepted; a larger one is an
	// error that wraps ErrMalformed. Zero means MaxMessageSize.
	MaxBodySize int
	// VerifyCheckBytes makes Next compare each record's CheckBytes with
	// CheckBytes(body) and fail, with an error that wraps ErrMalformed, if
	// they differ. Off by default: AMBROSIA bindings ignore the check bytes.
	VerifyCheckBytes bool

	s   wireStream
	hdr [WireHeaderSize]byte
}

// NewRecordReader returns a RecordReader that reads from r.
func NewRecordReader(r io.Reader) *RecordReader {
	rr := &RecordReader{}
	rr.s.init(r)
	return rr
}

// Next returns the next record's header and body. The body holds the framed
// messages; walk it with NewMessageIter. Next checks that the body is a whole
// number of frames and that a Checkpoint message, if any, is the last one.
// It returns io.EOF, unwrapped, if the stream ends cleanly between records;
// an error that wraps io.ErrUnexpectedEOF and ErrTruncated if it ends inside
// one (or inside the state bytes that follow one); and an error that wraps
// ErrMalformed for bytes that cannot be a record. Errors are sticky.
func (r *RecordReader) Next() (WireHeader, []byte, error) {
	s := &r.s
	if s.err != nil {
		return WireHeader{}, nil, s.err
	}
	if err := s.skipState(); err != nil {
		return WireHeader{}, nil, s.fail(err)
	}
	start := s.off
	n, err := io.ReadFull(s.br, r.hdr[:])
	s.off += int64(n)
	if err == io.EOF {
		return WireHeader{}, nil, s.fail(io.EOF)
	} else if err != nil {
		return WireHeader{}, nil, s.fail(s.midItem(err, "record header", start))
	}
	h, err := ParseWireHeader(r.hdr[:])
	if err != nil {
		return WireHeader{}, nil, s.fail(fmt.Errorf("%w (record at offset %d)", err, start))
	}
	limit := r.MaxBodySize
	if limit <= 0 {
		limit = MaxMessageSize
	}
	if h.BodyLen() > limit {
		return WireHeader{}, nil, s.fail(fmt.Errorf("%w: record body of %d bytes at offset %d exceeds the limit of %d", ErrMalformed, h.BodyLen(), start, limit))
	}
	body, err := s.readN(h.BodyLen())
	if err != nil {
		return WireHeader{}, nil, s.fail(s.midItem(err, "record", start))
	}
	if r.VerifyCheckBytes {
		if sum := CheckBytes(body); sum != h.CheckBytes {
			return WireHeader{}, nil, s.fail(fmt.Errorf("%w: record at offset %d has check bytes %#x, body sums to %#x", ErrMalformed, start, uint64(h.CheckBytes), uint64(sum)))
		}
	}
	stateLen, err := checkRecordBody(body)
	if err != nil {
		return WireHeader{}, nil, s.fail(invalidInside(err, "body of record", start))
	}
	s.state.remaining = stateLen
	return h, body, nil
}

// checkRecordBody checks that body is a whole number of frames with a
// Checkpoint message, if any, last, and returns the number of state bytes
// that follow the record.
func checkRecordBody(body []byte) (int64, error) {
	it := NewMessageIter(body)
	var last Message
	for {
		start := it.Offset()
		m, ok := it.Next()
		if !ok {
			break
		}
		if last.Type == TypeCheckpoint && start > 0 { // zero last is an RPC
			return 0, fmt.Errorf("%w: checkpoint message is not the last of its record", ErrMalformed)
		}
		last = m
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	if it.Offset() == 0 || last.Type != TypeCheckpoint {
		return 0, nil
	}
	return last.CheckpointStateLen()
}

// State returns a reader of the state bytes that follow the record last
// returned by Next, if its last message is a Checkpoint message: exactly N
// bytes, then io.EOF. If the stream ends before N bytes, it returns an error
// that wraps io.ErrUnexpectedEOF. The caller need not read it all; Next skips
// the rest. After any other record the reader is empty. The reader is valid
// until the next call to Next.
func (r *RecordReader) State() io.Reader { return &r.s.state }

// Offset returns the number of bytes consumed from the stream so far.
func (r *RecordReader) Offset() int64 { return r.s.off }

// wireStream is the machinery the two stream decoders share.
type wireStream struct {
	br    *bufio.Reader
	off   int64 // bytes consumed from br
	buf   []byte
	fresh bool   // see readN
	last  []byte // with fresh: the buffer of the last item, room included
	state stateReader
	err   error // sticky
}

// init sets s up to read from r. s must not move afterwards: its state
// reader points back at it.
func (s *wireStream) init(r io.Reader) {
	s.br = bufio.NewReaderSize(r, streamBufSize)
	s.state.s = s
}

// fail makes err sticky and returns it.
func (s *wireStream) fail(err error) error {
	s.err = err
	return err
}

// midItem turns err, from reading inside an item that started at offset
// start, into the error to return: the end of the stream there is
// ErrTruncated and io.ErrUnexpectedEOF.
func (s *wireStream) midItem(err error, what string, start int64) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: stream ends inside %s at offset %d (%w)", ErrTruncated, what, start, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("logfmt: read %s at offset %d: %w", what, start, err)
}

// invalidInside returns the error for err, found decoding inside a whole
// item read from the stream (what, at offset start). The item is complete, so
// running out of bytes inside it means the item is malformed: the error wraps
// ErrMalformed rather than ErrTruncated, which on a stream means that the
// stream ended.
func invalidInside(err error, what string, start int64) error {
	if errors.Is(err, ErrTruncated) {
		return fmt.Errorf("%w: %s at offset %d: %v", ErrMalformed, what, start, err)
	}
	return fmt.Errorf("%w (%s at offset %d)", err, what, start)
}

// readSize reads the size varint of a message. It returns io.EOF if the
// stream ends before its first byte.
func (s *wireStream) readSize(start int64) (int64, error) {
	var b [MaxZigZagLen]byte
	n := 0
	for {
		c, err := s.br.ReadByte()
		if err != nil {
			if err == io.EOF && n == 0 {
				return 0, io.EOF
			}
			return 0, s.midItem(err, "message size", start)
		}
		s.off++
		b[n] = c
		n++
		if c < 0x80 || n == len(b) {
			break
		}
	}
	v, _, err := readZigZagAt(b[:n], int(start), "message size")
	return v, err
}

// readN reads the next size bytes into the reused buffer. For a size beyond
// the buffer's capacity the buffer grows with the bytes that arrive: each
// time it is full, to about twice its size (nextCap), so that it never holds
// much more than twice what has arrived.
//
// With fresh set, every call returns a buffer of its own, which the caller
// may keep: allocated at the message's size (up to freshFirst at once, so
// that a size field alone cannot make it allocate much), with FreshRoom
// bytes of room in front (s.last is the buffer with its room), filled
// straight from the stream.
func (s *wireStream) readN(size int) ([]byte, error) {
	lead := 0
	if s.fresh {
		lead = FreshRoom
		s.buf = make([]byte, lead, lead+min(size, freshFirst))
		s.last = nil
	}
	total := lead + size
	if total <= cap(s.buf) {
		b := s.buf[:total]
		n, err := io.ReadFull(s.br, b[lead:])
		s.off += int64(n)
		if s.fresh {
			s.buf = nil
			if err == nil {
				s.last = b
			}
		}
		return b[lead:], err
	}
	b := s.buf[:lead]
	defer func() {
		if s.fresh {
			s.buf = nil
		}
	}()
	for len(b) < total {
		if len(b) == cap(b) {
			old := cap(b)
			b = growBuffer(b, nextCap(old, total, minGrowth))
			s.buf = nil // the old buffer is garbage now
			releaseGiant(old)
		}
		n, err := io.ReadFull(s.br, b[len(b):cap(b)])
		s.off += int64(n)
		b = b[:len(b)+n]
		if err != nil {
			s.buf = b[:0]
			return nil, err
		}
	}
	s.buf = b
	if s.fresh {
		s.last = b
	}
	return b[lead:], nil
}

// skipState discards the state bytes the caller did not read.
func (s *wireStream) skipState() error {
	for s.state.remaining > 0 {
		n, err := s.br.Discard(int(min(s.state.remaining, 1<<30)))
		s.off += int64(n)
		s.state.remaining -= int64(n)
		if err != nil {
			return s.stateErr(err)
		}
	}
	return nil
}

// stateErr is the error for a failed read of checkpoint state bytes.
func (s *wireStream) stateErr(err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: stream ends inside checkpoint state, %d bytes short at offset %d (%w)", ErrTruncated, s.state.remaining, s.off, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("logfmt: read checkpoint state at offset %d: %w", s.off, err)
}

// stateReader reads the state bytes of the last Checkpoint message.
type stateReader struct {
	s         *wireStream
	remaining int64
}

// stateReadChunk bounds what one stateReader.Read reads. A reader of an
// in-process pipe (a hosted app, net.Pipe) gets all it asks for in one
// memmove, which cannot be preempted: a 64 MiB state copied in one (tens of
// milliseconds, with the page faults of a fresh buffer) held the garbage
// collector spinning to suspend the reading goroutine for as long, on one
// of the machine's CPUs.
const stateReadChunk = 1 << 20

// Read implements io.Reader. It reads at most stateReadChunk bytes.
func (r *stateReader) Read(p []byte) (int, error) {
	if r.remaining <= 0 {
		return 0, io.EOF
	}
	if r.s.err != nil {
		return 0, r.s.err
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	if len(p) > stateReadChunk {
		p = p[:stateReadChunk]
	}
	n, err := r.s.br.Read(p)
	r.s.off += int64(n)
	r.remaining -= int64(n)
	if err != nil {
		if err == io.EOF && r.remaining == 0 {
			return n, nil
		}
		return n, r.s.fail(r.s.stateErr(err))
	}
	return n, nil
}
