package logfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

func TestPeerFramesRoundTrip(t *testing.T) {
	rpc := AppendRPC(nil, RPC{MethodID: 3, Kind: RPCCall, Args: []byte("x")})
	var b []byte
	b = AppendPeerHello(b, "client", "server")
	b = AppendPeerSeq(b, PeerWelcome, 42)
	b = AppendPeerMessage(b, 42, rpc)
	b = AppendPeerSeq(b, PeerAck, 42)
	b = AppendPeerReject(b, "wrong instance")
	b = AppendPeerLost(b, 15, 14)
	b = AppendPeerHelloAt(b, "client", "server", 7)
	r := NewPeerReader(bytes.NewReader(b))
	want := []PeerFrame{
		{Kind: PeerHello, From: "client", To: "server"},
		{Kind: PeerWelcome, Seq: 42},
		{Kind: PeerMessage, Seq: 42, Msg: rpc},
		{Kind: PeerAck, Seq: 42},
		{Kind: PeerReject, Reason: "wrong instance"},
		{Kind: PeerLost, Acked: 15, Seq: 14},
		{Kind: PeerHello, From: "client", To: "server", Epoch: 7},
	}
	for i, w := range want {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Kind != w.Kind || f.From != w.From || f.To != w.To || f.Seq != w.Seq || !bytes.Equal(f.Msg, w.Msg) || f.Reason != w.Reason || f.Acked != w.Acked || f.Epoch != w.Epoch {
			t.Fatalf("frame %d: got %+v want %+v", i, f, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestPeerGarbage(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0xff, 0xff, 0xff, 0x7f, 1},
		AppendPeerMessage(nil, 1, []byte{0x02, 0x02}), // not an RPC
		{9, 0, 0, 0, 1, 'a', 'm', 'b', 'r', 'p', 'e', 'e', 'r'},
		messagesFrame(1, 2, rpcA),               // says 2, holds 1
		messagesFrame(1, 0, nil),                // none
		messagesFrame(1, 1, append(rpcA, 0x04)), // trailing byte
		messagesFrame(1, 1, []byte{0x02, 0x02}), // not an RPC
	} {
		_, err := NewPeerReader(bytes.NewReader(in)).Next()
		if err == nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated)) {
			t.Fatalf("input %q: err %v, want malformed or truncated", in, err)
		}
	}
}

var rpcA = AppendRPC(nil, RPC{MethodID: 3, Kind: RPCFork, Args: []byte("a")})

func messagesFrame(seq int64, count int, msgs []byte) []byte {
	return append(AppendPeerMessagesHeader(nil, seq, count, len(msgs)), msgs...)
}

// TestPeerMessagesFrame: a run of messages in one frame reads back as
// its first sequence number, its count and the messages in order.
func TestPeerMessagesFrame(t *testing.T) {
	var msgs [][]byte
	var all []byte
	for i := range 5 {
		m := AppendRPC(nil, RPC{MethodID: int32(i), Kind: RPCFork, Args: bytes.Repeat([]byte{byte(i)}, i*100)})
		msgs = append(msgs, m)
		all = append(all, m...)
	}
	f, err := NewPeerReader(bytes.NewReader(messagesFrame(41, len(msgs), all))).Next()
	if err != nil {
		t.Fatal(err)
	}
	if f.Kind != PeerMessages || f.Seq != 41 || f.Count != 5 {
		t.Fatalf("frame %d, seq %d, count %d; want Messages, 41, 5", f.Kind, f.Seq, f.Count)
	}
	start, i := 0, 0
	if err := EachPeerMessage(f.Msg, f.Count, func(end int) {
		if !bytes.Equal(f.Msg[start:end], msgs[i]) {
			t.Errorf("message %d differs", i)
		}
		start, i = end, i+1
	}); err != nil || i != 5 {
		t.Fatalf("walk: %v after %d messages", err, i)
	}
}

// TestPeerReaderBuffered: Buffered says whether Next can return a whole
// frame without reading the connection, and never claims a frame larger
// than the read buffer or one that is cut short.
func TestPeerReaderBuffered(t *testing.T) {
	var b []byte
	r := NewPeerReader(bytes.NewReader(nil))
	r.Open()
	_ = r.Grow()
	bufSize := r.br.Size()
	small := AppendRPC(nil, RPC{MethodID: 1, Kind: RPCFork, Args: []byte("abc")})
	big := AppendRPC(nil, RPC{MethodID: 2, Kind: RPCFork, Args: bytes.Repeat([]byte{7}, bufSize+bufSize/2)})
	b = AppendPeerMessage(b, 1, small)
	b = AppendPeerMessage(b, 2, small)
	b = AppendPeerMessage(b, 3, big)
	b = AppendPeerMessage(b, 4, small)
	cut := AppendPeerMessage(nil, 5, small)
	b = append(b, cut[:len(cut)-1]...)
	r = NewPeerReader(bytes.NewReader(b))
	r.Open()
	if err := r.Grow(); err != nil {
		t.Fatal(err)
	}
	// After frames 1..4: frame 2 is in the buffer; frame 3 cannot be;
	// after frame 3 it depends on how the reads fell; frame 5 is cut.
	wantBuffered := []int{1, 0, -1, 0}
	for i, want := range []struct {
		seq int64
		msg []byte
	}{{1, small}, {2, small}, {3, big}, {4, small}} {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i+1, err)
		}
		if f.Seq != want.seq || !bytes.Equal(f.Msg, want.msg) {
			t.Fatalf("frame %d: seq %d, %d bytes; want seq %d, %d bytes", i+1, f.Seq, len(f.Msg), want.seq, len(want.msg))
		}
		if w := wantBuffered[i]; w >= 0 && r.Buffered() != (w == 1) {
			t.Fatalf("Buffered after frame %d = %v, want %v", i+1, r.Buffered(), w == 1)
		}
	}
	if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("cut frame: %v, want ErrTruncated", err)
	}
}

// TestPeerReaderHelloLimit: before Open, a frame longer than a hello is
// refused from its header alone; Open keeps what was already received and
// then takes large frames.
func TestPeerReaderHelloLimit(t *testing.T) {
	big := AppendRPC(nil, RPC{MethodID: 2, Kind: RPCFork, Args: bytes.Repeat([]byte{7}, 3*MaxHelloFrame)})
	in := append(AppendPeerHello(nil, "client", "server"), AppendPeerMessage(nil, 1, big)...)
	r := NewPeerReader(bytes.NewReader(in))
	if f, err := r.Next(); err != nil || f.Kind != PeerHello {
		t.Fatalf("hello: %+v, %v", f, err)
	}
	if _, err := NewPeerReader(bytes.NewReader(AppendPeerMessage(nil, 1, big))).Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a large frame before the hello: %v, want ErrMalformed", err)
	}
	r.Open()
	f, err := r.Next()
	if err != nil || f.Seq != 1 || !bytes.Equal(f.Msg, big) {
		t.Fatalf("after Open: seq %d, %d bytes, %v; want seq 1, %d bytes", f.Seq, len(f.Msg), err, len(big))
	}
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestPeerReaderClaimedLength: a header that claims a giant frame and then
// sends a few bytes costs memory for those bytes, not for the claim.
func TestPeerReaderClaimedLength(t *testing.T) {
	hdr := binary.LittleEndian.AppendUint32(nil, uint32(MaxPeerFrame))
	hdr = append(hdr, PeerMessage)
	in := append(hdr, make([]byte, 100<<10)...)
	r := NewPeerReader(bytes.NewReader(in))
	r.Open()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := r.Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("a cut giant frame: %v, want ErrTruncated", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 16<<20 {
		t.Fatalf("reading 100 KiB of a frame that claims %d bytes allocated %d bytes", MaxPeerFrame, grown)
	}
}

// TestPeerReaderOwned: a giant frame is read into a buffer of its own,
// PeerRoom bytes of room then the payload, which the reader lets go of:
// the next frames do not write into it. A frame parsed in the reader's
// buffer has none.
func TestPeerReaderOwned(t *testing.T) {
	var stream []byte
	sizes := []int{100, peerKeepBuffer - 200, peerKeepBuffer + 1, 3 << 20, 10, 2 << 20}
	var msgs [][]byte
	for i, n := range sizes {
		msg := AppendMessage(nil, TypeRPC, bytes.Repeat([]byte{byte('a' + i)}, n))
		msgs = append(msgs, msg)
		stream = AppendPeerMessage(stream, int64(i+1), msg)
	}
	r := NewPeerReader(bytes.NewReader(stream))
	r.Open()
	if err := r.Grow(); err != nil {
		t.Fatal(err)
	}
	var owned [][]byte
	for i := range sizes {
		f, err := r.Next()
		if err != nil || f.Seq != int64(i+1) || !bytes.Equal(f.Msg, msgs[i]) {
			t.Fatalf("frame %d: seq %d, %d bytes, %v", i, f.Seq, len(f.Msg), err)
		}
		own := r.Owned()
		if giant := PeerRoom+8+len(msgs[i]) > peerKeepBuffer; giant != (own != nil) {
			t.Fatalf("frame %d of %d bytes: own buffer %v", i, len(msgs[i]), own != nil)
		}
		if own == nil {
			continue
		}
		if len(own) != PeerRoom+8+len(f.Msg) || &own[len(own)-1] != &f.Msg[len(f.Msg)-1] {
			t.Fatalf("frame %d: own buffer of %d bytes is not room, seq and message", i, len(own))
		}
		for j := range PeerRoom + 8 {
			own[j] = 0xee // the caller's to write over
		}
		owned = append(owned, f.Msg)
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v", err)
	}
	if r.Owned() != nil {
		t.Fatal("Owned after the end")
	}
	k := 0
	for i := range sizes {
		if PeerRoom+8+len(msgs[i]) > peerKeepBuffer {
			if !bytes.Equal(owned[k], msgs[i]) {
				t.Fatalf("frame %d: its own buffer changed after later reads", i)
			}
			k++
		}
	}
}
