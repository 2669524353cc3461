package engine

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// TestFrameQueueOrder: frames of every size, chunk-sized and larger ones
// included, pushed while the writer drains, arrive whole and in order.
func TestFrameQueueOrder(t *testing.T) {
	out, in := tcpPair(t)
	q := newFrameQueue()
	done := make(chan struct{})
	go func() { q.drainTo(out); close(done) }()

	sizes := []int{0, 1, 100, maxRunFrame - 20, maxRunFrame - 1, maxRunFrame, maxRunFrame + 1, frameChunkSize - 13, frameChunkSize, 3 * frameChunkSize, 4 << 10}
	var want [][]byte
	seq := int64(0)
	for round := 0; round < 40; round++ {
		var batch []PeerSend
		for _, n := range sizes {
			seq++
			body := bytes.Repeat([]byte{byte(seq)}, n)
			msg := logfmt.AppendMessage(nil, logfmt.TypeRPC, logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: body}))
			batch = append(batch, PeerSend{Seq: seq, Msg: msg})
			want = append(want, msg)
		}
		q.pushMessages(batch)
		q.push(logfmt.AppendPeerSeq(nil, logfmt.PeerAck, seq))
	}
	r := logfmt.NewPeerReader(in)
	r.Open()
	next := int64(1)
	kinds := map[byte]int{}
	for next <= seq {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("after message %d: %v", next-1, err)
		}
		kinds[f.Kind]++
		if f.Kind == logfmt.PeerAck {
			continue
		}
		if f.Seq != next {
			t.Fatalf("frame of kind %d starts at seq %d, want %d", f.Kind, f.Seq, next)
		}
		start := 0
		if err := logfmt.EachPeerMessage(f.Msg, f.Count, func(end int) {
			if !bytes.Equal(f.Msg[start:end], want[next-1]) {
				t.Fatalf("message %d: %d bytes, want %d", next, end-start, len(want[next-1]))
			}
			start = end
			next++
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Small runs travel as Messages frames, messages beyond a run frame's
	// limit as Message frames of their own.
	if kinds[logfmt.PeerMessages] == 0 || kinds[logfmt.PeerMessage] == 0 {
		t.Fatalf("frame kinds seen: %v; want both Messages and Message", kinds)
	}
	// Written chunks come back for reuse (a writev that nils what it wrote
	// once made every push allocate a fresh chunk).
	deadline := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		free := len(q.free)
		q.mu.Unlock()
		if free > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no written chunk was kept for reuse")
		}
		time.Sleep(time.Millisecond)
	}
	q.close()
	<-done
	if len(q.free) > maxFreeChunks {
		t.Fatalf("%d free chunks kept, at most %d", len(q.free), maxFreeChunks)
	}
}

// TestFrameQueueByReference: a message too large for a Messages frame is
// queued by reference, and its Message frame on the wire is the bytes of
// one built by copying it (AppendPeerMessage). Its bytes are the Core's: the
// queue neither appends to them nor recycles them as a chunk, even when the
// message is exactly a chunk's size, and it lets go of them once written.
func TestFrameQueueByReference(t *testing.T) {
	out, in := tcpPair(t)
	q := newFrameQueue()
	done := make(chan struct{})
	go func() { q.drainTo(out); close(done) }()
	r := logfmt.NewPeerReader(in)
	r.Open()
	readFrame := func() logfmt.PeerFrame {
		t.Helper()
		f, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}

	for i, n := range []int{maxRunFrame + 1, frameChunkSize - logfmt.PeerMessageHeaderSize, frameChunkSize, frameChunkSize + 1, 3*frameChunkSize + 5} {
		seq := int64(i + 1)
		body := bytes.Repeat([]byte{byte(seq)}, n)
		msg := logfmt.AppendMessage(make([]byte, 0, n+16), logfmt.TypeRPC, body)
		msg = msg[:len(msg):len(msg)]
		if n == frameChunkSize {
			// A message exactly a chunk's size (its buffer too).
			msg = make([]byte, frameChunkSize)
			copy(msg, logfmt.AppendMessage(nil, logfmt.TypeRPC, body[:frameChunkSize-logfmt.ZigZagLen(frameChunkSize)-1]))
		}
		keep := bytes.Clone(msg)
		q.pushMessages([]PeerSend{{Seq: seq, Msg: msg}})
		f := readFrame()
		if f.Kind != logfmt.PeerMessage || f.Seq != seq || !bytes.Equal(f.Msg, keep) {
			t.Fatalf("message of %d bytes: frame kind %d seq %d, %d bytes; want a Message frame %d, %d bytes", len(msg), f.Kind, f.Seq, len(f.Msg), seq, len(keep))
		}
		// The frame's bytes are those of the copied path.
		if got, want := logfmt.AppendPeerMessageHeader(nil, seq, len(msg)), logfmt.AppendPeerMessage(nil, seq, msg)[:logfmt.PeerMessageHeaderSize]; !bytes.Equal(got, want) {
			t.Fatalf("head %x, want %x", got, want)
		}
		// Small frames pushed after it, which reuse written chunks, must
		// not land in the message's bytes.
		for k := 0; k < 64; k++ {
			q.push(logfmt.AppendPeerSeq(nil, logfmt.PeerAck, int64(k)))
			q.pushMessages([]PeerSend{{Seq: 100 + int64(k), Msg: logfmt.AppendMessage(nil, logfmt.TypeRPC, bytes.Repeat([]byte{0xee}, 4<<10))}})
			readFrame()
			readFrame()
		}
		if !bytes.Equal(msg, keep) {
			t.Fatalf("message of %d bytes changed after it was written", len(msg))
		}
		q.mu.Lock()
		for _, c := range q.free {
			if len(msg) > 0 && &c[:1][0] == &msg[0] {
				t.Fatalf("the message of %d bytes became a free chunk", len(msg))
			}
		}
		q.mu.Unlock()
	}
	q.close()
	<-done
}

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (out, in net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if out, err = net.Dial("tcp", ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	if in, err = ln.Accept(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close(); in.Close() })
	return out, in
}
