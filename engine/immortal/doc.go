// Package immortal is the Go binding an app links to become an immortal: a
// stateful component whose every input its Immortal Coordinator (IC) logs
// durably before the app sees it, so that after a crash the app reloads a
// checkpoint and replays the log to the state it had. The binding talks to
// its IC only over the AMBROSIA app protocol (package logfmt), so any IC that
// speaks the protocol can run it.
//
// # Writing an immortal
//
// An app is a state of some type S and handlers that change it. Handlers run
// one at a time, in log order, and must be deterministic: the same input
// must give the same state and the same messages on replay. So they take the
// time from Ctx.Now and random numbers from Ctx.Rand, never from the wall
// clock or a global source, and keep printing and other side effects behind
// !Ctx.Replaying(). A handler must not block on the app itself (App.State
// waits for it); App.Impulse is fine.
//
//	type Counter struct{ N int }
//
//	app := immortal.New(func() Counter { return Counter{} })
//	immortal.Handle(app, "add", func(ctx *immortal.Ctx, s *Counter, n int) (int, error) {
//		s.N += n
//		return s.N, nil
//	})
//	immortal.Main(app) // or app.Run(ctx), or app.Serve(ctx, toIC, fromIC)
//
// Handlers send messages through their Ctx: Fork (fire and forget), Call (a
// call whose result comes back later, as a message of its own, to a handler
// registered with HandleResult) and, for input from outside the
// deterministic world, App.Impulse, from any goroutine. A message to the own
// instance (destination "" or Ctx.Self) goes through the own log like any
// other. Pending calls are bookkeeping in the checkpointed state, never a
// goroutine: the note a Call carries comes back with its result, also after
// a recovery.
//
// # The conversation
//
// On the instance's first start the IC sends TakeBecomingPrimaryCheckpoint;
// the app answers with an InitialMessage (the envelope below, with the init
// args) and a Checkpoint of initial(), and is primary. The IC logs the
// InitialMessage as the first input and hands it back: OnFirstStart runs.
// To recover, the IC sends a checkpoint record, the records logged since
// (Ctx.Replaying is true while they are processed), and then
// TakeBecomingPrimaryCheckpoint: the app sends a checkpoint and is primary
// again. While primary, records are processed and TakeCheckpoint answered.
// The messages handlers send leave after their record is processed, several
// in one RPCBatch.
//
// # The envelope
//
// The IC leaves the reserved byte and the argument bytes of an RPC to the
// binding. This binding sets the reserved byte to 0 (ReservedRequest) for a
// call, fork or impulse and to 1 (ReservedResult) for the result of a call,
// and the method id to MethodID(method name): FNV-1a 32 of the name with the
// sign bit cleared. The arguments are an Envelope:
//
//	+-----------+---------+-------------+------------+
//	| version=1 | flags   | method len  | method     |
//	| (1 B)     | (1 B)   | (ZigZagInt) | (UTF-8)    |
//	+-----------+---------+-------------+------------+
//	+--------------+--------------+--------------+----------+---------+
//	| call id      | time         | reply-to len | reply-to | payload |
//	| (ZigZagLong) | (ZigZagLong) | (ZigZagInt)  | (UTF-8)  | (rest)  |
//	+--------------+--------------+--------------+----------+---------+
//
// The fields, all part of the format:
//
//   - flags: bit 0 (FlagError) marks a failed call's result; bit 1
//     (FlagErrorCode) says its payload is "[code] text", the code of a
//     declared error (DeclareError); others are 0.
//   - method: the name handlers are registered under; empty in results.
//   - call id: numbers a call at the caller (from 1, kept in the
//     checkpoint); 0 in forks and impulses. A result carries its call's id,
//     and the caller finds the result handler and note by it.
//   - time: the sender's logical time, Unix nanoseconds: the wall clock for
//     an impulse or the InitialMessage, the sending handler's Ctx.Now
//     otherwise. It is the receiving handler's Ctx.Now.
//   - reply-to: the instance to send a call's result to; empty otherwise.
//   - payload: codec bytes of the arguments or the result; for a failed
//     result, the error text.
//
// A result goes back to the reply-to instance as a fork (rpc kind 1) with
// reserved byte 1, method id MethodID(""), the call's id and, in the
// caller's checkpointed bookkeeping, the name of its result handler; the wire
// does not carry that name. A call (rpc kind 0) with call id 0 gets no
// result.
//
// The InitialMessage's data is an envelope too: empty method, call id 0, the
// wall time of the first start, and the codec bytes of the init args.
//
// # Checkpoints
//
// The checkpoint bytes the IC stores are JSON, for tools to show:
//
//	{"state": {...the state...},
//	 "binding": {"codec": "json", "next_call_id": 3,
//	             "pending": {"2": {"on_result": "doubled", "method": "double", "note": {...}}}}}
//
// With a codec other than JSON the notes are base64 strings under
// "note_b64", and the state is stored as its bytes: the checkpoint is then
// binary, a NUL-led header, the length and JSON of the "binding" part, and
// the state's bytes (CheckpointJSON shows it as {"state_b64": …,
// "binding": …}, the form earlier builds wrote and this one still reads).
// An app with orchestrations or entities adds
// "binding.durable": the durable clock, each orchestration in flight with
// its history (every step, what came back and in which order, what it waits
// for now), the pending timers, and each entity's state, lock holder and
// queue (see DurableState).
//
// # Orchestrations, entities and critical sections
//
// The Durable Functions model, on the same log. Orchestrate registers an
// orchestration: a method whose body may wait — CallAsync or
// CallEntityAsync then Task.Await, Orch.WhenAll, Orch.WhenAny, Orch.Sleep,
// WithTimeout — and whose caller gets the result when the body returns.
// The body runs on a goroutine of its own while the binding waits for it,
// so it stays in log order; its history is in the checkpoint, and after a
// recovery the body runs again from the start against it, sending nothing
// twice, up to where it waits. A body that does otherwise than its history
// stops Serve with ErrNondeterministic naming the orchestration and step.
// Bodies must be deterministic (Orch.Now, Orch.Rand), must not touch the
// app's state, and must wait only through Orch and Task.
//
// NewEntity registers an entity type: state per (instance, name, key),
// operations (HandleOp) run one at a time, in order per sender, changing the
// state only when they succeed. Any handler may signal an entity
// (Ctx.SignalEntity, EntityCtx.Signal); only orchestrations call them.
//
// Orch.Lock takes a critical section: the entities, sorted by (instance,
// name, key), get one lock request that each forwards to the next once it
// holds the lock for the orchestration, the last one telling it it holds
// them all; a locked entity queues everyone else's messages. Inside, an
// orchestration may call only the locked entities, one call each at a time,
// signal only others, and not Lock again (ErrLockRule). The locks are
// released by CriticalSection.Unlock or when the body returns, fails or
// panics. Since every message is logged once, no release is ever lost.
//
// Durable timers are kept in the state and fire by an impulse (method
// "ambr.timer") the binding sends when the wall clock reaches them; the
// clock impulse ("ambr.clock") keeps the durable clock within 100 ms of
// the wall clock while orchestrations are in flight. Entity messages use
// the method "ambr.entity" with a JSON payload. All three method names are
// the binding's; apps cannot register them. Declared errors (DeclareError)
// keep their code across calls, so errors.Is finds them in a *CallError.
// Orchestrations and entities need the JSON codec.
package immortal
