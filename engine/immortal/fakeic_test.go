package immortal

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// This file is a minimal in-test coordinator: it speaks the app protocol to
// an app over two net.Pipes, keeps a log of the records it delivered, takes
// checkpoints, and can crash and recover the app from any checkpoint.

// safety bounds how long the harness waits for the app. It is a guard
// against a hung test, never an assertion about timing.
const safety = 5 * time.Second

type server interface {
	Serve(ctx context.Context, toIC io.Writer, fromIC io.Reader) error
}

// appMsg is one message the app sent, copied out of the reader's buffer.
type appMsg struct {
	Type  logfmt.MessageType
	Data  []byte
	State []byte // the state bytes after a Checkpoint message
}

// conn is one connection between the fake IC and an app running Serve.
type conn struct {
	t       *testing.T
	toApp   net.Conn // the IC writes records here
	msgs    chan appMsg
	readErr error // why the IC's reader stopped; read after msgs is closed
	served  chan error
	cancel  context.CancelFunc
	closed  bool
}

func connect(t *testing.T, app server) *conn {
	t.Helper()
	icRecv, appSend := net.Pipe() // app → IC
	appRecv, icSend := net.Pipe() // IC → app
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{t: t, toApp: icSend, msgs: make(chan appMsg, 4096), served: make(chan error, 1), cancel: cancel}
	go func() {
		err := app.Serve(ctx, appSend, appRecv)
		appRecv.Close()
		appSend.Close()
		c.served <- err
	}()
	go func() {
		defer close(c.msgs)
		defer icRecv.Close()
		mr := logfmt.NewMessageReader(icRecv)
		for {
			m, err := mr.Next()
			if err != nil {
				if err != io.EOF {
					c.readErr = err
				}
				return
			}
			am := appMsg{Type: m.Type, Data: bytes.Clone(m.Data)}
			if m.Type == logfmt.TypeCheckpoint {
				if am.State, err = io.ReadAll(mr.State()); err != nil {
					c.readErr = err
					return
				}
			}
			c.msgs <- am
		}
	}()
	t.Cleanup(func() { c.close() })
	return c
}

// write sends raw bytes to the app.
func (c *conn) write(b []byte) error {
	c.toApp.SetWriteDeadline(time.Now().Add(safety))
	_, err := c.toApp.Write(b)
	return err
}

// send sends a record to the app, with state bytes after it.
func (c *conn) send(seq int64, body, state []byte) {
	c.t.Helper()
	b := logfmt.AppendWireRecord(nil, 7, seq, body)
	if err := c.write(append(b, state...)); err != nil {
		c.t.Fatalf("send %s: %v", describeSeq(seq), err)
	}
}

// control sends a control record holding one message without data.
func (c *conn) control(t logfmt.MessageType) {
	c.t.Helper()
	c.send(logfmt.SeqControl, logfmt.AppendControl(nil, t), nil)
}

// next returns the next message from the app.
func (c *conn) next() appMsg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("the app's stream ended (reader: %v)", c.readErr)
		}
		return m
	case <-time.After(safety):
		c.t.Fatalf("no message from the app within %v", safety)
	}
	panic("unreachable")
}

// expect returns the next message from the app, which must be of type typ.
func (c *conn) expect(typ logfmt.MessageType) appMsg {
	c.t.Helper()
	m := c.next()
	if m.Type != typ {
		c.t.Fatalf("app sent %v, want %v", m.Type, typ)
	}
	return m
}

// until returns the messages the app sends before its next Checkpoint, and
// that checkpoint.
func (c *conn) until() ([]appMsg, appMsg) {
	c.t.Helper()
	var msgs []appMsg
	for {
		m := c.next()
		if m.Type == logfmt.TypeCheckpoint {
			return msgs, m
		}
		msgs = append(msgs, m)
	}
}

// close ends the connection the way a crashed coordinator does and returns
// what Serve returned.
func (c *conn) close() error {
	c.t.Helper()
	if c.closed {
		return nil
	}
	c.closed = true
	defer c.cancel()
	c.toApp.Close()
	var err error
	select {
	case err = <-c.served:
	case <-time.After(safety):
		c.t.Fatalf("Serve did not return within %v of the coordinator closing", safety)
	}
	for range c.msgs { // what was not taken is lost in the crash
	}
	return err
}

// serveErr waits for Serve to return on its own and returns its error.
func (c *conn) serveErr() error {
	c.t.Helper()
	select {
	case err := <-c.served:
		c.closed = true
		c.toApp.Close()
		c.cancel()
		for range c.msgs {
		}
		return err
	case <-time.After(safety):
		c.t.Fatalf("Serve did not return within %v", safety)
	}
	return nil
}

// outRPC is one RPC the app sent.
type outRPC struct {
	dest  string
	rpc   logfmt.RPC
	frame []byte // as the app sent it, outgoing form, unbatched
}

type fakeCheckpoint struct {
	nextSeq int64 // first record not reflected in the state
	state   []byte
}

// fakeIC is the coordinator: log, checkpoints, the app's output.
type fakeIC struct {
	t           *testing.T
	name        string
	c           *conn
	log         [][]byte           // log[i] is the body of record i+1
	outputs     map[int64][][]byte // deterministic RPCs each record produced
	checkpoints []fakeCheckpoint
	delivered   int64          // last record sent to the app
	attached    map[string]int // AttachTo per destination, this connection
	remote      []outRPC       // RPCs to other instances
	ckRequests  int            // TakeCheckpoint messages from the app
}

func newFakeIC(t *testing.T) *fakeIC {
	return &fakeIC{t: t, name: DefaultName, outputs: map[int64][][]byte{}}
}

// start runs the first-start conversation and delivers the echo of the
// InitialMessage as record 1.
func (ic *fakeIC) start(app server) {
	ic.t.Helper()
	ic.c, ic.attached = connect(ic.t, app), map[string]int{}
	ic.c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	init := ic.c.expect(logfmt.TypeInitialMessage)
	ck := ic.c.expect(logfmt.TypeCheckpoint)
	ic.checkpoints = append(ic.checkpoints, fakeCheckpoint{nextSeq: 1, state: ck.State})
	ic.logAndDeliver(logfmt.AppendInitialMessage(nil, init.Data))
}

func (ic *fakeIC) logAndDeliver(body []byte) {
	ic.t.Helper()
	ic.log = append(ic.log, body)
	ic.delivered = int64(len(ic.log))
	ic.c.send(ic.delivered, body, nil)
}

// checkpoint asks the app for a checkpoint and keeps it. It returns the
// messages the app sent before it: the output of the records delivered
// since the last checkpoint, and impulses.
func (ic *fakeIC) checkpoint() []appMsg {
	ic.t.Helper()
	ic.c.control(logfmt.TypeTakeCheckpoint)
	msgs, ck := ic.c.until()
	ic.checkpoints = append(ic.checkpoints, fakeCheckpoint{nextSeq: int64(len(ic.log)) + 1, state: ck.State})
	return msgs
}

// lastCheckpoint returns the state bytes of the newest checkpoint.
func (ic *fakeIC) lastCheckpoint() []byte { return ic.checkpoints[len(ic.checkpoints)-1].state }

// step takes a checkpoint, which collects the output of the record last
// delivered, logs the new input in it (self-calls, impulses) as the next
// record and delivers it. It reports whether there was new input.
func (ic *fakeIC) step() bool {
	ic.t.Helper()
	det, imp := ic.parseOutput(ic.checkpoint())
	ic.outputs[ic.delivered] = append(ic.outputs[ic.delivered], frames(det)...)
	return ic.logNew(det, imp)
}

// settle steps until the app produces no more input for itself.
func (ic *fakeIC) settle() {
	ic.t.Helper()
	for i := 0; ic.step(); i++ {
		if i > 100 {
			ic.t.Fatal("the app keeps sending itself messages")
		}
	}
}

// logNew logs self-calls and impulses as one new record and delivers it;
// RPCs to other instances go to remote.
func (ic *fakeIC) logNew(det, imp []outRPC) bool {
	ic.t.Helper()
	var body []byte
	for _, o := range det {
		if o.dest == "" {
			body = logfmt.AppendRPC(body, o.rpc)
		} else {
			ic.remote = append(ic.remote, o)
		}
	}
	for _, o := range imp {
		body = logfmt.AppendRPC(body, o.rpc)
	}
	if body == nil {
		return false
	}
	ic.logAndDeliver(body)
	return true
}

// deliver logs and delivers a record from another instance.
func (ic *fakeIC) deliver(rpcs ...logfmt.RPC) {
	ic.t.Helper()
	var body []byte
	for _, r := range rpcs {
		body = logfmt.AppendRPC(body, r)
	}
	ic.logAndDeliver(body)
}

// parseOutput splits the app's messages into deterministic RPCs and
// impulses, unbatching, and checks AttachTo.
func (ic *fakeIC) parseOutput(msgs []appMsg) (det, imp []outRPC) {
	ic.t.Helper()
	add := func(data []byte) {
		o, err := logfmt.ParseOutgoingRPC(data)
		if err != nil {
			ic.t.Fatalf("app sent a bad RPC: %v", err)
		}
		r := outRPC{dest: string(o.Dest), rpc: o.RPC, frame: logfmt.AppendMessage(nil, logfmt.TypeRPC, data)}
		r.rpc.Args = bytes.Clone(r.rpc.Args)
		if r.dest != "" && ic.attached[r.dest] == 0 {
			ic.t.Errorf("app sent an RPC to %q without AttachTo first", r.dest)
		}
		if o.Kind == logfmt.RPCImpulse {
			if r.dest != "" {
				ic.t.Errorf("app sent an impulse to %q; impulses go to self", r.dest)
			}
			imp = append(imp, r)
		} else {
			det = append(det, r)
		}
	}
	for _, m := range msgs {
		switch m.Type {
		case logfmt.TypeRPC:
			add(m.Data)
		case logfmt.TypeRPCBatch:
			b, err := logfmt.ParseBatch(logfmt.Message{Type: m.Type, Data: m.Data})
			if err != nil {
				ic.t.Fatalf("app sent a bad batch: %v", err)
			}
			it := b.Iter()
			for sub, ok := it.Next(); ok; sub, ok = it.Next() {
				add(sub.Data)
			}
		case logfmt.TypeAttachTo:
			ic.attached[string(m.Data)]++
		case logfmt.TypeTakeCheckpoint:
			ic.ckRequests++
		default:
			ic.t.Errorf("app sent an unexpected %v", m.Type)
		}
	}
	return det, imp
}

func frames(rs []outRPC) [][]byte {
	var f [][]byte
	for _, r := range rs {
		f = append(f, r.frame)
	}
	return f
}

// crash drops the connection as a crashed coordinator would; the app's
// output not yet collected is lost.
func (ic *fakeIC) crash() {
	ic.t.Helper()
	if err := ic.c.close(); err != nil {
		ic.t.Fatalf("Serve returned %v when the coordinator went away, want nil", err)
	}
}

// recoverFrom runs a recovery of app from checkpoint k: the checkpoint, the
// records logged since, TakeBecomingPrimaryCheckpoint. The output replay
// regenerates must equal what the records produced the first time; output
// of records whose first output was lost in a crash is new and logged.
func (ic *fakeIC) recoverFrom(app server, k int) {
	ic.t.Helper()
	ck := ic.checkpoints[k]
	ic.c, ic.attached = connect(ic.t, app), map[string]int{}
	ic.c.send(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(ck.state))), ck.state)
	var want [][]byte
	for seq := ck.nextSeq; seq <= int64(len(ic.log)); seq++ {
		ic.c.send(seq, ic.log[seq-1], nil)
		want = append(want, ic.outputs[seq]...)
	}
	ic.delivered = int64(len(ic.log))
	requests := ic.ckRequests
	ic.c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	msgs, ckm := ic.c.until()
	ic.checkpoints = append(ic.checkpoints, fakeCheckpoint{nextSeq: int64(len(ic.log)) + 1, state: ckm.State})
	det, imp := ic.parseOutput(msgs)
	if len(imp) > 0 {
		ic.t.Errorf("app sent %d impulses while replaying", len(imp))
	}
	if ic.ckRequests != requests {
		ic.t.Errorf("app asked for %d checkpoints while replaying", ic.ckRequests-requests)
	}
	if len(det) < len(want) {
		ic.t.Fatalf("replay regenerated %d RPCs, the first run produced %d", len(det), len(want))
	}
	for i, w := range want {
		if !bytes.Equal(det[i].frame, w) {
			ic.t.Errorf("replay regenerated RPC %d as\n%x\nthe first run sent\n%x", i, det[i].frame, w)
		}
	}
	fresh := det[len(want):]
	ic.outputs[ic.delivered] = append(ic.outputs[ic.delivered], frames(fresh)...)
	ic.logNew(fresh, nil)
}
