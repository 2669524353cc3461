package engine

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// gatedCore is liveCore with CoreConfig.SenderGates, as the coordinator
// runs it.
func gatedCore(t *testing.T, gates bool) *Core {
	t.Helper()
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1, SenderGates: gates})
	c.StartFresh()
	rd := c.Ready()
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("0")); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	// During the first start nothing that waits for a record is handed
	// over, gates or not: the first checkpoint must be durable first.
	for i, g := range rd.ToAppGate {
		if g != 0 {
			t.Fatalf("first start: ToApp[%d] handed over waiting for record %d", i, g)
		}
	}
	c.LogDurable(1)
	_ = c.Ready()
	c.CheckpointDurable(1)
	_ = c.Ready()
	return c
}

// TestCoreSenderGates: with SenderGates a peer's message is handed to the
// sender in the Ready that logs it, waiting for its record; without, only
// once the record is durable. The bytes are the same either way.
func TestCoreSenderGates(t *testing.T) {
	held, gated := gatedCore(t, false), gatedCore(t, true)
	for _, c := range []*Core{held, gated} {
		if err := c.PeerMessage("client", 1, peerFork("Inc-1")); err != nil {
			t.Fatal(err)
		}
	}
	rdHeld, rdGated := held.Ready(), gated.Ready()
	if len(rdHeld.Log) != 1 || len(rdGated.Log) != 1 {
		t.Fatalf("records logged: %d and %d, want 1 each", len(rdHeld.Log), len(rdGated.Log))
	}
	seq := rdGated.Log[0].Record.Seq
	if len(rdHeld.ToApp) != 0 || rdHeld.ToAppGate != nil {
		t.Fatalf("without gates: %d deliveries (gates %v) before the record is durable", len(rdHeld.ToApp), rdHeld.ToAppGate)
	}
	if len(rdGated.ToApp) != 1 || len(rdGated.ToAppGate) != 1 || rdGated.ToAppGate[0] != seq {
		t.Fatalf("with gates: ToApp %d, gates %v; want one delivery waiting for record %d", len(rdGated.ToApp), rdGated.ToAppGate, seq)
	}
	gatedWire := append([]byte(nil), rdGated.ToApp[0]...)
	if wireRecordSeq(gatedWire) != seq {
		t.Fatalf("the delivery is record %d, its gate %d", wireRecordSeq(gatedWire), seq)
	}
	held.LogDurable(seq)
	gated.LogDurable(seq)
	rdHeld, rdGated = held.Ready(), gated.Ready()
	if len(rdHeld.ToApp) != 1 || !bytes.Equal(rdHeld.ToApp[0], gatedWire) {
		t.Fatalf("without gates, once durable: %d deliveries; same bytes as the gated one: %v", len(rdHeld.ToApp), len(rdHeld.ToApp) == 1 && bytes.Equal(rdHeld.ToApp[0], gatedWire))
	}
	if len(rdGated.ToApp) != 0 {
		t.Fatalf("with gates, the record was handed over twice")
	}
	if gated.Durable() != seq {
		t.Fatalf("Durable() = %d, want %d", gated.Durable(), seq)
	}
}

// recordingWriter collects what the sender writes and signals each write.
type recordingWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wrote chan struct{}
}

func (w *recordingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *recordingWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the writer holds want, failing after a while.
func (w *recordingWriter) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for w.String() != want {
		select {
		case <-w.wrote:
		case <-deadline:
			t.Fatalf("the app got %q, want %q", w.String(), want)
		}
	}
}

// stays checks that the writer still holds want a little later: nothing
// that waits for a record went early.
func (w *recordingWriter) stays(t *testing.T, want string) {
	t.Helper()
	time.Sleep(20 * time.Millisecond)
	if got := w.String(); got != want {
		t.Fatalf("the app got %q, want still %q", got, want)
	}
}

// TestAppSenderGates: an item waiting for a record is written only once
// the record is reported durable, and nothing queued after it goes first,
// even items that wait for nothing; the gates open in order as the log
// syncs, and a report for an older record changes nothing.
func TestAppSenderGates(t *testing.T) {
	w := &recordingWriter{wrote: make(chan struct{}, 1)}
	f := newFlow(1 << 20)
	s := newAppSender(w, f, func(err error) { t.Errorf("sender: %v", err) })
	defer s.close()

	s.send([][]byte{[]byte("a")}, nil)
	w.waitFor(t, "a")
	s.send([][]byte{[]byte("b"), []byte("c"), []byte("d"), []byte("e")}, []int64{0, 5, 0, 7})
	w.waitFor(t, "ab")
	w.stays(t, "ab")
	s.logDurable(4)
	w.stays(t, "ab")
	s.logDurable(5)
	w.waitFor(t, "abcd")
	w.stays(t, "abcd")
	s.logDurable(3) // older: no change
	w.stays(t, "abcd")
	s.logDurable(9)
	w.waitFor(t, "abcde")
	// Below the durable mark an item goes at once.
	s.send([][]byte{[]byte("f")}, []int64{8})
	w.waitFor(t, "abcdef")
	f.mu.Lock()
	left := f.toApp
	f.mu.Unlock()
	if left != 0 {
		t.Fatalf("flow: %d bytes still counted toward the app after all were written", left)
	}
}

// TestAppSenderCloseDropsWaiting: closing the sender leaves what waits for a
// record unwritten (a conversation that stops has nothing more durable to
// deliver; recovery delivers it from the log) and returns.
func TestAppSenderCloseDropsWaiting(t *testing.T) {
	w := &recordingWriter{wrote: make(chan struct{}, 1)}
	s := newAppSender(w, newFlow(1<<20), func(err error) { t.Errorf("sender: %v", err) })
	s.send([][]byte{[]byte("x"), []byte("y")}, []int64{0, 2})
	w.waitFor(t, "x")
	done := make(chan struct{})
	go func() { s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close did not return with an item waiting for its record")
	}
	if got := w.String(); got != "x" {
		t.Fatalf("after close the app got %q, want %q", got, "x")
	}
}

// TestAppSenderWriteError: a failed write is reported once, and the sender
// stops.
func TestAppSenderWriteError(t *testing.T) {
	pr, pw := io.Pipe()
	pr.CloseWithError(errors.New("app gone"))
	errs := make(chan error, 2)
	s := newAppSender(pw, newFlow(1<<20), func(err error) { errs <- err })
	s.send([][]byte{[]byte("r")}, []int64{1})
	s.logDurable(1)
	select {
	case err := <-errs:
		if err == nil {
			t.Fatal("nil error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no error reported for a failed write")
	}
	s.close()
}

// queued returns the frames waiting in q, as one byte string.
func queued(q *frameQueue) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var b []byte
	for _, c := range q.chunks {
		b = append(b, c...)
	}
	return string(b)
}

// TestDelayedAcks: a sender's acknowledgement waits up to peerAckDelay and
// goes as one frame for whatever came meanwhile; peerAckEvery messages
// waiting send it at once; an ack for what was already acknowledged is not
// sent again; a sender with no inbound connection gets none.
func TestDelayedAcks(t *testing.T) {
	in := &inLink{from: "p", queue: newFrameQueue()}
	v := &conversation{events: make(chan event, 8), done: make(chan struct{}), inlinks: map[string]*inLink{"p": in}}
	defer close(v.done)
	ackFrame := func(seq int64) string { return string(logfmt.AppendPeerSeq(nil, logfmt.PeerAck, seq)) }

	v.ack("p", 3)
	v.ack("p", 7)
	v.ack("q", 2) // no inbound connection from q
	if got := queued(in.queue); got != "" {
		t.Fatalf("an ack went before its delay: %q", got)
	}
	select {
	case e := <-v.events:
		if !e.flushAcks {
			t.Fatalf("event %+v, want the ack delay's", e)
		}
		if err := v.handle(e); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the ack delay never ran out")
	}
	if got, want := queued(in.queue), ackFrame(7); got != want {
		t.Fatalf("after the delay: %q, want one ack of 7 (%q)", got, want)
	}
	v.ack("p", 5) // already acknowledged
	v.ack("p", 7+peerAckEvery)
	if got, want := queued(in.queue), ackFrame(7)+ackFrame(7+peerAckEvery); got != want {
		t.Fatalf("%d messages waiting: %q, want the ack at once (%q)", peerAckEvery, got, want)
	}
	if len(v.pendingAcks) != 0 {
		t.Fatalf("acks still waiting: %v", v.pendingAcks)
	}
}
