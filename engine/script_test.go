package engine

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/ambr-dev/ambr/logfmt"
)

// Text-script tests of the coordinator core: testdata/core/*.txt are
// scenarios of commands whose expected output is a readable trace of what
// the Cores want done. Regenerate with `go test ./engine -run TestCoreScripts
// -rewrite` and read the diff.
//
// The world is several Cores, each with a scripted app (it counts the RPCs it
// handles and answers checkpoint requests with that count), a disk (records
// written and records synced) and links between them that hold messages in
// flight until a command delivers them.
//
//	new NAME                      a fresh instance, first start
//	send NAME DEST METHOD [impulse]  the app sends an RPC ("self" for itself)
//	sync NAME                     the written log records become durable
//	ckpt-sync NAME                the written checkpoint becomes durable
//	checkpoint NAME               ask for a checkpoint
//	connect FROM TO               FROM's link to TO is (again) up; TO says what it expects
//	deliver FROM TO [n=N]         deliver the messages in flight FROM → TO
//	ack TO FROM                   deliver TO's acks to FROM
//	disconnect FROM TO            the link drops; messages in flight are lost
//	crash NAME [hold]             lose everything not durable; recover (hold: nothing
//	                              is handed to the app until resume, so the script can
//	                              make the app send what a replay regenerates first)
//	resume NAME                   end a hold
//	state NAME                    the app's count and the output bookkeeping
func TestCoreScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/core", func(t *testing.T, path string) {
		w := &world{nodes: map[string]*node{}, inFlight: map[[2]string][]PeerSend{}, acks: map[[2]string][]int64{}}
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			w.out.Reset()
			args := make([]string, 0, len(td.CmdArgs))
			for _, a := range td.CmdArgs {
				if len(a.Vals) == 0 {
					args = append(args, a.Key)
				}
			}
			need := func(n int) {
				if len(args) < n {
					td.Fatalf(t, "%s needs %d arguments", td.Cmd, n)
				}
			}
			switch td.Cmd {
			case "new":
				need(1)
				w.newNode(args[0])
			case "send":
				need(3)
				w.send(args[0], args[1], args[2], len(args) > 3 && args[3] == "impulse")
			case "sync":
				need(1)
				w.sync(args[0])
			case "ckpt-sync":
				need(1)
				w.ckptSync(args[0])
			case "checkpoint":
				need(1)
				n := w.node(t, args[0])
				n.core.RequestCheckpoint()
				w.process(n)
			case "connect":
				need(2)
				from, to := w.node(t, args[0]), w.node(t, args[1])
				expect := to.core.ExpectFrom(from.name)
				// Messages an old connection still has in flight stay there:
				// they may arrive after the resend.
				w.printf("%s→%s up: %s expects #%d\n", from.name, to.name, to.name, expect)
				from.core.PeerConnected(to.name, expect)
				w.process(from)
			case "deliver":
				need(2)
				n := -1
				if td.HasArg("n") {
					td.ScanArgs(t, "n", &n)
				}
				w.deliver(w.node(t, args[0]), w.node(t, args[1]), n)
			case "ack":
				need(2)
				to, from := w.node(t, args[0]), w.node(t, args[1])
				key := [2]string{to.name, from.name}
				for _, s := range w.acks[key] {
					w.printf("%s→%s ack #%d\n", to.name, from.name, s)
					from.core.PeerAcked(to.name, s)
				}
				w.acks[key] = nil
				w.process(from)
			case "disconnect":
				need(2)
				from, to := w.node(t, args[0]), w.node(t, args[1])
				key := [2]string{from.name, to.name}
				if n := len(w.inFlight[key]); n > 0 {
					w.printf("%s→%s down: %d messages in flight lost\n", from.name, to.name, n)
				} else {
					w.printf("%s→%s down\n", from.name, to.name)
				}
				w.inFlight[key] = nil
				from.core.PeerDisconnected(to.name)
				w.process(from)
			case "crash":
				need(1)
				w.crash(w.node(t, args[0]), len(args) > 1 && args[1] == "hold")
			case "resume":
				need(1)
				n := w.node(t, args[0])
				n.held = false
				w.process(n)
			case "state":
				need(1)
				w.state(w.node(t, args[0]))
			default:
				td.Fatalf(t, "unknown command %q", td.Cmd)
			}
			return w.out.String()
		})
	})
}

type world struct {
	nodes    map[string]*node
	inFlight map[[2]string][]PeerSend // from, to
	acks     map[[2]string][]int64    // to (receiver), from (sender)
	out      strings.Builder
}

type node struct {
	name     string
	core     *Core
	written  []*logfmt.Record // written, not synced
	durable  []*logfmt.Record
	ckptW    *logfmt.Checkpoint // written, not durable
	ckpts    []*logfmt.Checkpoint
	count    int // RPCs the app handled: its state
	hasState bool
	held     bool
	clock    time.Time
}

func (w *world) printf(format string, a ...any) { fmt.Fprintf(&w.out, format, a...) }

func (w *world) node(t *testing.T, name string) *node {
	n := w.nodes[name]
	if n == nil {
		t.Fatalf("no instance %q", name)
	}
	return n
}

func (n *node) coreConfig() CoreConfig {
	return CoreConfig{Name: n.name, CommitterID: 1, Now: func() time.Time { n.clock = n.clock.Add(time.Second); return n.clock }}
}

func (w *world) newNode(name string) {
	n := &node{name: name, clock: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}
	w.nodes[name] = n
	n.core = NewCore(n.coreConfig())
	n.core.StartFresh()
	w.process(n)
}

// rpcData builds the data of an outgoing RPC whose arguments are the method
// name (the script's way of telling messages apart).
func rpcData(dest, method string, impulse bool) []byte {
	kind := logfmt.RPCFork
	if impulse {
		kind = logfmt.RPCImpulse
	}
	framed := logfmt.AppendOutgoingRPC(nil, dest, logfmt.RPC{MethodID: 1, Kind: kind, Args: []byte(method)})
	m, _, _ := logfmt.ParseMessage(framed)
	return m.Data
}

func (w *world) send(name, dest, method string, impulse bool) {
	n := w.nodes[name]
	if dest == "self" {
		dest = ""
	}
	w.appMessage(n, logfmt.Message{Type: logfmt.TypeRPC, Data: rpcData(dest, method, impulse)}, nil)
	if !n.held {
		w.process(n)
	}
}

func (w *world) appMessage(n *node, m logfmt.Message, state []byte) {
	if err := n.core.AppMessage(m, state); err != nil {
		w.printf("%s: app protocol error: %v\n", n.name, err)
	}
}

func (w *world) sync(name string) {
	n := w.nodes[name]
	if len(n.written) == 0 {
		w.printf("%s: nothing to sync\n", name)
		return
	}
	last := n.written[len(n.written)-1].Seq
	n.durable = append(n.durable, n.written...)
	n.written = nil
	w.printf("%s: log durable through #%d\n", name, last)
	n.core.LogDurable(last)
	w.process(n)
}

func (w *world) ckptSync(name string) {
	n := w.nodes[name]
	if n.ckptW == nil {
		w.printf("%s: no checkpoint written\n", name)
		return
	}
	ck := n.ckptW
	n.ckpts = append(n.ckpts, ck)
	n.ckptW = nil
	w.printf("%s: checkpoint %d durable\n", name, ck.Number)
	n.core.CheckpointDurable(ck.Number)
	w.process(n)
}

func describeMsgs(b []byte) string {
	var parts []string
	it := logfmt.NewMessageIter(b)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		switch m.Type {
		case logfmt.TypeRPC:
			r, _ := logfmt.ParseRPC(m.Data)
			kind := strings.ToLower(r.Kind.String())
			parts = append(parts, kind+" "+string(r.Args))
		default:
			parts = append(parts, m.Type.String())
		}
	}
	return strings.Join(parts, ", ")
}

func describeSources(r *logfmt.Record) string {
	var parts []string
	for _, s := range r.Sources {
		if s.FirstSeq == 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", s.Peer, s.Count))
		} else if s.Count == 1 {
			parts = append(parts, fmt.Sprintf("%s:%d", s.Peer, s.FirstSeq))
		} else {
			parts = append(parts, fmt.Sprintf("%s:%d-%d", s.Peer, s.FirstSeq, s.LastSeq()))
		}
	}
	return strings.Join(parts, " ")
}

// process takes everything n's Core wants done, prints it, and lets the
// scripted app react to what it receives, until the Core is quiet.
func (w *world) process(n *node) {
	for round := 0; round < 20; round++ {
		rd := n.core.Ready()
		if rd.IsEmpty() {
			return
		}
		for _, lw := range rd.Log {
			n.written = append(n.written, lw.Record)
			w.printf("%s: log #%d (segment %d) from %s: %s\n", n.name, lw.Record.Seq, lw.Segment, describeSources(lw.Record), describeMsgs(lw.Record.Messages))
		}
		if ck := rd.Checkpoint; ck != nil {
			n.ckptW = ck
			w.printf("%s: write checkpoint %d (state %q, before #%d)\n", n.name, ck.Number, ck.State, ck.NextSeq)
		}
		for _, p := range rd.NeedPeers {
			w.printf("%s: dial %s\n", n.name, p)
		}
		for _, s := range rd.PeerSends {
			key := [2]string{n.name, s.Peer}
			w.inFlight[key] = append(w.inFlight[key], s)
			w.printf("%s→%s send #%d: %s\n", n.name, s.Peer, s.Seq, describeMsgs(s.Msg))
		}
		for _, a := range rd.PeerAcks {
			key := [2]string{n.name, a.Peer}
			w.acks[key] = append(w.acks[key], a.Seq)
			w.printf("%s→%s queue ack #%d\n", n.name, a.Peer, a.Seq)
		}
		for _, msg := range rd.Warnings {
			w.printf("%s: warning: %s\n", n.name, msg)
		}
		if rd.Fatal != nil {
			w.printf("%s: FATAL: %v\n", n.name, rd.Fatal)
		}
		for _, b := range rd.ToApp {
			w.toApp(n, b)
		}
	}
	w.printf("%s: still busy after 20 rounds\n", n.name)
}

// toApp hands one wire record to the scripted app.
func (w *world) toApp(n *node, b []byte) {
	h, _ := logfmt.ParseWireHeader(b)
	body := b[logfmt.WireHeaderSize:h.Size]
	switch h.Seq {
	case logfmt.SeqCheckpointRecord:
		n.count, _ = strconv.Atoi(string(b[h.Size:]))
		n.hasState = true
		w.printf("%s app ← checkpoint state %q\n", n.name, b[h.Size:])
		return
	case logfmt.SeqControl:
		m, _, _ := logfmt.ParseMessage(body)
		w.printf("%s app ← %s\n", n.name, m.Type)
		switch m.Type {
		case logfmt.TypeTakeBecomingPrimaryCheckpoint:
			if !n.hasState {
				w.appMessage(n, logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil)
				n.hasState = true
			}
			w.appMessage(n, logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte(strconv.Itoa(n.count)))
		case logfmt.TypeTakeCheckpoint:
			w.appMessage(n, logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte(strconv.Itoa(n.count)))
		}
		return
	}
	it := logfmt.NewMessageIter(body)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if m.Type == logfmt.TypeRPC {
			n.count++
		}
	}
	w.printf("%s app ← #%d: %s\n", n.name, h.Seq, describeMsgs(body))
}

func (w *world) deliver(from, to *node, limit int) {
	key := [2]string{from.name, to.name}
	msgs := w.inFlight[key]
	if limit < 0 || limit > len(msgs) {
		limit = len(msgs)
	}
	if limit == 0 {
		w.printf("%s→%s: nothing in flight\n", from.name, to.name)
		return
	}
	for _, s := range msgs[:limit] {
		before := to.core.inWM[from.name]
		if err := to.core.PeerMessage(from.name, s.Seq, s.Msg); err != nil {
			w.printf("%s→%s #%d rejected: %v\n", from.name, to.name, s.Seq, err)
			continue
		}
		if to.core.inWM[from.name] == before {
			w.printf("%s→%s #%d: a duplicate, dropped\n", from.name, to.name, s.Seq)
		} else {
			w.printf("%s→%s #%d delivered\n", from.name, to.name, s.Seq)
		}
	}
	w.inFlight[key] = msgs[limit:]
	w.process(to)
}

func (w *world) crash(n *node, hold bool) {
	w.printf("%s: crash (lost %d unsynced records", n.name, len(n.written))
	if n.ckptW != nil {
		w.printf(" and unsynced checkpoint %d", n.ckptW.Number)
	}
	w.printf(")\n")
	n.written, n.ckptW = nil, nil
	for key := range w.inFlight {
		if key[0] == n.name || key[1] == n.name {
			w.inFlight[key] = nil
		}
	}
	for key := range w.acks {
		if key[0] == n.name || key[1] == n.name {
			w.acks[key] = nil
		}
	}
	n.core = NewCore(n.coreConfig())
	n.count, n.hasState = 0, false
	if len(n.ckpts) == 0 {
		w.printf("%s: no checkpoint: first start again\n", n.name)
		n.durable = nil
		n.core.StartFresh()
		w.process(n)
		return
	}
	ck := n.ckpts[len(n.ckpts)-1]
	var replay []*logfmt.Record
	for _, r := range n.durable {
		if r.Seq >= ck.NextSeq {
			replay = append(replay, r)
		}
	}
	maxSeg := ck.Number
	w.printf("%s: recover from checkpoint %d, replay %d records\n", n.name, ck.Number, len(replay))
	n.core.StartRecovery(ck, maxSeg+1+uint64(len(n.ckpts)))
	for _, r := range replay {
		if err := n.core.ReplayRecord(r); err != nil {
			w.printf("%s: replay: %v\n", n.name, err)
		}
	}
	n.core.FinishRecovery()
	n.held = hold
	if !hold {
		w.process(n)
	}
}

func (w *world) state(n *node) {
	w.printf("%s: app count %d, phase %s, next record #%d\n", n.name, n.count, n.core.phase, n.core.nextSeq)
	peers := make([]string, 0, len(n.core.outs))
	for p := range n.core.outs {
		peers = append(peers, p)
	}
	sort.Strings(peers)
	for _, p := range peers {
		s := n.core.outs[p]
		w.printf("%s: out %s: last #%d, acked #%d, %d unacked\n", n.name, p, s.lastSeq, s.ackedSeq, s.unacked.len())
	}
	in := make([]string, 0, len(n.core.inWM))
	for p := range n.core.inWM {
		in = append(in, p)
	}
	sort.Strings(in)
	for _, p := range in {
		w.printf("%s: in %s: watermark #%d\n", n.name, p, n.core.inWM[p])
	}
}
