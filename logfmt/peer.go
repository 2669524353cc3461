package logfmt

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
)

// Coordinator ↔ coordinator frames. ambr's own protocol between ICs (the
// AMBROSIA app protocol only covers app ↔ IC). One TCP connection carries
// one direction of messages, from a sender IC to a receiver IC; acks flow
// back on the same connection. Part of the format.
//
//	frame: +-------------+---------+----------------+
//	       | length u32  | kind u8 | payload        |   length = 1 + len(payload)
//	       +-------------+---------+----------------+
//
//	Hello    sender → receiver  magic "ambrpeer", version u16, from name, to name
//	                            (names: u16 length + UTF-8), then the sender's
//	                            epoch u64 if it runs as replicas (absent: 0)
//	Welcome  receiver → sender  expect i64: the next sender sequence number it wants
//	Reject   receiver → sender  reason (UTF-8): wrong instance, not ready
//	Message  sender → receiver  seq i64, then one framed app-protocol RPC message
//	                            in delivery form
//	Ack      receiver → sender  seq i64: everything up to seq is durably logged
//	Messages sender → receiver  seq i64, count u32, then count framed RPC messages
//	                            (delivery form) with sequence numbers seq, seq+1, …
//	                            (version 2 on; a run costs one frame, not one each)
//	Lost     sender → receiver  acked i64, expect i64: the receiver's Welcome expects
//	                            a message it had acknowledged (version 3 on)
//
// From version 3 on, a connection is TLS 1.3 with client certificates
// unless both coordinators run without it (measurements only); the frames
// inside are the same.
const (
	PeerHello    byte = 1
	PeerWelcome  byte = 2
	PeerReject   byte = 3
	PeerMessage  byte = 4
	PeerAck      byte = 5
	PeerMessages byte = 6
	PeerLost     byte = 7

	peerMagic = "ambrpeer"
	// PeerVersion is the version this build speaks: 2 added Messages, 3
	// Lost and TLS. A
	// receiver refuses a hello of another version, so that mixed builds
	// fail at once with a clear reason rather than on the first new frame.
	PeerVersion     = 3
	MaxPeerFrame    = MaxMessageSize + 64
	peerFrameHeader = 5
)

// PeerFrame is one decoded coordinator ↔ coordinator frame.
type PeerFrame struct {
	Kind byte
	// From and To name the instances (Hello).
	From, To string
	// Seq is the sender sequence number (Message; the first one of
	// Messages), the next one expected (Welcome) or the last one durably
	// logged (Ack).
	Seq int64
	// Msg is the framed RPC message (Message), or Count of them back to
	// back (Messages); Reason the text of a Reject.
	Msg    []byte
	Count  int
	Reason string
	// Acked is what the receiver had acknowledged (Lost; Seq is then what
	// it expects now).
	Acked int64
	// Epoch is the sender's primary epoch (Hello; 0 without replicas).
	Epoch uint64
}

func appendPeerFrame(dst []byte, kind byte, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+len(payload)))
	dst = append(dst, kind)
	return append(dst, payload...)
}

// AppendPeerHello appends a Hello frame of a sender without replicas.
func AppendPeerHello(dst []byte, from, to string) []byte { return AppendPeerHelloAt(dst, from, to, 0) }

// AppendPeerHelloAt appends a Hello frame from a sender at epoch (its
// primary's epoch; 0 without replicas, and then left out).
func AppendPeerHelloAt(dst []byte, from, to string, epoch uint64) []byte {
	p := append([]byte(peerMagic), 0, 0)
	binary.LittleEndian.PutUint16(p[len(peerMagic):], PeerVersion)
	p, _ = appendName(p, from)
	p, _ = appendName(p, to)
	if epoch != 0 {
		p = binary.LittleEndian.AppendUint64(p, epoch)
	}
	return appendPeerFrame(dst, PeerHello, p)
}

// AppendPeerSeq appends a Welcome or Ack frame.
func AppendPeerSeq(dst []byte, kind byte, seq int64) []byte {
	return appendPeerFrame(dst, kind, binary.LittleEndian.AppendUint64(nil, uint64(seq)))
}

// AppendPeerLost appends a Lost frame: the receiver had acknowledged up to
// acked but now expects expect.
func AppendPeerLost(dst []byte, acked, expect int64) []byte {
	p := binary.LittleEndian.AppendUint64(nil, uint64(acked))
	return appendPeerFrame(dst, PeerLost, binary.LittleEndian.AppendUint64(p, uint64(expect)))
}

// AppendPeerReject appends a Reject frame.
func AppendPeerReject(dst []byte, reason string) []byte {
	return appendPeerFrame(dst, PeerReject, []byte(reason))
}

// PeerMessageFrameSize is the size of a Message frame carrying a message of
// msgLen bytes.
func PeerMessageFrameSize(msgLen int) int { return peerFrameHeader + 8 + msgLen }

// AppendPeerMessage appends a Message frame carrying msg with sender
// sequence number seq, without copying msg twice.
func AppendPeerMessage(dst []byte, seq int64, msg []byte) []byte {
	return append(AppendPeerMessageHeader(dst, seq, len(msg)), msg...)
}

// PeerMessageHeaderSize is the size of the head of a Message frame: what
// comes before the message.
const PeerMessageHeaderSize = peerFrameHeader + 8

// AppendPeerMessageHeader appends the head of a Message frame carrying a
// message of msgLen bytes with sender sequence number seq: the caller sends
// the message itself right after it.
func AppendPeerMessageHeader(dst []byte, seq int64, msgLen int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+8+msgLen))
	dst = append(dst, PeerMessage)
	return binary.LittleEndian.AppendUint64(dst, uint64(seq))
}

// PeerMessagesFrameSize is the size of a Messages frame carrying messages of
// msgsLen bytes in all.
func PeerMessagesFrameSize(msgsLen int) int { return peerFrameHeader + 8 + 4 + msgsLen }

// AppendPeerMessagesHeader appends the head of a Messages frame for count
// messages of msgsLen bytes in all, the first with sequence number seq: the
// caller appends the messages themselves, in order, right after it.
func AppendPeerMessagesHeader(dst []byte, seq int64, count, msgsLen int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(1+8+4+msgsLen))
	dst = append(dst, PeerMessages)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(seq))
	return binary.LittleEndian.AppendUint32(dst, uint32(count))
}

// ParsePeerFrame decodes the payload of a frame of the given kind.
func ParsePeerFrame(kind byte, p []byte) (PeerFrame, error) {
	f := PeerFrame{Kind: kind}
	switch kind {
	case PeerHello:
		if len(p) < len(peerMagic)+2 || string(p[:len(peerMagic)]) != peerMagic {
			return f, fmt.Errorf("%w: not an ambr coordinator hello", ErrMalformed)
		}
		if v := binary.LittleEndian.Uint16(p[len(peerMagic):]); v != PeerVersion {
			return f, fmt.Errorf("%w: peer protocol version %d, this build speaks %d", ErrMalformed, v, PeerVersion)
		}
		cur := &byteCursor{b: p[len(peerMagic)+2:]}
		f.From, f.To = cur.name(), cur.name()
		if cur.err == nil && len(cur.b) == 8 {
			f.Epoch = binary.LittleEndian.Uint64(cur.b)
			cur.b = cur.b[8:]
			if f.Epoch == 0 {
				return f, fmt.Errorf("%w: a hello's epoch is absent, not 0", ErrMalformed)
			}
		}
		if cur.err != nil || len(cur.b) != 0 || f.From == "" || f.To == "" {
			return f, fmt.Errorf("%w: bad hello names", ErrMalformed)
		}
	case PeerWelcome, PeerAck:
		if len(p) != 8 {
			return f, fmt.Errorf("%w: %d-byte sequence frame", ErrMalformed, len(p))
		}
		f.Seq = int64(binary.LittleEndian.Uint64(p))
	case PeerReject:
		f.Reason = string(p)
	case PeerLost:
		if len(p) != 16 {
			return f, fmt.Errorf("%w: %d-byte lost frame", ErrMalformed, len(p))
		}
		f.Acked = int64(binary.LittleEndian.Uint64(p))
		f.Seq = int64(binary.LittleEndian.Uint64(p[8:]))
	case PeerMessage:
		if len(p) < 8 {
			return f, fmt.Errorf("%w: message frame of %d bytes", ErrMalformed, len(p))
		}
		f.Seq = int64(binary.LittleEndian.Uint64(p))
		f.Msg = p[8:]
		m, n, err := ParseMessage(f.Msg)
		if err != nil || n != len(f.Msg) || m.Type != TypeRPC {
			return f, fmt.Errorf("%w: a peer message must hold exactly one RPC", ErrMalformed)
		}
		f.Count = 1
	case PeerMessages:
		if len(p) < 12 {
			return f, fmt.Errorf("%w: messages frame of %d bytes", ErrMalformed, len(p))
		}
		f.Seq = int64(binary.LittleEndian.Uint64(p))
		f.Count = int(binary.LittleEndian.Uint32(p[8:]))
		f.Msg = p[12:]
		if f.Count < 1 {
			return f, fmt.Errorf("%w: messages frame of no messages", ErrMalformed)
		}
		if err := EachPeerMessage(f.Msg, f.Count, nil); err != nil {
			return f, err
		}
	default:
		return f, fmt.Errorf("%w: unknown peer frame kind %d", ErrMalformed, kind)
	}
	return f, nil
}

// EachPeerMessage checks that msgs is exactly count framed RPC messages
// back to back, calling f (if not nil) with the offset just past each one.
func EachPeerMessage(msgs []byte, count int, f func(end int)) error {
	off := 0
	for i := 0; i < count; i++ {
		m, n, err := parseMessage(msgs[off:], off)
		if err != nil || m.Type != TypeRPC {
			return fmt.Errorf("%w: message %d of a messages frame is not an RPC", ErrMalformed, i)
		}
		off += n
		if f != nil {
			f(off)
		}
	}
	if off != len(msgs) {
		return fmt.Errorf("%w: a messages frame holds %d bytes after its %d messages", ErrMalformed, len(msgs)-off, count)
	}
	return nil
}

// PeerReader reads frames from a coordinator connection. It starts with a
// small read buffer and a small frame limit, for the hello: a connection
// that has not said who it is costs a few KiB, whatever its first bytes
// claim. Once the peer is known, Open lifts the limit, and Grow enlarges the
// buffer when traffic starts. A frame larger than the buffer is read into memory that grows as
// its bytes arrive, never allocated up front for a length a peer claims.
type PeerReader struct {
	r       io.Reader
	br      *bufio.Reader
	buf     []byte
	owned   []byte // the last frame's own buffer, room included, if it has one (Owned)
	discard int    // bytes of the last frame still in br
	limit   int    // the largest frame length accepted
}

// Sizes of a PeerReader: before and after Open.
const (
	// MaxHelloFrame bounds frames before Open: a hello is two names and a
	// few bytes.
	MaxHelloFrame   = 4 << 10
	peerSmallBuffer = 4 << 10
	peerLargeBuffer = 256 << 10
	// peerGrowStep is the most a giant frame's buffer grows ahead of the
	// bytes that have arrived.
	peerGrowStep = 4 << 20
	// peerKeepBuffer is the largest giant frame buffer a reader keeps for
	// the next frame; a larger one is the caller's (Owned).
	peerKeepBuffer = 4 * peerLargeBuffer
)

// PeerRoom is the room in front of a frame's payload in a buffer of its own
// (PeerReader.Owned): with the 8-byte sequence number of a Message frame,
// WireHeaderSize bytes in front of its message, where the receiver writes
// the header of the log record that holds the message alone.
const PeerRoom = WireHeaderSize - 8

// NewPeerReader returns a reader over r that accepts frames up to
// MaxHelloFrame until Open is called.
func NewPeerReader(r io.Reader) *PeerReader {
	return &PeerReader{r: r, br: bufio.NewReaderSize(r, peerSmallBuffer), limit: MaxHelloFrame}
}

// Open lifts the frame limit to MaxPeerFrame, once the peer has proven who
// it is. The buffer stays small (a link that carries nothing costs little)
// until Grow.
func (r *PeerReader) Open() { r.limit = MaxPeerFrame }

// Grow gives the reader its large buffer, in which frames that fit are
// parsed in place, keeping whatever was already received. Receivers call it
// when traffic starts; call it between frames, when the last frame's Msg
// is no longer needed.
func (r *PeerReader) Grow() error {
	if err := r.skipLast(); err != nil {
		return err
	}
	if r.br.Size() >= peerLargeBuffer {
		return nil
	}
	rest, _ := r.br.Peek(r.br.Buffered())
	src := r.r
	if len(rest) > 0 {
		src = io.MultiReader(bytes.NewReader(bytes.Clone(rest)), r.r)
	}
	r.br = bufio.NewReaderSize(src, peerLargeBuffer)
	return nil
}

// Next returns the next frame; its Msg aliases an internal buffer valid
// until the next call. io.EOF at a clean end.
func (r *PeerReader) Next() (PeerFrame, error) {
	r.owned = nil
	if err := r.skipLast(); err != nil {
		return PeerFrame{}, err
	}
	var hdr [peerFrameHeader]byte
	if _, err := io.ReadFull(r.br, hdr[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			return PeerFrame{}, fmt.Errorf("%w: peer frame header cut short", ErrTruncated)
		}
		return PeerFrame{}, err
	}
	n := int(binary.LittleEndian.Uint32(hdr[:4]))
	if n < 1 || n > r.limit {
		if r.limit < MaxPeerFrame && n >= 1 && n <= MaxPeerFrame {
			return PeerFrame{}, fmt.Errorf("%w: a %d-byte frame before the hello (at most %d)", ErrMalformed, n, r.limit)
		}
		return PeerFrame{}, fmt.Errorf("%w: peer frame length %d", ErrMalformed, n)
	}
	// A frame that fits in the read buffer is parsed where it lies (no
	// copy) and skipped on the next call.
	if n-1 <= r.br.Size() {
		p, err := r.br.Peek(n - 1)
		if err != nil {
			return PeerFrame{}, fmt.Errorf("%w: peer frame cut short: %v", ErrTruncated, err)
		}
		r.discard = n - 1
		return ParsePeerFrame(hdr[4], p)
	}
	// Grow with the bytes that arrive: a claimed length costs nothing
	// until it is sent. The buffer doubles, up to the frame's size, each
	// time it is full, so it never holds more than twice what has arrived
	// and a giant frame is copied about once in all (growing by append's
	// 1.25× allocated ~5× the frame and copied it ~4 times).
	// The payload goes after PeerRoom bytes of room (see Owned).
	total := PeerRoom + n - 1
	if cap(r.buf) < PeerRoom {
		r.buf = make([]byte, 0, min(total, peerLargeBuffer))
	}
	r.buf = r.buf[:PeerRoom]
	for len(r.buf) < total {
		if len(r.buf) == cap(r.buf) {
			old := cap(r.buf)
			r.buf = growBuffer(r.buf, nextCap(old, total, peerLargeBuffer))
			releaseGiant(old)
		}
		step := min(total-len(r.buf), cap(r.buf)-len(r.buf), peerGrowStep)
		k, err := io.ReadFull(r.br, r.buf[len(r.buf):len(r.buf)+step])
		r.buf = r.buf[:len(r.buf)+k]
		if err != nil {
			return PeerFrame{}, fmt.Errorf("%w: peer frame cut short after %d of %d bytes: %v", ErrTruncated, len(r.buf)-PeerRoom, n-1, err)
		}
	}
	f, err := ParsePeerFrame(hdr[4], r.buf[PeerRoom:])
	if cap(r.buf) > peerKeepBuffer {
		// A giant frame's buffer is not kept for the connection's life;
		// f.Msg still holds it until the caller is done, and the caller
		// may keep it (Owned).
		if err == nil {
			r.owned = r.buf
		}
		r.buf = nil
	}
	return f, err
}

// Owned returns the buffer of the frame last returned by Next if the frame
// was read into a buffer of its own, which the reader let go of (a frame of
// more than about a MiB): PeerRoom bytes of room, then the frame's payload
// (for a Message frame: the sequence number, then Msg, which ends it). The
// caller may keep it and write over the room and the sequence number. It
// returns nil for a frame parsed in the reader's buffer, which is valid
// only until the next call to Next.
func (r *PeerReader) Owned() []byte { return r.owned }

func (r *PeerReader) skipLast() error {
	if r.discard == 0 {
		return nil
	}
	_, err := r.br.Discard(r.discard)
	r.discard = 0
	return err
}

// Buffered reports whether a whole frame has already been received, so that
// Next returns without waiting for the connection: receivers use it to
// gather a batch of frames before handing them on.
func (r *PeerReader) Buffered() bool {
	if r.skipLast() != nil || r.br.Buffered() < peerFrameHeader {
		return false
	}
	hdr, err := r.br.Peek(peerFrameHeader)
	if err != nil {
		return false
	}
	n := int(binary.LittleEndian.Uint32(hdr[:4]))
	return n >= 1 && r.br.Buffered() >= peerFrameHeader+n-1
}
