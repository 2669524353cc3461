package timetravel

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/logfmt"
)

// Sent is one message the app sent while handling replayed input: what a
// live coordinator would have logged or sent on, collected instead.
type Sent struct {
	// Dest is the destination instance; empty for a call to itself.
	Dest string
	// RPC is the message in delivery form (its args are the binding's).
	RPC logfmt.RPC
}

// Described is a sent message as the tools show it.
type Described struct {
	// Dest is the destination instance, "self" for a call to itself.
	Dest string
	// Kind is "fork", "call" or "impulse".
	Kind string
	// Method is the Go binding's method name, or "method <id>" for an
	// RPC of another binding.
	Method string
	// Result says the message is the result of a call.
	Result bool
	// Payload is the codec bytes when the Go binding's envelope was
	// recognised, the RPC's arguments otherwise.
	Payload []byte
}

// Describe decodes s for display.
func (s Sent) Describe() Described {
	d := Described{Dest: s.Dest, Kind: strings.ToLower(s.RPC.Kind.String()), Payload: s.RPC.Args}
	if d.Dest == "" {
		d.Dest = "self"
	}
	if m, res, p, ok := immortal.DecodeArgs(s.RPC.Args, s.RPC.Reserved); ok {
		d.Method, d.Result, d.Payload = m, res, p
	} else {
		d.Method = fmt.Sprintf("method %d", s.RPC.MethodID)
	}
	return d
}

// PayloadText returns b as text if it is JSON or printable ASCII; ok is
// false for bytes that want showing in hex.
func PayloadText(b []byte) (text string, ok bool) {
	if json.Valid(b) {
		return string(b), true
	}
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return "", false
		}
	}
	return string(b), true
}

// Driver is an app process driven by a substitute coordinator: the "repro"
// conversation of app-protocol.md — a checkpoint, then logged records, and,
// to read the state, TakeCheckpoint. It never becomes primary. Sessions use
// one; retro-tests drive two side by side.
type Driver = appRun

// StartDriver starts exe as the app of instance name (launch nil: a child
// process) and waits for it to connect.
func StartDriver(ctx context.Context, launch LaunchFunc, exe, name string, env []string, stdout, stderr io.Writer) (*Driver, error) {
	return startApp(ctx, launch, exe, name, env, stdout, stderr)
}

// LoadState sends the state to resume from.
func (r *appRun) LoadState(state []byte) error { return r.loadState(state) }

// Feed sends one logged record. It may wait in a buffer until the next
// Checkpoint, Control or Flush.
func (r *appRun) Feed(rec *logfmt.Record) error { return r.feed(rec) }

// Flush sends the records Feed buffered.
func (r *appRun) Flush() error { return r.flush() }

// Checkpoint asks for the state and returns it with the messages the app
// sent since the previous call.
func (r *appRun) Checkpoint(ctx context.Context) ([]byte, []Sent, error) { return r.checkpoint(ctx) }

// Control sends a data-less control message (UpgradeService, say).
func (r *appRun) Control(t logfmt.MessageType) error {
	return r.write(logfmt.AppendWireRecord(nil, r.committer, logfmt.SeqControl, logfmt.AppendControl(nil, t)))
}

// Close stops the app.
func (r *appRun) Close() { r.close() }

// WaitExit waits up to d for the app to exit on its own (and its output to
// be copied), reporting whether it did.
func (r *appRun) WaitExit(d time.Duration) bool {
	select {
	case err := <-r.exited:
		r.exited <- err
		return true
	case <-time.After(d):
		return false
	}
}

// appRun is the Driver's implementation.
// Process is a running app started by a Launch function.
type Process interface {
	Wait() error
	Kill() error
}

// LaunchFunc starts exe with env added to the environment. The default runs
// it as a plain child process; a debugger can run it instead.
type LaunchFunc func(ctx context.Context, exe string, env []string, stdout, stderr io.Writer) (Process, error)

type execProcess struct{ cmd *exec.Cmd }

func (p execProcess) Wait() error { return p.cmd.Wait() }
func (p execProcess) Kill() error { return p.cmd.Process.Kill() }

// ExecLaunch runs the app as a child process.
func ExecLaunch(ctx context.Context, exe string, env []string, stdout, stderr io.Writer) (Process, error) {
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return execProcess{cmd}, nil
}

type appRun struct {
	proc      Process
	listener  *engine.TCPListener
	conn      engine.AppConn
	committer int32
	in        inbox
	exited    chan error
	buf       []byte
	// out buffers what is sent to the app: records are fed back to back
	// and flushed when the app is asked for something (one write for many
	// records rather than one each).
	out *bufio.Writer
}

// inbox holds what the app sent until checkpoint collects it. It is
// unbounded on purpose: a caller may feed many records before it asks for
// the state (a retro-test's window), and a reader that stopped reading
// while the app blocks on sending would deadlock against a feed blocked
// on the app's full input. What it holds is bounded by what the app sends
// between two checkpoints.
type inbox struct {
	mu     sync.Mutex
	msgs   []appMsg
	notify chan struct{} // one token: something was added
}

func (b *inbox) put(m appMsg) {
	b.mu.Lock()
	b.msgs = append(b.msgs, m)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

// take returns the oldest message, if any.
func (b *inbox) take() (appMsg, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.msgs) == 0 {
		return appMsg{}, false
	}
	m := b.msgs[0]
	b.msgs[0] = appMsg{}
	b.msgs = b.msgs[1:]
	return m, true
}

type appMsg struct {
	m     logfmt.Message
	state []byte
	err   error
}

// startApp starts exe as the app of instance name and waits for it to
// connect.
func startApp(ctx context.Context, launch LaunchFunc, exe, name string, env []string, stdout, stderr io.Writer) (*appRun, error) {
	if _, err := os.Stat(exe); err != nil {
		return nil, fmt.Errorf("timetravel: app %s: %w", exe, err)
	}
	l, err := engine.ListenTCP(0, 0)
	if err != nil {
		return nil, fmt.Errorf("timetravel: %w", err)
	}
	r := &appRun{listener: l, committer: 1, in: inbox{notify: make(chan struct{}, 1)}, exited: make(chan error, 1)}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	if launch == nil {
		launch = ExecLaunch
	}
	proc, err := launch(ctx, exe, append(append([]string(nil), env...), append(l.Env(), engine.EnvInstance+"="+name)...), stdout, stderr)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("timetravel: start app %s: %w", exe, err)
	}
	r.proc = proc
	go func() { r.exited <- proc.Wait() }()
	actx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	type accepted struct {
		c   engine.AppConn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := l.Accept(actx)
		ac <- accepted{c, err}
	}()
	select {
	case a := <-ac:
		if a.err != nil {
			r.close()
			return nil, fmt.Errorf("timetravel: app %s did not connect: %w", exe, a.err)
		}
		r.conn = a.c
		r.out = bufio.NewWriterSize(a.c.Send, 256<<10)
	case err := <-r.exited:
		r.exited <- err
		r.close()
		return nil, fmt.Errorf("timetravel: app %s exited before it connected (%v); is it an app that speaks the AMBROSIA protocol?", exe, err)
	}
	go r.read()
	return r, nil
}

func (r *appRun) read() {
	mr := logfmt.NewMessageReader(r.conn.Recv)
	for {
		m, err := mr.Next()
		if err != nil {
			r.in.put(appMsg{err: err})
			return
		}
		am := appMsg{m: logfmt.Message{Type: m.Type, Data: append([]byte(nil), m.Data...)}}
		if m.Type == logfmt.TypeCheckpoint {
			if am.state, err = io.ReadAll(mr.State()); err != nil {
				r.in.put(appMsg{err: err})
				return
			}
		}
		r.in.put(am)
	}
}

// write sends b to the app now, after anything fed before it.
func (r *appRun) write(b []byte) error {
	if _, err := r.out.Write(b); err != nil {
		return fmt.Errorf("timetravel: send to the app: %w", err)
	}
	return r.flush()
}

// flush sends what feed buffered.
func (r *appRun) flush() error {
	if err := r.out.Flush(); err != nil {
		return fmt.Errorf("timetravel: send to the app: %w", err)
	}
	return nil
}

// loadState sends the state to resume from (a checkpoint record).
func (r *appRun) loadState(state []byte) error {
	hdr := logfmt.AppendCheckpointMessage(nil, int64(len(state)))
	b := logfmt.AppendWireRecord(nil, r.committer, logfmt.SeqCheckpointRecord, hdr)
	return r.write(append(b, state...))
}

// feed sends one logged record.
func (r *appRun) feed(rec *logfmt.Record) error {
	r.buf = logfmt.AppendWireRecord(r.buf[:0], r.committer, rec.Seq, rec.Messages)
	if _, err := r.out.Write(r.buf); err != nil {
		return fmt.Errorf("timetravel: send to the app: %w", err)
	}
	return nil
}

// checkpoint asks the app for its state and returns it with every message
// the app sent since the previous call.
func (r *appRun) checkpoint(ctx context.Context) ([]byte, []Sent, error) {
	if err := r.write(logfmt.AppendWireRecord(nil, r.committer, logfmt.SeqControl, logfmt.AppendControl(nil, logfmt.TypeTakeCheckpoint))); err != nil {
		return nil, nil, err
	}
	var sent []Sent
	collect := func(data []byte) error {
		o, err := logfmt.ParseOutgoingRPC(data)
		if err != nil {
			return err
		}
		rpc := o.RPC
		rpc.Args = append([]byte(nil), rpc.Args...)
		sent = append(sent, Sent{Dest: string(o.Dest), RPC: rpc})
		return nil
	}
	for {
		am, ok := r.in.take()
		if !ok {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case err := <-r.exited:
				r.exited <- err
				if am, ok = r.in.take(); !ok { // what it sent before it went
					return nil, nil, fmt.Errorf("timetravel: the app exited while replaying (%v); its output may say why", err)
				}
			case <-r.in.notify:
				continue
			}
		}
		if am.err != nil {
			r.in.put(am) // the connection stays ended for later calls
			return nil, nil, fmt.Errorf("timetravel: the app's connection ended: %v", am.err)
		}
		switch am.m.Type {
		case logfmt.TypeCheckpoint:
			return am.state, sent, nil
		case logfmt.TypeRPC:
			if err := collect(am.m.Data); err != nil {
				return nil, nil, fmt.Errorf("timetravel: the app sent a bad RPC: %w", err)
			}
		case logfmt.TypeRPCBatch, logfmt.TypeCountReplayableRPCBatch:
			b, err := logfmt.ParseBatch(am.m)
			if err != nil {
				return nil, nil, fmt.Errorf("timetravel: the app sent a bad batch: %w", err)
			}
			it := b.Iter()
			for m, ok := it.Next(); ok; m, ok = it.Next() {
				if err := collect(m.Data); err != nil {
					return nil, nil, fmt.Errorf("timetravel: the app sent a bad RPC: %w", err)
				}
			}
		}
	}
}

func (r *appRun) close() {
	if r.conn.Recv != nil {
		r.conn.Close()
	}
	if r.proc != nil {
		_ = r.proc.Kill()
		select {
		case <-r.exited:
		case <-time.After(5 * time.Second):
		}
	}
	r.listener.Close()
}
