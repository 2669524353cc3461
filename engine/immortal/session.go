package immortal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strconv"

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
	ctxs  []Ctx             // the rest of the current slab of session.ctx
	names map[string]string // interned caller names, see intern
}

func newSession[S any](a *App[S], name string) *session[S] {
	s := &session[S]{app: a}
	s.rt = runtime{
		name:    name,
		codec:   a.codec,
		methods: make(map[string]bool, len(a.handlers)),
		results: make(map[string]bool, len(a.results)),
		bind:    &a.bind,
		dur:     a.durable,
		log:     a.log,
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
func (s *session[S]) record(h logfmt.WireHeader, body []byte, state io.Reader) (wireOut, error) {
	s.app.mu.Lock()
	defer s.app.mu.Unlock()
	index := 0
	it := logfmt.NewMessageIter(body)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if err := s.message(h.Seq, &index, m, state); err != nil {
			if sw, ok := err.(*switchCode); ok {
				s.rt.out.flush()
				sw.out = s.rt.out.take().concat(sw.out)
				return wireOut{}, sw
			}
			return wireOut{}, fmt.Errorf("immortal: %s: %w", describeSeq(h.Seq), err)
		}
	}
	if err := it.Err(); err != nil {
		return wireOut{}, fmt.Errorf("immortal: %s: %w", describeSeq(h.Seq), err)
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
	b := a.bind
	b.stateType = a.stateType
	o := &s.rt.out
	o.flush()
	out, tail, err := appendCheckpointForm(o.out, a.codec, state, &b, true, a.base64Checkpoints)
	if err != nil {
		return err
	}
	o.out = out
	if tail != nil {
		// Written before the next record is processed, which is what
		// could change the state's bytes (see Codec).
		o.refs = append(o.refs, outRef{at: len(o.out), b: tail})
	}
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
	data, err := readState(state, n)
	if err != nil {
		return err
	}
	a := s.app
	stateBytes, bind, err := decodeCheckpoint(a.codec, data)
	if err != nil {
		return err
	}
	if bind.stateType != "" && bind.stateType != a.stateType {
		if a.adopt != nil {
			sw, ok, err := a.adopt(s, bind.stateType, data)
			if err != nil {
				return err
			}
			if ok {
				return sw
			}
		}
		return &IncompatibleStateError{Checkpoint: bind.stateType, Build: a.stateType}
	}
	return s.load(stateBytes, bind)
}

// maxStatePrealloc bounds the buffer readState allocates for the announced
// length before it has read anything.
const maxStatePrealloc = 1 << 30

// readState reads the n state bytes announced for a checkpoint: into one
// buffer of that size rather than one io.ReadAll grows (and copies) from
// 512 bytes up, with io.ReadAll's errors.
func readState(state io.Reader, n int64) ([]byte, error) {
	var data []byte
	if n <= maxStatePrealloc {
		data = make([]byte, n)
		k, err := io.ReadFull(state, data)
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			data = data[:k]
		case err != nil:
			return nil, fmt.Errorf("read checkpoint state: %w", err)
		}
	}
	rest, err := io.ReadAll(state) // nothing, unless more than announced
	if err != nil {
		return nil, fmt.Errorf("read checkpoint state: %w", err)
	}
	if len(rest) > 0 {
		data = append(data, rest...)
	}
	if int64(len(data)) != n {
		return nil, fmt.Errorf("checkpoint announces %d state bytes, read %d", n, len(data))
	}
	return data, nil
}

// load makes a decoded checkpoint the app's state and starts recovering.
func (s *session[S]) load(stateBytes []byte, bind bindingState) error {
	a := s.app
	var st S
	if err := a.codec.Unmarshal(stateBytes, &st); err != nil {
		return fmt.Errorf("decode state from checkpoint with codec %s: %w", a.codec.Name(), err)
	}
	abortOrchestrations(a.bind.dur)
	a.state, a.bind, a.started = st, bind, true
	s.phase = phaseRecovering
	return nil
}

// decodeInto loads checkpoint bytes of this session's own state type (an
// upgraded instance adopted by the version before it). Called with the
// app's mu held.
func (s *session[S]) decodeInto(data []byte) error {
	stateBytes, bind, err := decodeCheckpoint(s.app.codec, data)
	if err != nil {
		return err
	}
	return s.load(stateBytes, bind)
}

// ctxSlab is how many Ctx values session.ctx allocates at a time.
const ctxSlab = 64

// ctx returns the Ctx for a handler of the message at index of record seq,
// whose envelope carries the logical time t (Unix nanoseconds).
//
// Each message gets a Ctx of its own, never reused, so that one a handler
// keeps stays done and keeps its own message's data; they are carved out of
// slabs to make one allocation per ctxSlab messages rather than one per
// message. A kept Ctx keeps its slab alive.
func (s *session[S]) ctx(seq int64, index int, t int64) *Ctx {
	if len(s.ctxs) == 0 {
		s.ctxs = make([]Ctx, ctxSlab)
	}
	c := &s.ctxs[0]
	s.ctxs = s.ctxs[1:]
	*c = Ctx{rt: &s.rt, seq: seq, index: index, now: t, replaying: s.phase == phaseRecovering}
	return c
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
	if p := protect(func() { herr = a.onFirstStart(ctx, &a.state, args) }); p != nil {
		return fmt.Errorf("message %d: %w", index, p.err("OnFirstStart"))
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
	// The envelope's strings stay bytes: the handler is found with them and
	// they become strings only on the paths that keep one.
	env, err := parseEnvelope(r.Args)
	if err != nil {
		s.report(slog.LevelError, "skipping an RPC this binding cannot read", ctx, "method_id", r.MethodID, "error", err)
		return nil
	}
	if id := methodID(env.method); id != r.MethodID {
		s.report(slog.LevelError, "skipping an RPC whose method id does not match its name", ctx, "method", string(env.method), "method_id", r.MethodID, "want", id)
		return nil
	}
	ctx.now = env.time
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
func (s *session[S]) request(ctx *Ctx, kind logfmt.RPCKind, env rawEnvelope) error {
	a := s.app
	wantResult := kind == logfmt.RPCCall && env.callID != 0
	var result []byte
	var herr error
	// a.handlers[string(bytes)] does not allocate the string.
	if wantResult {
		ctx.callID, ctx.replyTo = env.callID, env.replyTo
	}
	if h, ok := a.handlers[string(env.method)]; !ok {
		herr = fmt.Errorf("immortal: %s has no handler for method %s", s.rt.name, env.method)
	} else if p := protect(func() { result, herr = h(ctx, &a.state, env.payload, wantResult) }); p != nil {
		return p.err(string(env.method))
	}
	if herr == errDeferred {
		return nil // an orchestration or entity replies when it is done
	}
	if herr != nil && isFatal(herr) {
		return herr
	}
	if !wantResult {
		if herr != nil {
			s.report(slog.LevelError, "handler failed", ctx, "method", string(env.method), "kind", kind, "error", herr)
		}
		return nil
	}
	if len(env.replyTo) == 0 {
		s.report(slog.LevelError, "dropping the result of a call that names no caller", ctx, "method", string(env.method), "call_id", env.callID)
		return nil
	}
	reply := Envelope{CallID: env.callID, Time: ctx.now, Payload: result}
	if herr != nil {
		reply.Flags, reply.Payload = errorPayload(herr)
	}
	dest := ""
	if string(env.replyTo) != s.rt.name {
		dest = s.intern(env.replyTo)
	}
	s.rt.send(dest, ReservedResult, "", logfmt.RPCFork, reply)
	return nil
}

// maxInterned bounds the names intern keeps.
const maxInterned = 1024

// intern returns b as a string, allocating it only the first time: callers
// are few instances that call again and again.
func (s *session[S]) intern(b []byte) string {
	if str, ok := s.names[string(b)]; ok {
		return str
	}
	str := string(b)
	if len(s.names) < maxInterned {
		if s.names == nil {
			s.names = map[string]string{}
		}
		s.names[str] = str
	}
	return str
}

// result runs the result handler of a pending call.
func (s *session[S]) result(ctx *Ctx, env rawEnvelope) error {
	a := s.app
	p, ok := s.rt.bind.pending[env.callID]
	if !ok {
		s.report(slog.LevelWarn, "skipping the result of a call that is not pending", ctx, "call_id", env.callID)
		return nil
	}
	delete(s.rt.bind.pending, env.callID)
	if p.orch != "" {
		return s.rt.orchResult(ctx, p, env)
	}
	h, ok := a.results[p.onResult]
	if !ok {
		s.report(slog.LevelError, "dropping a result: no result handler", ctx, "on_result", p.onResult, "method", p.method, "call_id", env.callID)
		return nil
	}
	var callErr error
	if env.flags&FlagError != 0 {
		callErr = callError(p.method, env.flags, env.payload)
	}
	var herr error
	if pp := protect(func() { herr = h(ctx, &a.state, env.payload, callErr, p.note) }); pp != nil {
		return pp.err(p.onResult)
	}
	if herr != nil {
		s.report(slog.LevelError, "result handler failed", ctx, "on_result", p.onResult, "method", p.method, "error", herr)
	}
	return nil
}

// protect runs the handler call f and returns what it panicked with, nil if
// it returned. A panic is fatal: the state may be half changed, so Serve
// stops. The caller names the handler only then, so that a call that
// returns costs no allocation.
func protect(f func()) (p *handlerPanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &handlerPanic{value: v, stack: debug.Stack()}
		}
	}()
	f()
	return nil
}

// handlerPanic is a panic of a handler, caught by protect.
type handlerPanic struct {
	value any
	stack []byte
}

// err returns the error Serve stops with.
func (p *handlerPanic) err(handler string) error {
	return fmt.Errorf("handler %s panicked: %v\n%s", handler, p.value, p.stack)
}

// report logs an event about the message ctx belongs to.
func (s *session[S]) report(level slog.Level, msg string, ctx *Ctx, args ...any) {
	args = append([]any{"instance", s.rt.name, "seq", ctx.seq, "index", ctx.index, "replaying", ctx.replaying}, args...)
	s.app.log.Log(context.Background(), level, "immortal: "+msg, args...)
}
