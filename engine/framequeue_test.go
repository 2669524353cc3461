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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	out, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	q := newFrameQueue()
	done := make(chan struct{})
	go func() { q.drainTo(out); close(done) }()

	sizes := []int{0, 1, 100, frameChunkSize - 13, frameChunkSize, 3 * frameChunkSize, 4 << 10}
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
