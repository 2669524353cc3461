package immortal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// phase is where a session is in its conversation with the coordinator.
type phase int

const (
	// phaseWaiting: no state yet; the coordinator either asks for the first
	// checkpoint (first start) or sends one to recover from.
	phaseWaiting phase = iota
	// phaseRecovering: the state came from a checkpoint and the logged
	// records are being replayed.
	phaseRecovering
	// phaseLive: the app is primary.
	phaseLive
)

func (p phase) String() string {
	return [...]string{"waiting for a checkpoint", "recovering", "primary"}[p]
}

// session is the protocol state machine of one Serve: it takes the records
// the coordinator sends and returns the bytes to send back. It does no I/O
// of its own beyond reading a checkpoint's state bytes from the reader it is
// given.
type session[S any] struct {
	app   *App[S]
	rt    runtime
	phase phase
}

func newSession[S any](a *App[S], name string) *session[S] {
	s := &session[S]{app: a}
	s.rt = runtime{
		name:    name,
		codec:   a.codec,
		methods: make(map[string]bool, len(a.handlers)),
		results: make(map[string]bool, len(a.results)),
		bind:    &a.bind,
	}
	for m := range a.handlers {
		s.rt.methods[m] = true
	}
	for r := range a.results {
		s.rt.results[r] = true
	}
	return s
}

// record processes one record from the coordinator and returns what to send
// back, valid until the next call. state reads the checkpoint state bytes
// that follow the record, if its last message is a Checkpoint.
func (s *session[S]) record(h logfmt.WireHeader, body []byte, state io.Reader) ([]byte, error) {
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	index := 0
	it := logfmt.NewMessageIter(body)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if err := s.message(h.Seq, &index, m, state); err != nil {
			if sw, ok := err.(*switchCode); ok {
				s.rt.out.flush()
				sw.out = append(s.rt.out.take(), sw.out...)
				return nil, sw
			}
			return nil, fmt.Errorf("immortal: %s: %w", describeSeq(h.Seq), err)
		}
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("immortal: %s: %w", describeSeq(h.Seq), err)
	}
	s.rt.out.flush()
	return s.rt.out.take(), nil
}

func describeSeq(seq int64) string {
	switch seq {
	case logfmt.SeqControl:
		return "control record"
	case logfmt.SeqCheckpointRecord:
		return "checkpoint record"
	}
	return "record " + strconv.FormatInt(seq, 10)
}

// message processes one message of a record. index counts the input
// messages (RPCs, batched or not, and the InitialMessage) of the record.
func (s *session[S]) message(seq int64, index *int, m logfmt.Message, state io.Reader) error {
	next := func() int { i := *index; *index++; return i }
	switch m.Type {
	case logfmt.TypeRPC:
		return s.rpc(seq, next(), m.Data)
	case logfmt.TypeRPCBatch, logfmt.TypeCountReplayableRPCBatch:
		b, err := logfmt.ParseBatch(m)
		if err != nil {
			return fmt.Errorf("message %d: %w", *index, err)
		}
		it := b.Iter()
		for sub, ok := it.Next(); ok; sub, ok = it.Next() {
			if err := s.rpc(seq, next(), sub.Data); err != nil {
				return err
			}
		}
		return it.Err()
	case logfmt.TypeInitialMessage:
		return s.initialMessage(seq, next(), m.Data)
	case logfmt.TypeCheckpoint:
		return s.loadCheckpoint(m, state)
	case logfmt.TypeTakeCheckpoint:
		return s.checkpoint()
	case logfmt.TypeTakeBecomingPrimaryCheckpoint:
		if s.phase == phaseWaiting {
			return s.firstStart()
		}
		if err := s.checkpoint(); err != nil {
			return err
		}
		s.phase = phaseLive
		return nil
	case logfmt.TypeBecomingPrimary:
		if s.phase == phaseWaiting {
			return errors.New("BecomingPrimary before a checkpoint to start from")
		}
		s.phase = phaseLive
		return nil
	case logfmt.TypeUpgradeTakeCheckpoint, logfmt.TypeUpgradeService:
		if s.app.upgrade == nil {
			return fmt.Errorf("coordinator sent %v, but the app was not built with immortal.Upgrade: %w", m.Type, ErrUpgradeNotSupported)
		}
		if err := s.needState(m.Type.String()); err != nil {
			return err
		}
		sw, err := s.app.upgrade(s, m.Type == logfmt.TypeUpgradeTakeCheckpoint)
		if err != nil {
			return err
		}
		return sw
	}
	return fmt.Errorf("unexpected %v message from the coordinator", m.Type)
}

// needState returns an error if the session cannot process input yet.
func (s *session[S]) needState(what string) error {
	if s.phase == phaseWaiting {
		return fmt.Errorf("%s before the coordinator sent a checkpoint or asked for the first one", what)
	}
	return nil
}

// firstStart answers the first TakeBecomingPrimaryCheckpoint of a new
// instance: InitialMessage, then the initial state.
func (s *session[S]) firstStart() error {
	a := s.app
	a.state, a.bind, a.started = a.initial(), newBindingState(), true
	env := Envelope{Time: a.clock().UnixNano(), Payload: a.init}
	s.rt.out.out = logfmt.AppendInitialMessage(s.rt.out.out, env.Append(nil))
	if err := s.checkpoint(); err != nil {
		return err
	}
	s.phase = phaseLive
	return nil
}

// checkpoint appends a Checkpoint message with the current state, after the
// output held so far.
func (s *session[S]) checkpoint() error {
	a := s.app
	if !a.started {
		return errors.New("coordinator asked for a checkpoint before the app has a state")
	}
	state, err := a.codec.Marshal(a.state)
	if err != nil {
		return fmt.Errorf("encode state for a checkpoint: %w", err)
	}
	ck, err := encodeCheckpoint(a.codec, state, &a.bind)
	if err != nil {
		return err
	}
	o := &s.rt.out
	o.flush()
	o.out = logfmt.AppendCheckpointMessage(o.out, int64(len(ck)))
	o.out = append(o.out, ck...)
	return nil
}

// loadCheckpoint starts a recovery from the checkpoint the coordinator sent.
func (s *session[S]) loadCheckpoint(m logfmt.Message, state io.Reader) error {
	if s.phase != phaseWaiting {
		return fmt.Errorf("coordinator sent a checkpoint to recover from while %s", s.phase)
	}
	n, err := m.CheckpointStateLen()
	if err != nil {
		return err
	}
	data, err := io.ReadAll(state)
	if err != nil {
		return fmt.Errorf("read checkpoint state: %w", err)
	}
	if int64(len(data)) != n {
		return fmt.Errorf("checkpoint announces %d state bytes, read %d", n, len(data))
	}
	a := s.app
	stateBytes, bind, err := decodeCheckpoint(a.codec, data)
	if err != nil {
		return err
	}
	var st S
	if err := a.codec.Unmarshal(stateBytes, &st); err != nil {
		return fmt.Errorf("decode state from checkpoint with codec %s: %w", a.codec.Name(), err)
	}
	a.state, a.bind, a.started = st, bind, true
	s.phase = phaseRecovering
	return nil
}

// ctx returns the Ctx for a handler of the message at index of record seq,
// whose envelope carries the logical time t.
func (s *session[S]) ctx(seq int64, index int, t int64) *Ctx {
	return &Ctx{rt: &s.rt, seq: seq, index: index, now: time.Unix(0, t).UTC(), replaying: s.phase == phaseRecovering}
}

// initialMessage runs OnFirstStart on the InitialMessage handed back by the
// coordinator.
func (s *session[S]) initialMessage(seq int64, index int, data []byte) error {
	if err := s.needState("InitialMessage"); err != nil {
		return err
	}
	env, err := ParseEnvelope(data)
	if err != nil {
		return fmt.Errorf("message %d: InitialMessage: %w", index, err)
	}
	a := s.app
	if a.onFirstStart == nil {
		return nil
	}
	var args []byte
	if len(env.Payload) > 0 {
		args = append([]byte(nil), env.Payload...)
	}
	ctx := s.ctx(seq, index, env.Time)
	defer func() { ctx.done = true }()
	var herr error
	if err := s.protect("OnFirstStart", func() { herr = a.onFirstStart(ctx, &a.state, args) }); err != nil {
		return fmt.Errorf("message %d: %w", index, err)
	}
	if herr != nil {
		s.report(slog.LevelError, "OnFirstStart failed", ctx, "error", herr)
	}
	return nil
}

// rpc processes one RPC. Framing errors are fatal; an RPC this binding
// cannot dispatch is logged and skipped, the same way on every replay.
func (s *session[S]) rpc(seq int64, index int, data []byte) error {
	if err := s.needState("RPC"); err != nil {
		return err
	}
	r, err := logfmt.ParseRPC(data)
	if err != nil {
		return fmt.Errorf("message %d: %w", index, err)
	}
	ctx := s.ctx(seq, index, 0)
	defer func() { ctx.done = true }()
	if r.MethodID < 0 {
		s.report(slog.LevelWarn, "skipping an RPC with a system method id", ctx, "method_id", r.MethodID)
		return nil
	}
	env, err := ParseEnvelope(r.Args)
	if err != nil {
		s.report(slog.LevelError, "skipping an RPC this binding cannot read", ctx, "method_id", r.MethodID, "error", err)
		return nil
	}
	if id := MethodID(env.Method); id != r.MethodID {
		s.report(slog.LevelError, "skipping an RPC whose method id does not match its name", ctx, "method", env.Method, "method_id", r.MethodID, "want", id)
		return nil
	}
	ctx.now = time.Unix(0, env.Time).UTC()
	switch r.Reserved {
	case ReservedRequest:
		err = s.request(ctx, r.Kind, env)
	case ReservedResult:
		err = s.result(ctx, env)
	default:
		s.report(slog.LevelError, "skipping an RPC with an unknown reserved byte", ctx, "reserved", r.Reserved)
	}
	if err != nil {
		return fmt.Errorf("message %d: %w", index, err)
	}
	return nil
}

// request runs the handler of a call, fork or impulse and, for a call, sends
// the result back.
func (s *session[S]) request(ctx *Ctx, kind logfmt.RPCKind, env Envelope) error {
	a := s.app
	wantResult := kind == logfmt.RPCCall && env.CallID != 0
	var result []byte
	var herr error
	if h, ok := a.handlers[env.Method]; !ok {
		herr = fmt.Errorf("immortal: %s has no handler for method %s", s.rt.name, env.Method)
	} else if err := s.protect(env.Method, func() { result, herr = h(ctx, &a.state, env.Payload, wantResult) }); err != nil {
		return err
	}
	if !wantResult {
		if herr != nil {
			s.report(slog.LevelError, "handler failed", ctx, "method", env.Method, "kind", kind, "error", herr)
		}
		return nil
	}
	if env.ReplyTo == "" {
		s.report(slog.LevelError, "dropping the result of a call that names no caller", ctx, "method", env.Method, "call_id", env.CallID)
		return nil
	}
	reply := Envelope{CallID: env.CallID, Time: ctx.now.UnixNano(), Payload: result}
	if herr != nil {
		reply.Flags, reply.Payload = FlagError, []byte(herr.Error())
	}
	dest := env.ReplyTo
	if dest == s.rt.name {
		dest = ""
	}
	s.rt.out.rpc(dest, logfmt.RPC{Reserved: ReservedResult, MethodID: MethodID(""), Kind: logfmt.RPCFork, Args: reply.Append(nil)})
	return nil
}

// result runs the result handler of a pending call.
func (s *session[S]) result(ctx *Ctx, env Envelope) error {
	a := s.app
	p, ok := s.rt.bind.pending[env.CallID]
	if !ok {
		s.report(slog.LevelWarn, "skipping the result of a call that is not pending", ctx, "call_id", env.CallID)
		return nil
	}
	delete(s.rt.bind.pending, env.CallID)
	h, ok := a.results[p.onResult]
	if !ok {
		s.report(slog.LevelError, "dropping a result: no result handler", ctx, "on_result", p.onResult, "method", p.method, "call_id", env.CallID)
		return nil
	}
	var callErr error
	if env.Flags&FlagError != 0 {
		callErr = &CallError{Method: p.method, Message: string(env.Payload)}
	}
	var herr error
	if err := s.protect(p.onResult, func() { herr = h(ctx, &a.state, env.Payload, callErr, p.note) }); err != nil {
		return err
	}
	if herr != nil {
		s.report(slog.LevelError, "result handler failed", ctx, "on_result", p.onResult, "method", p.method, "error", herr)
	}
	return nil
}

// protect runs f and turns a panic into an error: the state may be half
// changed, so Serve stops.
func (s *session[S]) protect(handler string, f func()) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler %s panicked: %v\n%s", handler, p, debug.Stack())
		}
	}()
	f()
	return nil
}

// report logs an event about the message ctx belongs to.
func (s *session[S]) report(level slog.Level, msg string, ctx *Ctx, args ...any) {
	args = append([]any{"instance", s.rt.name, "seq", ctx.seq, "index", ctx.index, "replaying", ctx.replaying}, args...)
	s.app.log.Log(context.Background(), level, "immortal: "+msg, args...)
}
