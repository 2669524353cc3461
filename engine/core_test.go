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

// TestAppMessageInPlaceWithRoom: an app's RPC read with room in front
// (logfmt.NewOwningMessageReader, Core.AppMessageIn) is framed for delivery
// in place, over its destination and that room, whatever the lengths of
// its destination and of its frame's size field: the message sent to the
// peer aliases the app's buffer, and its bytes are those of the copy
// AppMessage makes without room. The resend after a reconnect sends the
// same bytes.
func TestAppMessageInPlaceWithRoom(t *testing.T) {
	for _, dest := range []string{"x", "srv", "other-instance"} {
		for _, n := range []int{0, 50, 63, 64, 8180, 8200, 1<<20 - 20, 1<<20 + 10} {
			args := bytes.Repeat([]byte{0xab}, n)
			framed := logfmt.AppendOutgoingRPC(nil, dest, logfmt.RPC{MethodID: 7, Kind: logfmt.RPCFork, Args: args})
			want := logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 7, Kind: logfmt.RPCFork, Args: args})

			// Without room: the copy (or the in-place framing where the
			// destination leaves room enough).
			c := liveCore(t)
			c.PeerConnected(dest, 1)
			m, _, err := logfmt.ParseMessage(bytes.Clone(framed))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.AppMessage(m, nil); err != nil {
				t.Fatal(err)
			}
			sends := c.Ready().PeerSends
			if len(sends) != 1 || !bytes.Equal(sends[0].Msg, want) {
				t.Fatalf("dest %q, %d bytes, no room: sent %d messages, not the delivery form", dest, n, len(sends))
			}

			// With room.
			c = liveCore(t)
			c.PeerConnected(dest, 1)
			mr := logfmt.NewOwningMessageReader(bytes.NewReader(framed))
			m, err = mr.Next()
			if err != nil {
				t.Fatal(err)
			}
			buf := mr.Buf()
			if len(buf) != logfmt.FreshRoom+1+len(m.Data) || &buf[len(buf)-1] != &m.Data[len(m.Data)-1] {
				t.Fatalf("Buf is %d bytes, not the room, type byte and data (%d)", len(buf), len(m.Data))
			}
			if err := c.AppMessageIn(m, buf, nil); err != nil {
				t.Fatal(err)
			}
			sends = c.Ready().PeerSends
			if len(sends) != 1 || !bytes.Equal(sends[0].Msg, want) {
				t.Fatalf("dest %q, %d bytes, with room: sent %d messages, not the delivery form", dest, n, len(sends))
			}
			msg := sends[0].Msg
			if &msg[len(msg)-1] != &buf[len(buf)-1] || cap(msg) != len(msg) {
				t.Fatalf("dest %q, %d bytes: the delivery form was copied, or may be appended to", dest, n)
			}
			c.PeerDisconnected(dest)
			c.PeerConnected(dest, 1)
			if sends := c.Ready().PeerSends; len(sends) != 1 || !bytes.Equal(sends[0].Msg, want) {
				t.Fatalf("dest %q, %d bytes: the resend differs", dest, n)
			}
		}
	}
	// A buffer that is not the message's own is ignored.
	c := liveCore(t)
	c.PeerConnected("x", 1)
	framed := logfmt.AppendOutgoingRPC(nil, "x", logfmt.RPC{MethodID: 7, Kind: logfmt.RPCFork, Args: []byte("abc")})
	m, _, _ := logfmt.ParseMessage(framed)
	if err := c.AppMessageIn(m, make([]byte, 64), nil); err != nil {
		t.Fatal(err)
	}
	if sends := c.Ready().PeerSends; len(sends) != 1 || !bytes.Equal(sends[0].Msg, logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 7, Kind: logfmt.RPCFork, Args: []byte("abc")})) {
		t.Fatal("a foreign buffer changed what was sent")
	}
}

// TestPeerMessageOwned: a giant peer message in a buffer of its own
// (PeerReader.Owned) is logged and delivered from that buffer, and the log
// record and the bytes for the app are those of the copying path; a message
// that may share a record is copied, so its source may change afterwards.
func TestPeerMessageOwned(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, n := range []int{100, maxOpenRecord - 200, maxOpenRecord, maxOpenRecord + 1, 3 << 20} {
		giant := peerFork(string(bytes.Repeat([]byte{'g'}, n)))
		r := logfmt.NewPeerReader(bytes.NewReader(logfmt.AppendPeerMessage(nil, 2, giant)))
		r.Open()
		if err := r.Grow(); err != nil {
			t.Fatal(err)
		}
		f, err := r.Next()
		if err != nil || !bytes.Equal(f.Msg, giant) {
			t.Fatalf("%d bytes: read %d bytes, %v", len(giant), len(f.Msg), err)
		}
		own := r.Owned()
		if own == nil {
			if len(giant) > maxOpenRecord {
				t.Fatalf("%d bytes: the reader kept the frame's buffer", len(giant))
			}
			own = f.Msg // (as the link does, no buffer of its own: copied)
		}

		copied, owned := liveCore(t), liveCore(t)
		for _, c := range []*Core{copied, owned} {
			c.cfg.Now = func() time.Time { return at }
			if err := c.PeerMessage("client", 1, peerFork("before")); err != nil {
				t.Fatal(err)
			}
		}
		if err := copied.PeerMessage("client", 2, bytes.Clone(giant)); err != nil {
			t.Fatal(err)
		}
		if err := owned.PeerMessageOwned("client", 2, own, f.Msg); err != nil {
			t.Fatal(err)
		}
		byRef := len(giant) > maxOpenRecord
		if !byRef {
			for i := range f.Msg {
				f.Msg[i] = 0xee // copied: the source is free again
			}
		}
		for _, c := range []*Core{copied, owned} {
			if err := c.PeerMessage("client", 3, peerFork("after")); err != nil {
				t.Fatal(err)
			}
		}
		// A resend of the giant one is dropped.
		if err := owned.PeerMessageOwned("client", 2, own, f.Msg); err != nil {
			t.Fatal(err)
		}
		lc, lo := copied.Ready().Log, owned.Ready().Log
		if len(lc) != len(lo) {
			t.Fatalf("%d bytes: %d records copied, %d owned", len(giant), len(lc), len(lo))
		}
		var last int64
		found := !byRef
		for i := range lc {
			a, err := logfmt.AppendRecord(nil, lc[i].Record)
			if err != nil {
				t.Fatal(err)
			}
			b, err := logfmt.AppendRecord(nil, lo[i].Record)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) || lc[i].Segment != lo[i].Segment {
				t.Fatalf("%d bytes: record %d differs from the copied one's (%d and %d bytes)", len(giant), i, len(a), len(b))
			}
			if m := lo[i].Record.Messages; byRef && len(m) == len(giant) {
				if &m[0] != &own[logfmt.WireHeaderSize] {
					t.Fatalf("%d bytes: the giant record's messages were copied", len(giant))
				}
				found = true
			}
			last = lc[i].Record.Seq
		}
		if !found {
			t.Fatalf("%d bytes: no record holds the giant message alone", len(giant))
		}
		copied.LogDurable(last)
		owned.LogDurable(last)
		ac, ao := copied.Ready().ToApp, owned.Ready().ToApp
		if len(ac) != len(ao) {
			t.Fatalf("%d bytes: %d chunks to the app copied, %d owned", len(giant), len(ac), len(ao))
		}
		for i := range ac {
			if !bytes.Equal(ac[i], ao[i]) {
				t.Fatalf("%d bytes: chunk %d to the app differs from the copied one's", len(giant), i)
			}
			if byRef && len(ao[i]) == logfmt.WireHeaderSize+len(giant) && &ao[i][0] != &own[0] {
				t.Fatalf("%d bytes: the giant record for the app was copied", len(giant))
			}
		}
	}
}

// TestSelfCallOwned: a giant self-call or impulse read with room in front
// (Core.AppMessageIn) is logged as a record of its own that holds it where
// it lies in the app's buffer; the record's bytes, and what the app gets
// once it is durable, are those of the copying path (AppMessage).
func TestSelfCallOwned(t *testing.T) {
	at := time.Unix(1700000000, 0)
	for _, kind := range []logfmt.RPCKind{logfmt.RPCFork, logfmt.RPCImpulse} {
		for _, n := range []int{100, maxOpenRecord - 100, maxOpenRecord + 1, 3 << 20} {
			for _, dest := range []string{"", "server"} { // both name this instance
				args := bytes.Repeat([]byte{byte(n)}, n)
				framed := logfmt.AppendOutgoingRPC(nil, dest, logfmt.RPC{MethodID: 9, Kind: kind, Args: args})
				copied, owned := liveCore(t), liveCore(t)
				var buf []byte
				for _, c := range []*Core{copied, owned} {
					c.cfg.Now = func() time.Time { return at }
				}
				m, _, err := logfmt.ParseMessage(bytes.Clone(framed))
				if err != nil {
					t.Fatal(err)
				}
				if err := copied.AppMessage(m, nil); err != nil {
					t.Fatal(err)
				}
				mr := logfmt.NewOwningMessageReader(bytes.NewReader(framed))
				if m, err = mr.Next(); err != nil {
					t.Fatal(err)
				}
				buf = mr.Buf()
				if err := owned.AppMessageIn(m, buf, nil); err != nil {
					t.Fatal(err)
				}
				lc, lo := copied.Ready().Log, owned.Ready().Log
				if len(lc) != 1 || len(lo) != 1 {
					t.Fatalf("%v %d bytes to %q: %d records copied, %d owned; want 1", kind, n, dest, len(lc), len(lo))
				}
				a, err := logfmt.AppendRecord(nil, lc[0].Record)
				if err != nil {
					t.Fatal(err)
				}
				b, err := logfmt.AppendRecord(nil, lo[0].Record)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(a, b) {
					t.Fatalf("%v %d bytes to %q: the record differs from the copied one's", kind, n, dest)
				}
				msgs := lo[0].Record.Messages
				aliased := &msgs[len(msgs)-1] == &buf[len(buf)-1]
				if aliased != (len(msgs) > maxOpenRecord) {
					t.Fatalf("%v %d bytes to %q: record aliases the app's buffer %v", kind, n, dest, aliased)
				}
				seq := lc[0].Record.Seq
				copied.LogDurable(seq)
				owned.LogDurable(seq)
				ac, ao := copied.Ready().ToApp, owned.Ready().ToApp
				if len(ac) != len(ao) {
					t.Fatalf("%v %d bytes to %q: %d chunks to the app copied, %d owned", kind, n, dest, len(ac), len(ao))
				}
				for i := range ac {
					if !bytes.Equal(ac[i], ao[i]) {
						t.Fatalf("%v %d bytes to %q: chunk %d to the app differs", kind, n, dest, i)
					}
				}
			}
		}
	}
}

// TestBatchInPlace: the RPCs of an app's RPCBatch are framed for delivery
// in place, each over its own frame's header and destination, however
// short the destination: what is sent has the bytes of the delivery form,
// a large one aliases the batch, and framing one leaves the others' bytes
// as they were.
func TestBatchInPlace(t *testing.T) {
	c := liveCore(t)
	c.PeerConnected("x", 1)
	sizes := []int{3, 200 << 10, 10, 1<<20 + 5, 0}
	var framed []byte
	var want [][]byte
	for i, n := range sizes {
		args := bytes.Repeat([]byte{byte('a' + i)}, n)
		framed = logfmt.AppendOutgoingRPC(framed, "x", logfmt.RPC{MethodID: int32(i), Kind: logfmt.RPCFork, Args: args})
		want = append(want, logfmt.AppendRPC(nil, logfmt.RPC{MethodID: int32(i), Kind: logfmt.RPCFork, Args: args}))
	}
	batch := logfmt.AppendRPCBatch(nil, framed, len(sizes))
	m, _, err := logfmt.ParseMessage(batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.AppMessage(m, nil); err != nil {
		t.Fatal(err)
	}
	sends := c.Ready().PeerSends
	if len(sends) != len(sizes) {
		t.Fatalf("%d messages sent, want %d", len(sends), len(sizes))
	}
	for i, s := range sends {
		if !bytes.Equal(s.Msg, want[i]) {
			t.Fatalf("message %d of %d bytes: not its delivery form", i, sizes[i])
		}
	}
	// All of them lie in the batch: scribbling over it shows in each.
	for i := range batch {
		batch[i] = 0xee
	}
	for i, s := range sends {
		if !bytes.Equal(s.Msg, bytes.Repeat([]byte{0xee}, len(s.Msg))) {
			t.Fatalf("message %d of %d bytes was copied", i, sizes[i])
		}
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

// A checkpoint read with room before its state is framed for the app in
// that room, the same bytes StartRecovery sends, without a copy of the
// state; without room (or with too little) it is copied as before.
func TestStartRecoveryFramed(t *testing.T) {
	state := bytes.Repeat([]byte("state"), 1000)
	toApp := func(framed []byte, ck *logfmt.Checkpoint) []byte {
		t.Helper()
		c := NewCore(CoreConfig{Name: "counter", CommitterID: 7})
		c.StartRecoveryFramed(ck, framed, 2)
		out := c.Ready().ToApp
		if len(out) != 1 {
			t.Fatalf("%d chunks to the app, want the checkpoint's one", len(out))
		}
		return out[0]
	}
	want := toApp(nil, &logfmt.Checkpoint{Number: 1, NextSeq: 5, State: state})
	if h, err := logfmt.ParseWireHeader(want); err != nil || h.Seq != logfmt.SeqCheckpointRecord || !bytes.Equal(want[len(want)-len(state):], state) {
		t.Fatalf("checkpoint record %x…: %+v, %v", want[:40], h, err)
	}
	for _, room := range []int{checkpointRoom, len(want) - len(state), len(want) - len(state) - 1, 0} {
		framed := make([]byte, room+len(state))
		copy(framed[room:], state)
		ck := &logfmt.Checkpoint{Number: 1, NextSeq: 5, State: framed[room:]}
		got := toApp(framed, ck)
		if !bytes.Equal(got, want) {
			t.Fatalf("room %d: %x… to the app, want %x…", room, got[:40], want[:40])
		}
		inPlace := &got[len(got)-len(state)] == &ck.State[0]
		if fits := room >= len(want)-len(state); inPlace != fits {
			t.Fatalf("room %d for a %d-byte frame: framed in place %v", room, len(want)-len(state), inPlace)
		}
	}
}

// TestStreamedReplaySelfCalls: while a recovery still feeds the log (a
// streamed recovery, whose app replays meanwhile), the app's regenerated
// self-calls are handled as they come, as a follower's are: dropped once a
// fed record holds them, kept (not logged: record numbers are still the
// log's) while none does yet, and only those no record holds are logged,
// once, by FinishRecovery. Nothing waits for the log's end but those. A
// Checkpoint before FinishRecovery asked for one is refused.
func TestStreamedReplaySelfCalls(t *testing.T) {
	// Self-call k: the app makes it handling record k-1 (self-call 1 before
	// the checkpoint), and record k holds it.
	call := func(k int) (framed, body []byte) {
		framed = logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte{byte(k)}})
		m, _, err := logfmt.ParseMessage(framed)
		if err != nil {
			t.Fatal(err)
		}
		o, err := logfmt.ParseOutgoingRPC(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return framed, m.Data[o.BodyAt:]
	}
	const fed = 5
	dig := make([]uint64, fed+2) // dig[k]: the output digest after self-call k
	for k := 1; k <= fed+1; k++ {
		_, body := call(k)
		dig[k] = logfmt.ChainDigest(dig[k-1], nil, body)
	}
	_, body1 := call(1)
	c := NewCore(CoreConfig{Name: "counter", CommitterID: 7})
	c.StartRecovery(&logfmt.Checkpoint{Number: 1, NextSeq: 1, OutCount: 1, OutDigest: dig[1],
		Outputs: []logfmt.OutputStream{{Peer: "counter", LastSeq: 1, Unacked: [][]byte{logfmt.AppendMessage(nil, logfmt.TypeRPC, body1)}}}}, 2)
	_ = c.Ready()
	feed := func(k int) {
		t.Helper()
		_, body := call(k)
		rec := &logfmt.Record{Seq: int64(k), Sources: []logfmt.Source{{Peer: "counter", FirstSeq: int64(k), Count: 1}},
			Messages: logfmt.AppendMessage(nil, logfmt.TypeRPC, body), OutCount: uint64(k + 1), OutDigest: dig[k+1]}
		if err := c.ReplayWire(rec, logfmt.AppendWireRecord(nil, 7, rec.Seq, rec.Messages)); err != nil {
			t.Fatal(err)
		}
	}
	send := func(k int) {
		t.Helper()
		framed, _ := call(k)
		m, _, _ := logfmt.ParseMessage(framed)
		if err := c.AppMessage(m, nil); err != nil {
			t.Fatal(err)
		}
	}
	kept := func() int { return c.outs["counter"].unacked.len() }
	check := func(what string, wantKept int) {
		t.Helper()
		rd := c.Ready()
		if len(rd.Log) != 0 || len(rd.Warnings) != 0 || rd.Fatal != nil || kept() != wantKept {
			t.Fatalf("%s: %d records logged, warnings %q, fatal %v, %d self-calls kept; want none logged, %d kept", what, len(rd.Log), rd.Warnings, rd.Fatal, kept(), wantKept)
		}
	}
	// The log reader runs ahead: records 1..3 are fed, the app replays.
	for k := 1; k <= 3; k++ {
		feed(k)
	}
	check("records 1..3 fed", 0)
	send(2)
	send(3)
	check("self-calls 2, 3 (records 2, 3 hold them)", 0)
	send(4)
	check("self-call 4 (no record read holds it yet)", 1)
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("early")); err == nil {
		t.Fatal("a Checkpoint while the log is still read was taken")
	}
	feed(4)
	feed(5)
	check("records 4, 5 fed", 0)
	send(5)
	send(6) // handling record 5: in no record, the crash came first
	check("self-calls 5, 6", 1)
	c.FinishRecovery()
	rd := c.Ready()
	if len(rd.Log) != 1 || len(rd.Log[0].Record.Sources) != 1 || rd.Log[0].Record.Sources[0] != (logfmt.Source{Peer: "counter", FirstSeq: 6, Count: 1}) || rd.Log[0].Record.Seq != fed+1 {
		t.Fatalf("after FinishRecovery: %+v; want record %d holding self-call 6 alone", rd.Log, fed+1)
	}
	if len(rd.Warnings) != 0 || rd.Fatal != nil {
		t.Fatalf("after FinishRecovery: warnings %q, fatal %v", rd.Warnings, rd.Fatal)
	}
}

// TestStreamedReplayLatePoints (found in review): a record's point (the
// output count and digest when it was sealed) can be fed after the app's
// output passed it, when the app caught up with a log still being read;
// it is compared with the digest the stream had at its count, as a point
// fed in time is. The same replay, fed all at once before any output, is
// judged the same way: a replay that sends what the log recorded passes,
// one that sends other messages is stopped, or (policy warn) told once,
// and the points after it compare from the log's digest again.
func TestStreamedReplayLatePoints(t *testing.T) {
	out := func(arg byte) logfmt.Message {
		framed := logfmt.AppendOutgoingRPC(nil, "client", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte{arg}})
		m, _, err := logfmt.ParseMessage(framed)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	body := func(arg byte) []byte {
		m := out(arg)
		o, err := logfmt.ParseOutgoingRPC(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return m.Data[o.BodyAt:]
	}
	// The recorded run: record k (k = 1..4) made two messages, recorded[2k-2:2k];
	// each record's point is the count when it was sealed, before the
	// previous record's output (pipelined): record k's is 2(k-2).
	recorded := []byte("ABCDEFGH")
	dig := []uint64{0}
	for _, a := range recorded {
		dig = append(dig, logfmt.ChainDigest(dig[len(dig)-1], []byte("client"), body(a)))
	}
	in := logfmt.AppendMessage(nil, logfmt.TypeRPC, []byte{1, 2, 3})
	point := func(k int) uint64 { return uint64(max(0, 2*(k-2))) }
	run := func(t *testing.T, streamed bool, policy NondeterminismPolicy, sent []byte) (warnings []string, fatal error) {
		c := NewCore(CoreConfig{Name: "server", CommitterID: 7, Nondeterminism: policy})
		c.StartRecovery(&logfmt.Checkpoint{Number: 1, NextSeq: 1}, 2)
		ready := func() {
			rd := c.Ready()
			warnings = append(warnings, rd.Warnings...)
			if rd.Fatal != nil && fatal == nil {
				fatal = rd.Fatal
			}
		}
		feed := func(k int) {
			rec := &logfmt.Record{Seq: int64(k), Sources: []logfmt.Source{{Peer: "client", FirstSeq: int64(k), Count: 1}}, Messages: in, OutCount: point(k), OutDigest: dig[point(k)]}
			if err := c.ReplayWire(rec, logfmt.AppendWireRecord(nil, 7, rec.Seq, rec.Messages)); err != nil {
				t.Fatal(err)
			}
			ready()
		}
		handle := func(k int) { // the app handles record k
			for _, a := range sent[2*k-2 : 2*k] {
				if err := c.AppMessage(out(a), nil); err != nil {
					t.Fatal(err)
				}
			}
			ready()
		}
		if streamed { // the app keeps up: each record's point comes after the output of the one before
			for k := 1; k <= 4; k++ {
				feed(k)
				handle(k)
			}
			c.FinishRecovery()
		} else {
			for k := 1; k <= 4; k++ {
				feed(k)
			}
			c.FinishRecovery()
			for k := 1; k <= 4; k++ {
				handle(k)
			}
		}
		ready()
		if fatal == nil {
			if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("s")); err != nil {
				t.Fatal(err)
			}
			ready()
		}
		return warnings, fatal
	}
	for _, streamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("streamed=%v", streamed), func(t *testing.T) {
			if w, f := run(t, streamed, NondeterminismStop, recorded); f != nil || len(w) != 0 {
				t.Fatalf("the recorded messages again: fatal %v, warnings %q; want neither", f, w)
			}
			// Record 2's output differs: the point of record 4 (count 4)
			// covers it; that of record 3 (count 2) does not.
			other := []byte("ABCxEFGH")
			if _, f := run(t, streamed, NondeterminismStop, other); f == nil || !strings.Contains(f.Error(), "record 4") {
				t.Fatalf("other messages: fatal %v; want a stop naming record 4's point", f)
			}
			// Told once, with the messages the point covers (3..4, "x"
			// among them), not those sent after it.
			w, f := run(t, streamed, NondeterminismWarn, other)
			if f != nil || len(w) != 1 || !strings.Contains(w[0], "1 point") || !strings.Contains(w[0], `messages 3..4`) ||
				!strings.Contains(w[0], `"x"`) || strings.Contains(w[0], `"E"`) || !strings.Contains(w[0], "at record 4") {
				t.Fatalf("other messages, policy warn: fatal %v, warnings %q; want one warning naming messages 3..4 at record 4", f, w)
			}
		})
	}
}

// TestOutHistBounded: a following app that sends far more messages than
// outHist holds with no point fed keeps it within its bound, and a point
// fed late for a recent count is still compared.
func TestOutHistBounded(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 7})
	c.StartFollowing(&logfmt.Checkpoint{Number: 1, NextSeq: 1}, 2)
	_ = c.Ready()
	framed := logfmt.AppendOutgoingRPC(nil, "client", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte("x")})
	m, _, err := logfmt.ParseMessage(framed)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3*maxOutHist + 7
	for i := 0; i < n; i++ {
		if err := c.AppMessage(m, nil); err != nil {
			t.Fatal(err)
		}
		if len(c.outHist) > maxOutHist {
			t.Fatalf("after %d messages outHist holds %d, bound %d", i+1, len(c.outHist), maxOutHist)
		}
	}
	_ = c.Ready()
	want, ok := c.digestAt(n - 5)
	if !ok {
		t.Fatalf("the digest after %d of %d messages is not kept", n-5, n)
	}
	in := logfmt.AppendMessage(nil, logfmt.TypeRPC, []byte{1})
	rec := &logfmt.Record{Seq: 1, Sources: []logfmt.Source{{Peer: "client", FirstSeq: 1, Count: 1}}, Messages: in, OutCount: n - 5, OutDigest: want ^ 1}
	if err := c.ReplayWire(rec, logfmt.AppendWireRecord(nil, 7, 1, in)); err != nil {
		t.Fatal(err)
	}
	if rd := c.Ready(); rd.Fatal == nil {
		t.Fatal("a late point that differs from the kept digest was not reported")
	}
}
