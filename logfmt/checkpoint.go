package logfmt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cespare/xxhash/v2"
)

// Checkpoint file constants. Part of the format.
const (
	// CheckpointMagic opens every checkpoint file.
	CheckpointMagic = "ambrchk\x00"
	// CheckpointFormatVersion is the version of the checkpoint layout.
	CheckpointFormatVersion = 1
	// CheckpointFixedSize is the size of the fixed part before the
	// bookkeeping and the state.
	CheckpointFixedSize = 72
	// MaxBookkeepingSize bounds the coordinator bookkeeping section.
	MaxBookkeepingSize = 1 << 34
)

// Watermark is the sequence number of the last message logged from a peer.
type Watermark struct {
	Peer string
	Seq  int64
}

// OutputStream is the coordinator's bookkeeping of what the app sent to one
// destination: the sender sequence number of the last message produced, the
// last one the destination acknowledged as logged, and the messages in
// between (framed, in the form they are sent), which must be resent after a
// reconnect or a recovery.
type OutputStream struct {
	Peer     string
	LastSeq  int64
	AckedSeq int64
	Unacked  [][]byte
}

// Checkpoint is the content of a checkpoint file chkpt-<n>: the app's state
// before record NextSeq, and the coordinator's bookkeeping at that point.
type Checkpoint struct {
	// Number is n in chkpt-<n>. Checkpoint n holds the state before the first
	// record of log segment n.
	Number uint64
	// AppVersion is the app version that produced State.
	AppVersion uint32
	// NextSeq is the first record not reflected in State.
	NextSeq int64
	// Time is when the checkpoint was taken, Unix nanoseconds.
	Time int64
	// OutCount and OutDigest describe the output stream the app had produced
	// when it took the checkpoint (see Record).
	OutCount  uint64
	OutDigest uint64
	Inputs    []Watermark
	Outputs   []OutputStream
	// State is the app's serialized state, opaque to the coordinator.
	State []byte
}

func appendName(dst []byte, name string) ([]byte, error) {
	if len(name) > MaxPeerNameLen {
		return dst, fmt.Errorf("logfmt: name of %d bytes, at most %d", len(name), MaxPeerNameLen)
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(name)))
	return append(dst, name...), nil
}

// bookkeepingSize returns the size of the bookkeeping section, or an error
// if a name is too long to encode.
func (c *Checkpoint) bookkeepingSize() (int64, error) {
	n := int64(4 + 4)
	for _, w := range c.Inputs {
		if len(w.Peer) > MaxPeerNameLen {
			return 0, fmt.Errorf("logfmt: name of %d bytes, at most %d", len(w.Peer), MaxPeerNameLen)
		}
		n += 2 + int64(len(w.Peer)) + 8
	}
	for _, o := range c.Outputs {
		if len(o.Peer) > MaxPeerNameLen {
			return 0, fmt.Errorf("logfmt: name of %d bytes, at most %d", len(o.Peer), MaxPeerNameLen)
		}
		n += 2 + int64(len(o.Peer)) + 8 + 8 + 4
		for _, m := range o.Unacked {
			n += 4 + int64(len(m))
		}
	}
	return n, nil
}

// writeBookkeeping writes the bookkeeping section to w, the buffered messages
// without gathering them first: output buffers can be large.
func (c *Checkpoint) writeBookkeeping(w *bufio.Writer) error {
	var scratch [2 + MaxPeerNameLen + 20]byte
	b := binary.LittleEndian.AppendUint32(scratch[:0], uint32(len(c.Inputs)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	for _, wm := range c.Inputs {
		b, _ = appendName(scratch[:0], wm.Peer)
		b = binary.LittleEndian.AppendUint64(b, uint64(wm.Seq))
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	b = binary.LittleEndian.AppendUint32(scratch[:0], uint32(len(c.Outputs)))
	if _, err := w.Write(b); err != nil {
		return err
	}
	for _, o := range c.Outputs {
		b, _ = appendName(scratch[:0], o.Peer)
		b = binary.LittleEndian.AppendUint64(b, uint64(o.LastSeq))
		b = binary.LittleEndian.AppendUint64(b, uint64(o.AckedSeq))
		b = binary.LittleEndian.AppendUint32(b, uint32(len(o.Unacked)))
		if _, err := w.Write(b); err != nil {
			return err
		}
		for _, m := range o.Unacked {
			if _, err := w.Write(binary.LittleEndian.AppendUint32(scratch[:0], uint32(len(m)))); err != nil {
				return err
			}
			if _, err := w.Write(m); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteCheckpoint writes c to w in the checkpoint file format, through a
// buffer of its own (w need not be buffered). The caller syncs and closes
// the file.
func WriteCheckpoint(w io.Writer, c *Checkpoint) error {
	bookLen, err := c.bookkeepingSize()
	if err != nil {
		return fmt.Errorf("logfmt: encode checkpoint %d: %w", c.Number, err)
	}
	fixed := make([]byte, CheckpointFixedSize)
	copy(fixed, CheckpointMagic)
	binary.LittleEndian.PutUint32(fixed[8:], CheckpointFormatVersion)
	binary.LittleEndian.PutUint32(fixed[12:], c.AppVersion)
	binary.LittleEndian.PutUint64(fixed[16:], c.Number)
	binary.LittleEndian.PutUint64(fixed[24:], uint64(c.NextSeq))
	binary.LittleEndian.PutUint64(fixed[32:], uint64(c.Time))
	binary.LittleEndian.PutUint64(fixed[40:], c.OutCount)
	binary.LittleEndian.PutUint64(fixed[48:], c.OutDigest)
	binary.LittleEndian.PutUint64(fixed[56:], uint64(bookLen))
	binary.LittleEndian.PutUint64(fixed[64:], uint64(len(c.State)))
	h := xxhash.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	if _, err := bw.Write(fixed); err != nil {
		return fmt.Errorf("logfmt: write checkpoint %d: %w", c.Number, err)
	}
	if err := c.writeBookkeeping(bw); err != nil {
		return fmt.Errorf("logfmt: write checkpoint %d: %w", c.Number, err)
	}
	// In pieces, as ReadCheckpoint reads it: one hash of a large state
	// cannot be preempted.
	for st := c.State; len(st) > 0; {
		n := min(len(st), sectionPiece)
		if _, err := bw.Write(st[:n]); err != nil {
			return fmt.Errorf("logfmt: write checkpoint %d: %w", c.Number, err)
		}
		st = st[n:]
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("logfmt: write checkpoint %d: %w", c.Number, err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint64(nil, h.Sum64())); err != nil {
		return fmt.Errorf("logfmt: write checkpoint %d: %w", c.Number, err)
	}
	return nil
}

// ReadCheckpoint reads and verifies a checkpoint file. A file that ends early
// is ErrTruncated (a checkpoint whose writing was cut short); wrong magic, a
// bad checksum or inconsistent lengths are ErrCorrupt. Either way the caller
// should fall back to the previous checkpoint. Errors name the offset.
func ReadCheckpoint(r io.Reader) (*Checkpoint, error) {
	return ReadCheckpointSize(r, -1)
}

// ReadCheckpointSize is ReadCheckpoint of a file known to hold size bytes
// (-1: unknown). A section that the file is long enough to hold is read into
// one buffer of its size, instead of being grown chunk by chunk (a 64 MiB
// state was copied several times over); results and errors are those of
// ReadCheckpoint.
func ReadCheckpointSize(r io.Reader, size int64) (*Checkpoint, error) {
	c, _, err := ReadCheckpointRoom(r, size, 0)
	return c, err
}

// ReadCheckpointRoom is ReadCheckpointSize that leaves room free bytes
// before the state when it reads the state into a buffer of its size at
// once, and returns that buffer too (room bytes, then State; nil when it
// read the state otherwise): room for the headers that frame the state for
// the app, so that a recovering coordinator sends the checkpoint it read
// without copying a state of many MiB once more behind them.
func ReadCheckpointRoom(r io.Reader, size int64, room int) (*Checkpoint, []byte, error) {
	h := xxhash.New()
	tr := io.TeeReader(bufio.NewReaderSize(r, 256<<10), h)
	fixed := make([]byte, CheckpointFixedSize)
	if err := readFull(tr, fixed, 0, "checkpoint header"); err != nil {
		return nil, nil, err
	}
	if string(fixed[:8]) != CheckpointMagic {
		return nil, nil, fmt.Errorf("%w at offset 0: not an ambr checkpoint (magic %q)", ErrCorrupt, fixed[:8])
	}
	if v := binary.LittleEndian.Uint32(fixed[8:]); v != CheckpointFormatVersion {
		return nil, nil, fmt.Errorf("%w at offset 8: checkpoint format version %d, this build reads %d", ErrCorrupt, v, CheckpointFormatVersion)
	}
	c := &Checkpoint{
		AppVersion: binary.LittleEndian.Uint32(fixed[12:]),
		Number:     binary.LittleEndian.Uint64(fixed[16:]),
		NextSeq:    int64(binary.LittleEndian.Uint64(fixed[24:])),
		Time:       int64(binary.LittleEndian.Uint64(fixed[32:])),
		OutCount:   binary.LittleEndian.Uint64(fixed[40:]),
		OutDigest:  binary.LittleEndian.Uint64(fixed[48:]),
	}
	bookLen := binary.LittleEndian.Uint64(fixed[56:])
	stateLen := binary.LittleEndian.Uint64(fixed[64:])
	if bookLen > MaxBookkeepingSize || stateLen > 1<<62 {
		return nil, nil, fmt.Errorf("%w at offset 56: section lengths %d and %d out of range", ErrCorrupt, bookLen, stateLen)
	}
	// Read the sections in bounded chunks so that a corrupt length on a short
	// file fails as truncation instead of allocating the claimed size.
	book, err := readSection(tr, bookLen, CheckpointFixedSize, size, "bookkeeping")
	if err != nil {
		return nil, nil, err
	}
	off := int64(CheckpointFixedSize) + int64(bookLen)
	framed, err := readSectionRoom(tr, stateLen, off, size, "state", room)
	if err != nil {
		return nil, nil, err
	}
	state := framed[len(framed)-int(stateLen):]
	off += int64(stateLen)
	want := h.Sum64()
	var sum [8]byte
	if _, err := io.ReadFull(tr, sum[:]); err != nil {
		return nil, nil, fmt.Errorf("%w at offset %d: checkpoint checksum missing", ErrTruncated, off)
	}
	if got := binary.LittleEndian.Uint64(sum[:]); got != want {
		return nil, nil, fmt.Errorf("%w at offset %d: checkpoint checksum %016x, computed %016x", ErrCorrupt, off, got, want)
	}
	if err := c.parseBookkeeping(book); err != nil {
		return nil, nil, fmt.Errorf("%w at offset %d: bookkeeping: %v", ErrCorrupt, CheckpointFixedSize, err)
	}
	c.State = state
	if len(framed) == len(state) {
		framed = nil // read in chunks, or no room asked for
	}
	return c, framed, nil
}

// readFullPieces is readFull of b sectionPiece bytes at a time, with its
// errors.
func readFullPieces(r io.Reader, b []byte, off int64, what string) error {
	for at := 0; at < len(b); {
		n, err := io.ReadFull(r, b[at:min(at+sectionPiece, len(b))])
		at += n
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("%w at offset %d: %s cut short after %d of %d bytes", ErrTruncated, off+int64(at), what, at, len(b))
			}
			return fmt.Errorf("logfmt: read %s at offset %d: %w", what, off, err)
		}
	}
	return nil
}

func readFull(r io.Reader, b []byte, off int64, what string) error {
	n, err := io.ReadFull(r, b)
	if err == nil {
		return nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w at offset %d: %s cut short after %d of %d bytes", ErrTruncated, off+int64(n), what, n, len(b))
	}
	return fmt.Errorf("logfmt: read %s at offset %d: %w", what, off, err)
}

// readSection reads a section of n bytes at offset off of a file of size
// bytes (-1: unknown). Only a file known to hold the whole section gets a
// buffer of its size at once; otherwise the section is read in bounded
// chunks, so that a corrupt length fails as truncation instead of
// allocating the claimed size.
func readSection(r io.Reader, n uint64, off int64, size int64, what string) ([]byte, error) {
	return readSectionRoom(r, n, off, size, what, 0)
}

// sectionPiece is how much of a section readSectionRoom reads (and the
// checkpoint reader hashes) at a time.
const sectionPiece = 4 << 20

// readSectionRoom is readSection into a buffer with room free bytes before
// the section, when it reads the section at once (in chunks, none); the
// result is the buffer, whose last n bytes are the section.
func readSectionRoom(r io.Reader, n uint64, off int64, size int64, what string, room int) ([]byte, error) {
	if size >= 0 && off <= size && n <= uint64(size-off) {
		out := make([]byte, uint64(room)+n)
		// In pieces: r hashes what it reads, and one hash of a 64 MiB
		// state is assembly the runtime cannot preempt (a garbage
		// collection's stop of the world waited for it).
		if err := readFullPieces(r, out[room:], off, what); err != nil {
			return nil, err
		}
		return out, nil
	}
	const chunk = 16 << 20
	out := make([]byte, 0, min(n, chunk))
	for uint64(len(out)) < n {
		k := int(min(n-uint64(len(out)), chunk))
		start := len(out)
		out = append(out, make([]byte, k)...)
		if err := readFull(r, out[start:], off+int64(start), what); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type byteCursor struct {
	b   []byte
	err error
}

func (c *byteCursor) take(n int) []byte {
	if c.err != nil {
		return nil
	}
	if n < 0 || len(c.b) < n {
		c.err = errors.New("section cut short")
		return nil
	}
	v := c.b[:n]
	c.b = c.b[n:]
	return v
}

func (c *byteCursor) u16() uint16 {
	if v := c.take(2); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (c *byteCursor) u32() uint32 {
	if v := c.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (c *byteCursor) u64() uint64 {
	if v := c.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (c *byteCursor) name() string { return string(c.take(int(c.u16()))) }

func (c *Checkpoint) parseBookkeeping(b []byte) error {
	cur := &byteCursor{b: b}
	nin := cur.u32()
	for i := uint32(0); i < nin && cur.err == nil; i++ {
		c.Inputs = append(c.Inputs, Watermark{Peer: cur.name(), Seq: int64(cur.u64())})
	}
	nout := cur.u32()
	for i := uint32(0); i < nout && cur.err == nil; i++ {
		o := OutputStream{Peer: cur.name(), LastSeq: int64(cur.u64()), AckedSeq: int64(cur.u64())}
		nm := cur.u32()
		for j := uint32(0); j < nm && cur.err == nil; j++ {
			m := cur.take(int(cur.u32()))
			if cur.err == nil {
				o.Unacked = append(o.Unacked, append([]byte(nil), m...))
			}
		}
		c.Outputs = append(c.Outputs, o)
	}
	if cur.err != nil {
		return cur.err
	}
	if len(cur.b) != 0 {
		return fmt.Errorf("%d trailing bytes", len(cur.b))
	}
	return nil
}
