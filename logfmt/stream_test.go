package logfmt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// protoItem is a message read from a MessageReader, copied, with the state
// bytes of a Checkpoint message.
type protoItem struct {
	Type  MessageType
	Data  []byte
	State []byte
}

// protoRecItem is a record read from a RecordReader, copied, with the state
// bytes that follow it.
type protoRecItem struct {
	Header WireHeader
	Body   []byte
	State  []byte
}

// protoReadMessages reads messages, and the state after each Checkpoint
// message, until an error, which it returns with the items read whole.
func protoReadMessages(mr *MessageReader) ([]protoItem, error) {
	var items []protoItem
	for {
		m, err := mr.Next()
		if err != nil {
			return items, err
		}
		it := protoItem{Type: m.Type, Data: slices.Clone(m.Data)}
		if m.Type == TypeCheckpoint {
			if it.State, err = io.ReadAll(mr.State()); err != nil {
				return items, err
			}
		}
		items = append(items, it)
	}
}

// protoReadRecords is protoReadMessages for records.
func protoReadRecords(rr *RecordReader) ([]protoRecItem, error) {
	var items []protoRecItem
	for {
		h, body, err := rr.Next()
		if err != nil {
			return items, err
		}
		it := protoRecItem{Header: h, Body: slices.Clone(body)}
		if it.State, err = io.ReadAll(rr.State()); err != nil {
			return items, err
		}
		items = append(items, it)
	}
}

// protoEncodeItems re-encodes items as a message stream.
func protoEncodeItems(items []protoItem) []byte {
	var b []byte
	for _, it := range items {
		b = append(AppendMessage(b, it.Type, it.Data), it.State...)
	}
	return b
}

// protoEncodeRecords re-encodes records as a record stream, keeping their
// headers as they were.
func protoEncodeRecords(items []protoRecItem) []byte {
	var b []byte
	for _, it := range items {
		b = append(append(AppendWireHeader(b, it.Header), it.Body...), it.State...)
	}
	return b
}

// protoAppStream returns a stream of messages as an app sends them, what a
// MessageReader should make of it, and the offsets at which items end. With
// big, it includes a message and a state larger than the readers' buffers.
func protoAppStream(big bool) ([]byte, []protoItem, []int) {
	var b []byte
	var items []protoItem
	var ends []int
	add := func(framed []byte, state []byte) {
		m, _, err := ParseMessage(framed)
		if err != nil {
			panic(err)
		}
		b = append(append(b, framed...), state...)
		items = append(items, protoItem{Type: m.Type, Data: slices.Clone(m.Data), State: state})
		ends = append(ends, len(b))
	}
	add(AppendInitialMessage(nil, AppendRPC(nil, protoInit)), nil)
	add(AppendCheckpointMessage(nil, 804), protoState(804))
	add(AppendAttachTo(nil, "server"), nil)
	add(AppendOutgoingRPC(nil, "server", protoCall), nil)
	add(AppendRPCBatch(nil, AppendOutgoingRPC(AppendOutgoingRPC(nil, "server", protoFork), "", protoSelf), 2), nil)
	add(AppendControl(nil, TypeTakeCheckpoint), nil)
	add(AppendCheckpointMessage(nil, 0), []byte{})
	if big {
		add(AppendOutgoingRPC(nil, "server", RPC{MethodID: 9, Args: protoState(200 << 10)}), nil)
		add(AppendCheckpointMessage(nil, 70000), protoState(70000))
	}
	add(AppendOutgoingRPC(nil, "", protoImpulse), nil)
	return b, items, ends
}

// protoICStream is protoAppStream for the records the IC sends to an app
// during a recovery.
func protoICStream(big bool) ([]byte, []protoRecItem, []int) {
	var b []byte
	var items []protoRecItem
	var ends []int
	add := func(seq int64, body []byte, state []byte) {
		rec := AppendWireRecord(nil, 7, seq, body)
		h, err := ParseWireHeader(rec)
		if err != nil {
			panic(err)
		}
		b = append(append(b, rec...), state...)
		items = append(items, protoRecItem{Header: h, Body: body, State: state})
		ends = append(ends, len(b))
	}
	add(SeqCheckpointRecord, AppendCheckpointMessage(nil, 804), protoState(804))
	add(0, AppendRPC(AppendRPC(nil, protoCall), protoFork), nil)
	add(1, AppendCountReplayableRPCBatch(AppendControl(nil, TypeTakeCheckpoint), AppendRPC(AppendRPC(nil, protoImpulse), protoCall), 2, 1), nil)
	add(2, nil, nil)
	if big {
		add(3, protoBody1000RPCs(), nil)
		add(4, bytes.Repeat(AppendRPC(nil, RPC{Args: protoState(300)}), 400), nil)
		add(SeqCheckpointRecord, AppendCheckpointMessage(AppendControl(nil, TypeTakeCheckpoint), 70000), protoState(70000))
	}
	add(SeqControl, AppendControl(nil, TypeTakeBecomingPrimaryCheckpoint), nil)
	return b, items, ends
}

// protoChunkReader returns the bytes of b in chunks of random size.
type protoChunkReader struct {
	b   []byte
	rng *rand.Rand
	max int
}

func (r *protoChunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(1+r.rng.IntN(r.max), len(p), len(r.b))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

// protoReaders returns the ways the tests feed a stream to a decoder.
func protoReaders(b []byte) map[string]io.Reader {
	rs := map[string]io.Reader{
		"whole":    bytes.NewReader(b),
		"one byte": iotest.OneByteReader(bytes.NewReader(b)),
		"half":     iotest.HalfReader(bytes.NewReader(b)),
		"data+EOF": iotest.DataErrReader(bytes.NewReader(b)),
		"split":    io.MultiReader(bytes.NewReader(b[:len(b)/3]), bytes.NewReader(b[len(b)/3:])),
	}
	for seed := range uint64(4) {
		rs[fmt.Sprintf("random chunks %d", seed)] = &protoChunkReader{b: b, rng: rand.New(rand.NewPCG(seed, 1)), max: 1 << (3 * (seed + 1))}
	}
	return rs
}

func TestMessageReaderChunking(t *testing.T) {
	for _, big := range []bool{false, true} {
		b, want, _ := protoAppStream(big)
		for name, r := range protoReaders(b) {
			t.Run(fmt.Sprintf("big=%v/%s", big, name), func(t *testing.T) {
				mr := NewMessageReader(r)
				got, err := protoReadMessages(mr)
				if err != io.EOF {
					t.Errorf("error at the end = %v, want io.EOF", err)
				}
				if diff := cmp.Diff(want, got, protoCmpOpts); diff != "" {
					t.Errorf("messages (-want +got):\n%s", diff)
				}
				if mr.Offset() != int64(len(b)) {
					t.Errorf("Offset = %d, want %d", mr.Offset(), len(b))
				}
				if _, err := mr.Next(); err != io.EOF {
					t.Errorf("Next after the end = %v, want io.EOF", err)
				}
			})
		}
	}
}

func TestRecordReaderChunking(t *testing.T) {
	for _, big := range []bool{false, true} {
		b, want, _ := protoICStream(big)
		for name, r := range protoReaders(b) {
			t.Run(fmt.Sprintf("big=%v/%s", big, name), func(t *testing.T) {
				rr := NewRecordReader(r)
				rr.VerifyCheckBytes = true
				got, err := protoReadRecords(rr)
				if err != io.EOF {
					t.Errorf("error at the end = %v, want io.EOF", err)
				}
				if diff := cmp.Diff(want, got, protoCmpOpts); diff != "" {
					t.Errorf("records (-want +got):\n%s", diff)
				}
				if rr.Offset() != int64(len(b)) {
					t.Errorf("Offset = %d, want %d", rr.Offset(), len(b))
				}
			})
		}
	}
}

// protoCheckCut checks what a decoder made of a stream cut at k: the items
// that end at or before k, then io.EOF if k is between items and an
// ErrTruncated, io.ErrUnexpectedEOF error otherwise.
func protoCheckCut[T any](t *testing.T, k int, ends []int, want, got []T, err error) {
	t.Helper()
	n := 0
	for n < len(ends) && ends[n] <= k {
		n++
	}
	if diff := cmp.Diff(want[:n], got, protoCmpOpts); diff != "" {
		t.Errorf("cut at %d: items (-want +got):\n%s", k, diff)
	}
	atBoundary := k == 0 || slices.Contains(ends, k)
	switch {
	case atBoundary && err != io.EOF:
		t.Errorf("cut at %d, between items: error = %v, want io.EOF", k, err)
	case !atBoundary && (!errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrTruncated)):
		t.Errorf("cut at %d, inside an item: error = %v, want ErrTruncated and io.ErrUnexpectedEOF", k, err)
	}
}

// TestMessageReaderCutEverywhere ends the stream at every byte boundary,
// reading it one byte at a time.
func TestMessageReaderCutEverywhere(t *testing.T) {
	b, want, ends := protoAppStream(false)
	for k := 0; k <= len(b); k++ {
		got, err := protoReadMessages(NewMessageReader(iotest.OneByteReader(bytes.NewReader(b[:k]))))
		protoCheckCut(t, k, ends, want, got, err)
	}
}

func TestRecordReaderCutEverywhere(t *testing.T) {
	b, want, ends := protoICStream(false)
	for k := 0; k <= len(b); k++ {
		got, err := protoReadRecords(NewRecordReader(iotest.OneByteReader(bytes.NewReader(b[:k]))))
		protoCheckCut(t, k, ends, want, got, err)
	}
}

func TestMessageReaderState(t *testing.T) {
	state := []byte("0123456789")
	b := append(AppendCheckpointMessage(nil, 10), state...)
	b = AppendControl(b, TypeTakeCheckpoint)

	for _, read := range []int{0, 3, 10} {
		mr := NewMessageReader(bytes.NewReader(b))
		if m, err := mr.Next(); err != nil || m.Type != TypeCheckpoint {
			t.Fatalf("Next = %v, %v; want Checkpoint", m.Type, err)
		}
		got := make([]byte, read)
		if _, err := io.ReadFull(mr.State(), got); err != nil || !bytes.Equal(got, state[:read]) {
			t.Fatalf("read %d state bytes: %q, %v", read, got, err)
		}
		if read == 10 {
			if n, err := mr.State().Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("Read after the state = %d, %v; want 0, io.EOF", n, err)
			}
		}
		m, err := mr.Next()
		if err != nil || m.Type != TypeTakeCheckpoint {
			t.Errorf("after reading %d state bytes: Next = %v, %v; want TakeCheckpoint", read, m.Type, err)
		}
		if n, err := mr.State().Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("State after TakeCheckpoint: Read = %d, %v; want 0, io.EOF", n, err)
		}
	}

	// The stream ends inside the state.
	short := append(AppendCheckpointMessage(nil, 10), state[:5]...)
	mr := NewMessageReader(bytes.NewReader(short))
	if _, err := mr.Next(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(mr.State())
	if string(got) != "01234" || !errors.Is(err, io.ErrUnexpectedEOF) || !errors.Is(err, ErrTruncated) {
		t.Errorf("ReadAll(State) = %q, %v; want 01234 and io.ErrUnexpectedEOF", got, err)
	}
	if _, err := mr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next after a short state = %v, want io.ErrUnexpectedEOF", err)
	}
	// Without reading it, Next finds the short state.
	mr = NewMessageReader(bytes.NewReader(short))
	if _, err := mr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := mr.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Next over a short state = %v, want io.ErrUnexpectedEOF", err)
	}
	if _, err := mr.State().Read(make([]byte, 1)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("State after the failure: Read error = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestRecordReaderStateSkipped(t *testing.T) {
	b, want, _ := protoICStream(true)
	rr := NewRecordReader(bytes.NewReader(b))
	for i := range want {
		h, body, err := rr.Next()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if diff := cmp.Diff(want[i].Header, h); diff != "" || !bytes.Equal(body, want[i].Body) {
			t.Fatalf("record %d (-want +got):\n%s", i, diff)
		}
		if len(want[i].State) > 1 { // Read one byte, leave the rest to Next.
			if _, err := rr.State().Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, _, err := rr.Next(); err != io.EOF {
		t.Errorf("at the end: %v, want io.EOF", err)
	}
}

func TestMessageReaderGarbage(t *testing.T) {
	ok := AppendControl(nil, TypeTakeCheckpoint)
	tests := []struct {
		name    string
		garbage []byte
	}{
		{"size 0", []byte{0x00, 0x02}},
		{"negative size", []byte{0x01, 0x02}},
		{"very negative size", AppendZigZag(nil, math.MinInt64)},
		{"size above MaxMessageSize", AppendZigZag(nil, MaxMessageSize+1)},
		{"size above ZigZagInt", AppendZigZag(nil, 1<<40)},
		{"varint longer than 10 bytes", append(bytes.Repeat([]byte{0xff}, 10), 0x01)},
		{"checkpoint with negative state length", []byte{0x04, 0x08, 0x01}},
		{"checkpoint with trailing data", []byte{0x06, 0x08, 0x00, 0x00}},
		{"checkpoint with cut state length", []byte{0x04, 0x08, 0x80}},
		{"checkpoint without state length", []byte{0x02, 0x08}},
	}
	for _, tt := range tests {
		b := append(slices.Clone(ok), tt.garbage...)
		b = append(b, ok...)
		mr := NewMessageReader(bytes.NewReader(b))
		if _, err := mr.Next(); err != nil {
			t.Fatalf("%s: first message: %v", tt.name, err)
		}
		_, err := mr.Next()
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated) {
			t.Errorf("%s: Next error = %v, want ErrMalformed", tt.name, err)
		} else if !strings.HasPrefix(err.Error(), "logfmt: ") || !strings.Contains(err.Error(), "offset 2") {
			t.Errorf("%s: error %q should start with logfmt: and give offset 2", tt.name, err)
		}
		if _, err2 := mr.Next(); err2 != err {
			t.Errorf("%s: error not sticky: %v, then %v", tt.name, err, err2)
		}
	}

	mr := NewMessageReader(bytes.NewReader(AppendAttachTo(AppendAttachTo(nil, "abcd"), "abcde")))
	mr.MaxMessageSize = 5
	if _, err := mr.Next(); err != nil {
		t.Errorf("message of size 5, limit 5: %v", err)
	}
	if _, err := mr.Next(); !errors.Is(err, ErrMalformed) {
		t.Errorf("message of size 6, limit 5: %v, want ErrMalformed", err)
	}
}

func TestRecordReaderGarbage(t *testing.T) {
	good := AppendWireRecord(nil, 1, 0, AppendRPC(nil, protoCall))
	withHeader := func(h WireHeader, body []byte) []byte {
		return append(AppendWireHeader(nil, h), body...)
	}
	tests := []struct {
		name   string
		record []byte
		max    int
	}{
		{"size below header", withHeader(WireHeader{Size: 23}, nil), 0},
		{"negative size", withHeader(WireHeader{Size: -100}, nil), 0},
		{"sequence id -3", withHeader(WireHeader{Size: 24, Seq: -3}, nil), 0},
		{"body above limit", AppendWireRecord(nil, 1, 0, AppendAttachTo(nil, "abcdefghij")), 11},
		{"frame runs past body", withHeader(WireHeader{Size: 26}, []byte{0x06, 0x02}), 0},
		{"bad frame in body", withHeader(WireHeader{Size: 26}, []byte{0x01, 0x02}), 0},
		{"checkpoint not last", AppendWireRecord(nil, 1, -2, AppendControl(AppendCheckpointMessage(nil, 0), TypeTakeCheckpoint)), 0},
		{"checkpoint with bad state length", AppendWireRecord(nil, 1, -2, AppendMessage(nil, TypeCheckpoint, []byte{0x01})), 0},
	}
	for _, tt := range tests {
		b := append(slices.Clone(good), tt.record...)
		b = append(b, good...)
		rr := NewRecordReader(bytes.NewReader(b))
		rr.MaxBodySize = tt.max
		if _, _, err := rr.Next(); err != nil {
			t.Fatalf("%s: first record: %v", tt.name, err)
		}
		_, _, err := rr.Next()
		if !errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated) {
			t.Errorf("%s: Next error = %v, want ErrMalformed", tt.name, err)
		} else if !strings.HasPrefix(err.Error(), "logfmt: ") || !strings.Contains(err.Error(), fmt.Sprintf("offset %d", len(good))) {
			t.Errorf("%s: error %q should start with logfmt: and give offset %d", tt.name, err, len(good))
		}
		if _, _, err2 := rr.Next(); err2 != err {
			t.Errorf("%s: error not sticky: %v, then %v", tt.name, err, err2)
		}
	}
}

func TestRecordReaderVerifyCheckBytes(t *testing.T) {
	b := AppendWireRecord(nil, 1, 0, AppendRPC(nil, protoCall))
	b[len(b)-1] ^= 0xff // An argument byte: the framing stays valid.
	rr := NewRecordReader(bytes.NewReader(b))
	if _, _, err := rr.Next(); err != nil {
		t.Errorf("without VerifyCheckBytes: %v", err)
	}
	rr = NewRecordReader(bytes.NewReader(b))
	rr.VerifyCheckBytes = true
	if _, _, err := rr.Next(); !errors.Is(err, ErrMalformed) {
		t.Errorf("with VerifyCheckBytes: %v, want ErrMalformed", err)
	}
}

// TestStreamNoGiantAllocation feeds size fields that are within the limits
// but far beyond the bytes that follow: the decoders must fail with
// io.ErrUnexpectedEOF without allocating what the size announces.
func TestStreamNoGiantAllocation(t *testing.T) {
	tail := bytes.Repeat([]byte{0xab}, 1000)
	tests := []struct {
		name string
		b    []byte
		next func(io.Reader) error
	}{
		{"message", append(AppendZigZag(nil, MaxMessageSize), tail...), func(r io.Reader) error {
			_, err := NewMessageReader(r).Next()
			return err
		}},
		{"record", append(AppendWireHeader(nil, WireHeader{Size: MaxMessageSize + WireHeaderSize}), tail...), func(r io.Reader) error {
			_, _, err := NewRecordReader(r).Next()
			return err
		}},
	}
	for _, tt := range tests {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := tt.next(bytes.NewReader(tt.b))
		runtime.ReadMemStats(&after)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: error = %v, want io.ErrUnexpectedEOF", tt.name, err)
		}
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: allocated %d bytes for a stream of %d", tt.name, n, len(tt.b))
		}
	}
}

type protoErrReader struct {
	b   []byte
	err error
}

func (r *protoErrReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	n := copy(p, r.b)
	r.b = r.b[n:]
	return n, nil
}

func TestStreamReadError(t *testing.T) {
	boom := errors.New("connection reset")
	b := AppendRPC(nil, protoCall)
	mr := NewMessageReader(&protoErrReader{b: b[:len(b)-2], err: boom})
	if _, err := mr.Next(); !errors.Is(err, boom) || errors.Is(err, io.EOF) {
		t.Errorf("MessageReader: %v, want connection reset", err)
	}
	rec := AppendWireRecord(nil, 1, 0, b)
	rr := NewRecordReader(&protoErrReader{b: rec[:10], err: boom})
	if _, _, err := rr.Next(); !errors.Is(err, boom) {
		t.Errorf("RecordReader: %v, want connection reset", err)
	}
	// Between messages, too, a read error is not io.EOF.
	mr = NewMessageReader(&protoErrReader{b: b, err: boom})
	if _, err := mr.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := mr.Next(); !errors.Is(err, boom) {
		t.Errorf("MessageReader between messages: %v, want connection reset", err)
	}
}

// TestStreamZeroAllocs checks that the decoders do not allocate per message
// or record once their buffers have grown.
func TestStreamZeroAllocs(t *testing.T) {
	msgs := bytes.Repeat(AppendOutgoingRPC(nil, "server", protoCall), 500)
	mr := NewMessageReader(bytes.NewReader(msgs))
	if a := testing.AllocsPerRun(100, func() {
		if _, err := mr.Next(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("MessageReader.Next allocates %v times, want 0", a)
	}
	recs := bytes.Repeat(AppendWireRecord(nil, 1, 0, protoBody1000RPCs()), 150)
	rr := NewRecordReader(bytes.NewReader(recs))
	if _, _, err := rr.Next(); err != nil { // Grow the buffer.
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(100, func() {
		if _, _, err := rr.Next(); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("RecordReader.Next allocates %v times, want 0", a)
	}
}

// TestOwningMessageReader: each message read by an owning reader keeps its
// bytes after later reads, small, large (beyond the first allocation) and
// of every size between.
func TestOwningMessageReader(t *testing.T) {
	var stream []byte
	var want [][]byte
	for i, n := range []int{1, 10, 100, 70 << 10, 3, freshFirst + 12345, 5} {
		data := bytes.Repeat([]byte{byte('a' + i)}, n)
		stream = AppendMessage(stream, TypeRPC, data)
		want = append(want, data)
	}
	mr := NewOwningMessageReader(bytes.NewReader(stream))
	var got []Message
	var bufs [][]byte
	for range want {
		m, err := mr.Next()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
		// Buf is the message's buffer: room, the type byte, then Data.
		b := mr.Buf()
		if len(b) != FreshRoom+1+len(m.Data) || b[FreshRoom] != byte(TypeRPC) || &b[len(b)-1] != &m.Data[len(m.Data)-1] {
			t.Fatalf("message %d: Buf of %d bytes is not room, type and the %d bytes of data", len(got)-1, len(b), len(m.Data))
		}
		bufs = append(bufs, b)
	}
	// The room is the owner's: writing it changes no other message.
	for _, b := range bufs {
		for i := range FreshRoom + 1 {
			b[i] = 0xee
		}
	}
	if _, err := mr.Next(); err != io.EOF {
		t.Fatalf("after the last message: %v", err)
	}
	for i := range want {
		if got[i].Type != TypeRPC || !bytes.Equal(got[i].Data, want[i]) {
			t.Errorf("message %d: %d bytes, not the %d written (overwritten by a later read?)", i, len(got[i].Data), len(want[i]))
		}
	}
}

// A checkpoint's state is read at most stateReadChunk bytes at a time,
// however much the caller asks for (a single copy out of an in-process
// pipe cannot be preempted), and all of it arrives.
func TestStateReadsAreBounded(t *testing.T) {
	state := bytes.Repeat([]byte("0123456789abcdef"), (3*stateReadChunk+100)/16)
	stream := append(AppendCheckpointMessage(nil, int64(len(state))), state...)
	mr := NewMessageReader(bytes.NewReader(stream))
	if m, err := mr.Next(); err != nil || m.Type != TypeCheckpoint {
		t.Fatalf("%v, %v", m.Type, err)
	}
	got := make([]byte, 0, len(state))
	for len(got) < len(state) {
		n, err := mr.State().Read(got[len(got):cap(got)])
		if n > stateReadChunk {
			t.Fatalf("one Read returned %d bytes, more than %d", n, stateReadChunk)
		}
		got = got[:len(got)+n]
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(got), len(state), err)
		}
	}
	if !bytes.Equal(got, state) {
		t.Fatal("state read differs")
	}
}
