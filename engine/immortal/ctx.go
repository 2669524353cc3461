package immortal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// runtime is what a Ctx reaches of the session it belongs to: the parts
// that do not depend on the app's state type.
type runtime struct {
	name    string
	codec   Codec
	methods map[string]bool // names of request handlers
	results map[string]bool // names of result handlers
	bind    *bindingState
	dur     *durableRegistry // orchestrations and entity types, nil if none
	log     *slog.Logger
	out     output
	env     []byte // scratch for the envelope of an outgoing RPC, see send
}

// maxScratch bounds the envelope buffer runtime.send keeps between RPCs.
const maxScratch = 64 << 10

// send adds an outgoing RPC of method whose arguments are env. The envelope
// is encoded into a buffer kept from one RPC to the next, from which
// output.rpc copies it into the held RPCs: no allocation per message, where
// env.Append(nil) made a buffer for each. A buffer grown by a large
// envelope is not kept. A payload of refPayload bytes or more is not
// copied at all: output holds it by reference until the record's output is
// written, so it must not change until then (see Codec).
func (rt *runtime) send(dest string, reserved byte, method string, kind logfmt.RPCKind, env Envelope) {
	var tail []byte
	if len(env.Payload) >= refPayload {
		tail, env.Payload = env.Payload, nil
	}
	rt.env = env.Append(rt.env[:0])
	rt.out.rpc(dest, logfmt.RPC{Reserved: reserved, MethodID: MethodID(method), Kind: kind, Args: rt.env}, tail)
	if cap(rt.env) > maxScratch {
		rt.env = nil
	}
}

// Ctx is what a handler knows about the message it processes, and how it
// sends messages. Everything it returns is deterministic: the same on replay
// as the first time. A Ctx is valid only while its handler runs; its methods
// return an error (or do nothing) afterwards.
type Ctx struct {
	rt        *runtime
	seq       int64
	index     int
	now       int64 // Unix nanoseconds; Now makes the time.Time
	rng       *rand.Rand
	replaying bool
	done      bool
	// For a call with a result being handled: its id and caller, which an
	// orchestration or entity keeps to reply later. replyTo aliases the
	// record.
	callID  int64
	replyTo []byte
}

var errCtxDone = errors.New("immortal: Ctx used after its handler returned")

// Self returns the name of this instance.
func (c *Ctx) Self() string { return c.rt.name }

// Seq returns the sequence number of the log record being processed. The
// InitialMessage, which OnFirstStart handles, is record 1.
func (c *Ctx) Seq() int64 { return c.seq }

// Now returns the logical time of the message being processed: the time its
// sender put in it. For an impulse and the InitialMessage that is the wall
// clock when they were made; for a message sent by a handler, that
// handler's Now. Now is in UTC and the same on replay; handlers must use it
// rather than the wall clock.
func (c *Ctx) Now() time.Time { return time.Unix(0, c.now).UTC() }

// Rand returns a random number generator for this message, seeded from the
// instance name, the record's sequence number and the message's index in the
// record: the same numbers on replay.
func (c *Ctx) Rand() *rand.Rand {
	if c.rng == nil {
		c.rng = rand.New(rand.NewPCG(randSeed(c.rt.name, c.seq, c.index)))
	}
	return c.rng
}

// randSeed derives the seeds of Ctx.Rand. Part of the determinism contract:
// changing it changes what a replay of an existing log computes.
func randSeed(name string, seq int64, index int) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte(name))
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], uint64(seq))
	binary.LittleEndian.PutUint64(b[8:], uint64(index))
	h.Write(b[:])
	return h.Sum64(), uint64(seq)<<32 ^ uint64(index)
}

// Replaying reports whether the app is recovering: the message was processed
// before, and this run only rebuilds the state. Use it to keep side effects
// that are not messages (printing, metrics) to live processing. Messages
// sent while replaying are fine: the coordinator drops the duplicates.
func (c *Ctx) Replaying() bool { return c.replaying }

// Unmarshal decodes codec bytes (OnFirstStart's init args, a call's note)
// with the app's codec.
func (c *Ctx) Unmarshal(data []byte, v any) error { return c.rt.codec.Unmarshal(data, v) }

// Fork sends a fire-and-forget call of method with args to the instance
// dest; dest "" or Self() is a self-call, which goes through this instance's
// log. The message leaves when the handler has returned.
func (c *Ctx) Fork(dest, method string, args any) error {
	env, dest, err := c.request("fork", dest, method, args)
	if err != nil {
		return err
	}
	c.rt.send(dest, ReservedRequest, method, logfmt.RPCFork, env)
	return nil
}

// Call sends a call of method with args to the instance dest ("" or Self()
// for a self-call), whose result comes back later as a message of its own:
// the result handler registered under onResult (HandleResult) then runs with
// it and with note. The note, encoded with the codec, is kept in the
// checkpointed bookkeeping of pending calls, so a call survives a checkpoint
// and recovery; nil means no note.
func (c *Ctx) Call(dest, method string, args any, onResult string, note any) error {
	env, dest, err := c.request("call", dest, method, args)
	if err != nil {
		return err
	}
	if !c.rt.results[onResult] {
		return fmt.Errorf("immortal: call %s: no result handler %q (register it with HandleResult)", method, onResult)
	}
	var nb []byte
	if note != nil {
		if nb, err = c.rt.codec.Marshal(note); err != nil {
			return fmt.Errorf("immortal: call %s: encode note: %w", method, err)
		}
	}
	b := c.rt.bind
	env.CallID = b.nextCallID
	env.ReplyTo = c.rt.name
	b.nextCallID++
	b.pending[env.CallID] = pendingCall{onResult: onResult, method: method, dest: dest, note: nb}
	c.rt.send(dest, ReservedRequest, method, logfmt.RPCCall, env)
	return nil
}

// request checks a fork or call and returns its envelope, without call id,
// and its destination as it goes on the wire.
func (c *Ctx) request(what, dest, method string, args any) (Envelope, string, error) {
	if c.done {
		return Envelope{}, "", errCtxDone
	}
	if method == "" {
		return Envelope{}, "", fmt.Errorf("immortal: %s: empty method name", what)
	}
	if dest == c.rt.name {
		dest = ""
	}
	if dest == "" && !c.rt.methods[method] {
		return Envelope{}, "", fmt.Errorf("immortal: %s %s: %s has no handler for it", what, method, c.rt.name)
	}
	payload, err := c.rt.codec.Marshal(args)
	if err != nil {
		return Envelope{}, "", fmt.Errorf("immortal: %s %s: encode arguments: %w", what, method, err)
	}
	return Envelope{Method: method, Time: c.now, Payload: payload}, dest, nil
}

// RequestCheckpoint asks the coordinator to take a checkpoint soon, rather
// than when its log grows large enough. It does nothing while replaying.
func (c *Ctx) RequestCheckpoint() {
	if !c.done && !c.replaying {
		c.rt.out.wantCkpt = true
	}
}
