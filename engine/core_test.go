package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

func peerFork(args string) []byte {
	framed := logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(args)})
	m, _, _ := logfmt.ParseMessage(framed)
	return logfmt.AppendMessage(nil, logfmt.TypeRPC, m.Data[logfmt.ZigZagLen(0):])
}

// TestFirstStartRefusesPeers (found in review): a peer message during the
// first start must not be logged or acknowledged — it could become record 1
// ahead of the InitialMessage, and a crash before checkpoint 1 is durable
// makes the instance start over and lose it. The sender keeps it and retries.
func TestFirstStartRefusesPeers(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFresh()
	_ = c.Ready()
	if c.AcceptingPeers() {
		t.Fatal("accepting peers during the first start")
	}
	if err := c.PeerMessage("client", 1, peerFork("Inc-1")); err == nil {
		t.Fatal("a peer message during the first start was accepted")
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("0")); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Log) != 1 || rd.Log[0].Record.Seq != 1 || rd.Log[0].Record.Sources[0].Peer != "server" {
		t.Fatalf("record 1 is not the InitialMessage alone: %+v", rd.Log)
	}
	c.LogDurable(1)
	rd = c.Ready()
	if rd.Checkpoint == nil || len(rd.PeerAcks) != 0 {
		t.Fatalf("after record 1 is durable: checkpoint %v, acks %v", rd.Checkpoint, rd.PeerAcks)
	}
	if c.AcceptingPeers() {
		t.Fatal("accepting peers before checkpoint 1 is durable")
	}
	c.CheckpointDurable(1)
	if !c.AcceptingPeers() {
		t.Fatal("not accepting peers once the first start is complete")
	}
	if err := c.PeerMessage("client", 1, peerFork("Inc-1")); err != nil {
		t.Fatal(err)
	}
}

// liveCore returns a Core past its first start, accepting peer messages,
// with nothing pending.
func liveCore(t *testing.T) *Core {
	t.Helper()
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFresh()
	_ = c.Ready()
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("0")); err != nil {
		t.Fatal(err)
	}
	_ = c.Ready()
	c.LogDurable(1)
	_ = c.Ready()
	c.CheckpointDurable(1)
	_ = c.Ready()
	return c
}

// TestPeerMessagesBatch: a batch handled at once logs the same records as
// its messages handled one by one — resends dropped, records split at the
// size limit, the messages before a gap kept and the gap refused.
func TestPeerMessagesBatch(t *testing.T) {
	var seqs []int64
	var ends []int
	var arena []byte
	add := func(seq int64, msg []byte) {
		seqs = append(seqs, seq)
		arena = append(arena, msg...)
		ends = append(ends, len(arena))
	}
	big := string(make([]byte, 3000))
	for seq := int64(1); seq <= 2000; seq++ {
		add(seq, peerFork(fmt.Sprintf("m%d-%s", seq, big[:int(seq*7)%3000])))
	}
	add(2002, peerFork("after a gap"))
	msgAt := func(i int64) []byte {
		if i == 0 {
			return arena[:ends[0]]
		}
		return arena[ends[i-1]:ends[i]]
	}

	one, all := liveCore(t), liveCore(t)
	// Messages 1..3 arrive first: the batch repeats them (a resend).
	for seq := int64(1); seq <= 3; seq++ {
		for _, c := range []*Core{one, all} {
			if err := c.PeerMessage("client", seq, msgAt(seq-1)); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, _ = one.Ready(), all.Ready()

	var errOne error
	start := 0
	for i, end := range ends {
		if err := one.PeerMessage("client", seqs[i], arena[start:end]); err != nil {
			errOne = err
			break
		}
		start = end
	}
	errAll := all.PeerMessages("client", seqs, ends, arena)
	if errOne == nil || errAll == nil || errOne.Error() != errAll.Error() {
		t.Fatalf("gap: one by one %v, batch %v", errOne, errAll)
	}
	ro, ra := one.Ready().Log, all.Ready().Log
	if len(ro) < 2 || len(ro) != len(ra) {
		t.Fatalf("%d records one by one, %d batched; want the same, and a split", len(ro), len(ra))
	}
	for i := range ro {
		a, b := ro[i].Record, ra[i].Record
		if fmt.Sprint(a.Sources) != fmt.Sprint(b.Sources) || a.MessageCount != b.MessageCount || !bytes.Equal(a.Messages, b.Messages) {
			t.Fatalf("record %d: one by one %v (%d msgs, %d bytes), batched %v (%d msgs, %d bytes)",
				i, a.Sources, a.MessageCount, len(a.Messages), b.Sources, b.MessageCount, len(b.Messages))
		}
		if len(a.Messages) > maxOpenRecord {
			t.Fatalf("record %d holds %d bytes of messages, above the %d limit", i, len(a.Messages), maxOpenRecord)
		}
	}
	if got := all.ExpectFrom("client"); got != 1 { // nothing durable yet beyond the first start
		t.Fatalf("ExpectFrom = %d before anything is durable", got)
	}
}

// TestPeerMessagesDuplicatesInside: resends anywhere in a batch are dropped
// as one by one, not taken for a gap.
func TestPeerMessagesDuplicatesInside(t *testing.T) {
	var seqs []int64
	var ends []int
	var arena []byte
	for _, seq := range []int64{1, 2, 2, 3, 1, 4} {
		seqs = append(seqs, seq)
		arena = append(arena, peerFork(fmt.Sprintf("m%d", seq))...)
		ends = append(ends, len(arena))
	}
	c := liveCore(t)
	if err := c.PeerMessages("client", seqs, ends, arena); err != nil {
		t.Fatal(err)
	}
	log := c.Ready().Log
	if len(log) != 1 || log[0].Record.MessageCount != 4 || fmt.Sprint(log[0].Record.Sources) != fmt.Sprint([]logfmt.Source{{Peer: "client", FirstSeq: 1, Count: 4}}) {
		t.Fatalf("logged %+v", log)
	}
	var want []byte
	for seq := 1; seq <= 4; seq++ {
		want = append(want, peerFork(fmt.Sprintf("m%d", seq))...)
	}
	if !bytes.Equal(log[0].Record.Messages, want) {
		t.Fatal("the record does not hold messages 1..4 once each, in order")
	}
}

// TestUnackedOwnsItsBytes: a message kept for a destination that is down
// does not alias the app's buffer (which would keep a whole batch alive),
// and one framed in place while connected gets a copy of its own when the
// destination goes down.
func TestUnackedOwnsItsBytes(t *testing.T) {
	c := liveCore(t)
	out := func(arg string) []byte {
		framed := logfmt.AppendOutgoingRPC(nil, "other", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(arg)})
		m, _, err := logfmt.ParseMessage(framed)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AppMessage(m, nil); err != nil {
			t.Fatal(err)
		}
		return m.Data
	}
	want := func(arg string) []byte { // the delivery form
		framed := logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(arg)})
		m, _, _ := logfmt.ParseMessage(framed)
		return logfmt.AppendMessage(nil, logfmt.TypeRPC, m.Data[1:])
	}
	scribble := func(b []byte) {
		for i := range b {
			b[i] = 0xee
		}
	}
	down := out("while down")
	_ = c.Ready()
	scribble(down)
	c.PeerConnected("other", 1)
	sends := c.Ready().PeerSends
	if len(sends) != 1 || !bytes.Equal(sends[0].Msg, want("while down")) {
		t.Fatalf("resend after connecting: %+v", sends)
	}
	up := out("while up")
	if sends := c.Ready().PeerSends; len(sends) != 1 || !bytes.Equal(sends[0].Msg, want("while up")) {
		t.Fatalf("send while connected: %+v", sends)
	}
	c.PeerDisconnected("other")
	scribble(up)
	c.PeerConnected("other", 1)
	sends = c.Ready().PeerSends
	if len(sends) != 2 || !bytes.Equal(sends[0].Msg, want("while down")) || !bytes.Equal(sends[1].Msg, want("while up")) {
		t.Fatalf("resend after reconnecting: %d messages; the kept ones changed with the app's buffer?", len(sends))
	}
}

// TestLostAcknowledgedInput: a receiver whose Welcome expects a message it
// had acknowledged has lost durable input. The Core says so with the
// numbers, sends nothing more to it, and keeps counting the unacknowledged
// output's bytes.
func TestLostAcknowledgedInput(t *testing.T) {
	c := liveCore(t)
	send := func(arg string) {
		framed := logfmt.AppendOutgoingRPC(nil, "other", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(arg)})
		m, _, err := logfmt.ParseMessage(framed)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.AppMessage(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.PeerConnected("other", 1); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		send(fmt.Sprint("m", i))
	}
	_ = c.Ready()
	if c.UnackedBytes() == 0 {
		t.Fatal("five unacknowledged messages, UnackedBytes 0")
	}
	c.PeerAcked("other", 5)
	if n := c.UnackedBytes(); n != 0 {
		t.Fatalf("all acknowledged, UnackedBytes %d", n)
	}
	send("m5")
	c.PeerDisconnected("other")
	_ = c.Ready()
	err := c.PeerConnected("other", 3) // it acknowledged 5, now wants 3
	var lost *LostInputError
	if !errors.As(err, &lost) || lost.Acked != 5 || lost.Expect != 3 || lost.Receiver != "other" {
		t.Fatalf("PeerConnected after a loss: %v", err)
	}
	for _, s := range []string{"lost input it had acknowledged", "up to 5", "messages 3..5", "restore other's instance directory"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("the error does not say %q: %v", s, err)
		}
	}
	if sends := c.Ready().PeerSends; len(sends) != 0 {
		t.Fatalf("sent %d messages to a receiver that lost input", len(sends))
	}
	send("m6")
	if sends := c.Ready().PeerSends; len(sends) != 0 {
		t.Fatalf("sent new output to a receiver that lost input: %d", len(sends))
	}
}

// TestFlowGates: the input gate holds inbound links while the app is over
// budget by itself, but not while its own writes are held (the output
// gate), so that two instances can never hold each other still.
func TestFlowGates(t *testing.T) {
	f := newFlow(100)
	done := make(chan struct{})
	defer close(done)
	passed := func(wait func(<-chan struct{})) chan struct{} {
		ch := make(chan struct{})
		go func() { wait(done); close(ch) }()
		return ch
	}
	// An open gate is waited for (long, so a loaded machine does not
	// fail it); a closed one is given a moment to be passed wrongly.
	opens := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(10 * time.Second):
			return false
		}
	}
	holds := func(ch chan struct{}) bool {
		select {
		case <-ch:
			return false
		case <-time.After(50 * time.Millisecond):
			return true
		}
	}
	if !opens(passed(f.waitInput)) || !opens(passed(f.waitOutput)) {
		t.Fatal("gates closed under budget")
	}
	f.addToApp(150)
	in := passed(f.waitInput)
	if !holds(in) {
		t.Fatal("input gate open with 150 bytes waiting for the app (budget 100)")
	}
	f.setUnacked(200)
	if !opens(in) {
		t.Fatal("input gate still closed while the app's output is held")
	}
	out := passed(f.waitOutput)
	if !holds(out) {
		t.Fatal("output gate open with 200 bytes unacknowledged (budget 100)")
	}
	f.setUnacked(50)
	if !opens(out) {
		t.Fatal("output gate closed after the acks")
	}
	in = passed(f.waitInput)
	if !holds(in) {
		t.Fatal("input gate open again with the app over budget")
	}
	f.addToApp(-100)
	if !opens(in) {
		t.Fatal("input gate closed after the app took its input")
	}
}

// ReplayWire refuses a wire record that is not the record's under this
// instance's committer id.
func TestReplayWireChecksTheWireRecord(t *testing.T) {
	c := NewCore(CoreConfig{Name: "counter", CommitterID: 7})
	c.StartRecovery(&logfmt.Checkpoint{Number: 1, NextSeq: 5}, 2)
	rec := &logfmt.Record{Seq: 5, Messages: logfmt.AppendMessage(nil, logfmt.TypeRPC, []byte("x"))}
	for _, w := range [][]byte{
		logfmt.AppendWireRecord(nil, 8, 5, rec.Messages),
		logfmt.AppendWireRecord(nil, 7, 6, rec.Messages),
		logfmt.AppendWireRecord(nil, 7, 5, rec.Messages)[:10],
		append(logfmt.AppendWireRecord(nil, 7, 5, rec.Messages), 0),
	} {
		if err := c.ReplayWire(rec, w); err == nil {
			t.Fatalf("ReplayWire took %x", w)
		}
	}
	if err := c.ReplayWire(rec, logfmt.AppendWireRecord(nil, 7, 5, rec.Messages)); err != nil {
		t.Fatal(err)
	}
}
