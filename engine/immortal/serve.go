package immortal

import (
	"context"
	"errors"
	"fmt"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"io"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// Serve runs the app protocol over two streams: toIC carries the app's
// messages to its coordinator, fromIC the coordinator's records to the app.
// It processes records until fromIC ends (it then returns nil), ctx is
// canceled (nil too), or something goes wrong: a protocol violation, bytes
// that are not the protocol, a panicking handler, a failed write.
//
// To return promptly when ctx is canceled, Serve sets a deadline on the
// streams if they have one (net.Conn) and otherwise closes them if they are
// io.Closers. It does not close them otherwise; the caller owns them. One
// Serve may run at a time; registration is closed from the first Serve on.
func (a *App[S]) Serve(ctx context.Context, toIC io.Writer, fromIC io.Reader) error {
	if a.initErr != nil {
		return a.initErr
	}
	w := &wire{w: toIC}
	name, err := a.attach(w)
	if err != nil {
		return err
	}
	defer a.detach()
	if ctx.Err() != nil {
		return nil
	}
	unblocked := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(unblocked)
		unblock(fromIC, toIC)
	})
	defer func() {
		if !stop() {
			<-unblocked
		}
	}()

	if a.durable != nil {
		tctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); a.timerLoop(tctx) }()
		defer func() { cancel(); <-done }()
		defer a.stopOrchestrations()
	}
	var s processor = newSession(a, name)
	rr := logfmt.NewRecordReader(fromIC)
	for {
		h, body, err := rr.Next()
		hoptrace.Mark(hoptrace.AppRead)
		if err != nil {
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("immortal: read from coordinator: %w", err)
		}
		out, err := s.record(h, body, rr.State())
		if sw, ok := err.(*switchCode); ok {
			// The next version takes over from here on.
			s, out, err = sw.next, sw.out, nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if out.Len() > 0 {
			if err := w.write(out); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("immortal: write to coordinator: %w", err)
			}
		}
		// Only now, with the checkpoint that made it primary sent, may
		// impulses follow.
		s.afterRecord()
	}
}

// attach starts a Serve: it closes registration and installs w for
// impulses. It returns the instance name the session uses.
func (a *App[S]) attach(w *wire) (string, error) {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	if a.wire != nil {
		return "", errors.New("immortal: Serve is already running")
	}
	a.frozen, a.wire, a.primary, a.replaying = true, w, false, false
	return a.name, nil
}

// detach ends a Serve.
func (a *App[S]) detach() {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.wire, a.primary, a.replaying = nil, false, false
}

// setPhase publishes the session's phase to Impulse.
func (a *App[S]) setPhase(p phase) {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.primary, a.replaying = p == phaseLive, p == phaseRecovering
}

// Impulse sends an impulse of method with args to this instance: input from
// outside the deterministic world (a user, a timer, another system), logged
// by the coordinator and then handled like any message. It may be called
// from any goroutine, a handler too. Its Ctx.Now is the wall clock now.
//
// The app may send impulses only while it is primary: before the
// coordinator made it primary, while it replays its log and after Serve
// returned, Impulse returns an error that wraps ErrNotPrimary; the source of
// the impulse should retry later. An impulse that was sent but not yet
// logged when the coordinator fails is lost, so sources must be able to
// retry anyway.
func (a *App[S]) Impulse(method string, args any) error {
	a.lmu.Lock()
	w, primary, replaying := a.wire, a.primary, a.replaying
	_, known := a.handlers[method]
	a.lmu.Unlock()
	switch {
	case replaying:
		return fmt.Errorf("%w: replaying the log", ErrNotPrimary)
	case w == nil:
		return fmt.Errorf("%w: not connected to a coordinator", ErrNotPrimary)
	case !primary:
		return fmt.Errorf("%w: the coordinator has not made the app primary yet", ErrNotPrimary)
	case !known:
		return fmt.Errorf("immortal: impulse %s: no handler for it", method)
	}
	payload, err := a.codec.Marshal(args)
	if err != nil {
		return fmt.Errorf("immortal: impulse %s: encode arguments: %w", method, err)
	}
	env := Envelope{Method: method, Time: a.clock().UnixNano(), Payload: payload}
	var msg wireOut
	if len(payload) >= refPayload {
		// Written before Impulse returns: the payload by reference.
		env.Payload = nil
		msg.b = logfmt.AppendOutgoingRPCHead(nil, "", logfmt.RPC{
			Reserved: ReservedRequest, MethodID: MethodID(method), Kind: logfmt.RPCImpulse, Args: env.Append(nil),
		}, len(payload))
		msg.refs = []outRef{{at: len(msg.b), b: payload}}
	} else {
		msg.b = logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{
			Reserved: ReservedRequest, MethodID: MethodID(method), Kind: logfmt.RPCImpulse, Args: env.Append(nil),
		})
	}
	if err := w.write(msg); err != nil {
		return fmt.Errorf("immortal: impulse %s: %w", method, err)
	}
	return nil
}

// wire is the app → coordinator stream, shared by Serve and Impulse. Each
// write is whole messages, so the two never interleave inside one.
type wire struct {
	mu  sync.Mutex
	w   io.Writer
	err error // sticky
}

func (w *wire) write(b wireOut) error {
	hoptrace.Mark(hoptrace.AppWrite)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if err := b.writeTo(w.w); err != nil {
		w.err = err
	}
	return w.err
}

// unblock makes blocked reads of r and writes of w return: through a
// deadline if they have one, else by closing them.
func unblock(r io.Reader, w io.Writer) {
	now := time.Now()
	if d, ok := r.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(now)
	} else if c, ok := r.(io.Closer); ok {
		c.Close()
	}
	if d, ok := w.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(now)
	} else if c, ok := w.(io.Closer); ok {
		c.Close()
	}
}
