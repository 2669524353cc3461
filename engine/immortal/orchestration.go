package immortal

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// Orchestrate registers body as the orchestration name on app: a method
// whose body may wait — for calls to other immortals or entities
// (CallAsync, CallEntityAsync, then Await, WhenAll, WhenAny), for durable
// timers (Orch.Sleep, WithTimeout) and for locks (Orch.Lock) — and that
// replies to its caller when it returns. A call, fork or impulse of name
// starts one; many run at once in one immortal.
//
// The body runs on a goroutine of its own, but its progress is its history:
// every step it schedules and every result that came back, kept in the
// checkpoint. After a recovery the body is run again from the start against
// that history, up to where it waits, sending nothing it sent before.
// So the body must be deterministic like any handler (time from Orch.Now,
// randomness from Orch.Rand) and must not touch the app's state: its
// locals are its state. If a body changed between runs does something
// other than its history records, Serve stops with an error wrapping
// ErrNondeterministic that names the orchestration and the step.
//
// A body that returns an error replies with it (declared errors keep their
// code, see DeclareError); one that panics fails with
// ErrOrchestrationPanicked. Its critical section, if it holds one, is
// released on every way out.
func Orchestrate[S, A, R any](app *App[S], name string, body func(o *Orch, args A) (R, error)) {
	if body == nil {
		panic("immortal: Orchestrate " + name + " with a nil body")
	}
	checkUserMethod("Orchestrate", name)
	reg := app.registry("Orchestrate " + name)
	app.register(name, func(ctx *Ctx, _ *S, payload []byte, wantResult bool) ([]byte, error) {
		return nil, ctx.rt.startOrchestration(ctx, name, payload, wantResult)
	})
	app.lmu.Lock()
	reg.orchs[name] = func(o *Orch, input []byte) ([]byte, error) {
		var args A
		if len(input) > 0 {
			if err := json.Unmarshal(input, &args); err != nil {
				return nil, fmt.Errorf("immortal: orchestration %s: decode arguments: %w", name, err)
			}
		}
		r, err := body(o, args)
		if err != nil {
			return nil, err
		}
		return json.Marshal(r)
	}
	_, hasTimer := app.handlers[timerMethod]
	app.lmu.Unlock()
	if !hasTimer {
		app.register(clockMethod, func(ctx *Ctx, _ *S, _ []byte, _ bool) ([]byte, error) {
			ctx.rt.clock(ctx)
			return nil, nil
		})
		app.register(timerMethod, func(ctx *Ctx, _ *S, payload []byte, _ bool) ([]byte, error) {
			var id string
			if err := json.Unmarshal(payload, &id); err != nil {
				return nil, fmt.Errorf("immortal: timer impulse: %w", err)
			}
			return nil, ctx.rt.fireTimer(ctx, id)
		})
	}
}

// Orch is what an orchestration's body knows and does: its identity, its
// deterministic time and randomness, and the steps it schedules.
type Orch struct{ r *orchRun }

// ID returns the orchestration's id in this instance ("o17"), unique for
// the life of the instance.
func (o *Orch) ID() string { return o.r.id }

// Name returns the orchestration's registered name.
func (o *Orch) Name() string { return o.r.st.Name }

// Self returns the name of the instance the orchestration runs in.
func (o *Orch) Self() string { return o.r.rt.name }

// Now returns the orchestration's logical time: the instance's durable
// clock when it started, and after each wait when the result that ended it
// came (see DurableState.Clock). It follows the wall clock, and is the same
// on every re-run.
func (o *Orch) Now() time.Time { return o.r.now }

// Rand returns the orchestration's random numbers, seeded from the instance
// and its id: the same sequence on every re-run of the body.
func (o *Orch) Rand() *rand.Rand {
	if o.r.rng == nil {
		h := fnv.New64a()
		h.Write([]byte(o.r.rt.name + "/" + o.r.id))
		o.r.rng = rand.New(rand.NewPCG(h.Sum64(), 0x6f7263))
	}
	return o.r.rng
}

// Replaying reports whether the body is re-running against its history (or
// the instance is recovering): keep side effects such as printing behind
// !Replaying().
func (o *Orch) Replaying() bool { return o.r.rebuilding || o.r.replaying }

// orchRun is the live body of an orchestration: its goroutine and what it
// has seen of its history.
type orchRun struct {
	rt         *runtime
	id         string
	st         *OrchestrationState
	body       orchBody
	resume     chan struct{}
	yield      chan orchYield
	exited     chan struct{}
	next       int  // steps the body has scheduled
	delivered  int  // results (by Order) the body may see
	rebuilding bool // re-running against the history: nothing may be new
	replaying  bool // the instance replays its log
	aborting   bool // Serve ends: the goroutine exits, doing nothing
	done       bool // the goroutine has exited or is about to
	now        time.Time
	rng        *rand.Rand
	cs         *CriticalSection
	calling    map[EntityID]int // the step of each entity call in flight in the critical section
}

// orchYield is what the body's goroutine hands back to the session.
type orchYield struct {
	finished bool
	result   []byte
	err      error
	fatal    error
}

func (rt *runtime) newRun(id string, st *OrchestrationState, rebuilding bool) (*orchRun, error) {
	var body orchBody
	ok := false
	if rt.dur != nil {
		body, ok = rt.dur.orchs[st.Name]
	}
	if !ok {
		return nil, &fatalError{fmt.Errorf("immortal: orchestration %s (%s) is in the state, but this build has no orchestration of that name", st.Name, id)}
	}
	r := &orchRun{rt: rt, id: id, st: st, body: body, rebuilding: rebuilding, now: st.Started,
		resume: make(chan struct{}), yield: make(chan orchYield), exited: make(chan struct{}), calling: map[EntityID]int{}}
	st.live = r
	go r.main()
	return r, nil
}

// main is the body's goroutine. It runs only while the session waits for
// it (drive), so the two never touch the state at once.
func (r *orchRun) main() {
	defer close(r.exited)
	<-r.resume
	if r.aborting {
		return
	}
	var y orchYield
	returned := false
	func() {
		defer func() {
			if returned {
				return
			}
			if v := recover(); v != nil {
				y = orchYield{finished: true, err: fmt.Errorf("%w: %s (%s): %v", ErrOrchestrationPanicked, r.st.Name, r.id, v)}
			}
			// else runtime.Goexit: aborted, or the fatal error is sent
		}()
		res, err := r.body(&Orch{r}, r.st.Input)
		returned = true
		y = orchYield{finished: true, result: res, err: err}
	}()
	if r.cs != nil {
		r.cs.Unlock() // released on every way out
	}
	r.yield <- y
}

// drive lets the body run until it waits again or finishes.
func (r *orchRun) drive() orchYield {
	r.resume <- struct{}{}
	y := <-r.yield
	if y.finished || y.fatal != nil {
		r.done = true
	}
	return y
}

// abort ends the body's goroutine without it doing anything more.
func (r *orchRun) abort() {
	if r.done {
		return
	}
	r.aborting, r.done = true, true
	r.resume <- struct{}{}
	<-r.exited
}

// await blocks the body until cond holds.
func (r *orchRun) await(what func() string, cond func() bool) {
	for !cond() {
		if r.aborting {
			goruntime.Goexit()
		}
		r.st.Waiting = what()
		r.yield <- orchYield{}
		<-r.resume
		if r.aborting {
			goruntime.Goexit()
		}
	}
	r.st.Waiting = ""
}

// nondeterminismHint ends the errors of a body that left its history.
const nondeterminismHint = "; the body changed (or is not deterministic) while this orchestration was in flight: run the build that started it until its orchestrations finish, or keep old bodies' steps as they were"

// fail reports a fatal error from the body's goroutine and ends it.
func (r *orchRun) fail(err error) {
	r.aborting = true
	r.yield <- orchYield{fatal: &fatalError{err}}
	goruntime.Goexit()
}

func (r *orchRun) nondeterministic(step int, format string, a ...any) {
	r.fail(fmt.Errorf("%w: orchestration %s (%s), step %d: %s%s", ErrNondeterministic, r.st.Name, r.id, step, fmt.Sprintf(format, a...), nondeterminismHint))
}

// schedule adds a step: on a re-run it must be the step the history has
// (and is not sent again); otherwise it is new, and send sends it.
func (r *orchRun) schedule(want *Step, send func(st *Step)) int {
	if r.aborting {
		goruntime.Goexit()
	}
	i := r.next
	r.next++
	want.Step = i + 1
	if i < len(r.st.History) {
		if have := r.st.History[i]; !have.same(want) {
			r.nondeterministic(i+1, "the history has a %s, the code now makes a %s", have.describe(), want.describe())
		}
		return i
	}
	if r.rebuilding {
		r.nondeterministic(i+1, "the code makes a %s, which the history does not have (it has %d steps)", want.describe(), len(r.st.History))
	}
	r.st.History = append(r.st.History, want)
	send(want)
	return i
}

// timedOut reports whether the body sees the timeout of the call at step i.
func (r *orchRun) timedOut(i int) bool {
	g := r.st.History[i].Guard
	return g > 0 && r.visible(g-1)
}

// visible reports whether the body may see step i as done.
func (r *orchRun) visible(i int) bool {
	st := r.st.History[i]
	return st.Done && st.Order <= r.delivered
}

// startOrchestration starts an orchestration for a call, fork or impulse.
func (rt *runtime) startOrchestration(ctx *Ctx, name string, payload []byte, wantResult bool) error {
	d := rt.durState()
	d.NextOrchestration++
	id := "o" + strconv.FormatInt(d.NextOrchestration, 10)
	st := &OrchestrationState{Name: name, Started: rt.clock(ctx), History: []*Step{}}
	if len(payload) > 0 {
		st.Input = json.RawMessage(append([]byte(nil), payload...))
	}
	if wantResult {
		st.ReplyTo, st.CallID = string(ctx.replyTo), ctx.callID
	}
	d.Orchestrations[id] = st
	r, err := rt.newRun(id, st, false)
	if err != nil {
		return err
	}
	r.replaying = ctx.replaying
	if err := rt.handle(r, r.drive()); err != nil {
		return err
	}
	return errDeferred
}

// handle acts on what the body's goroutine yielded.
func (rt *runtime) handle(r *orchRun, y orchYield) error {
	if y.fatal != nil {
		<-r.exited
		return y.fatal
	}
	if !y.finished {
		return nil
	}
	<-r.exited
	if r.rebuilding {
		return &fatalError{fmt.Errorf("%w: orchestration %s (%s): the code returns after %d steps, but the history shows it waiting (it has %d steps)%s", ErrNondeterministic, r.st.Name, r.id, r.next, len(r.st.History), nondeterminismHint)}
	}
	d := rt.durState()
	delete(d.Orchestrations, r.id)
	for k, t := range d.Timers {
		if t.Orchestration == r.id {
			delete(d.Timers, k)
		}
	}
	if r.st.CallID != 0 {
		rt.reply(r.st.ReplyTo, r.st.CallID, r.now, y.result, y.err)
	}
	return nil
}

// live returns the orchestration's running body, re-running it against
// its history if it has none (after a checkpoint was loaded).
func (rt *runtime) live(ctx *Ctx, id string, st *OrchestrationState) (*orchRun, error) {
	if st.live != nil && !st.live.done {
		return st.live, nil
	}
	r, err := rt.newRun(id, st, true)
	if err != nil {
		return nil, err
	}
	r.replaying = ctx.replaying
	if err := rt.handle(r, r.drive()); err != nil {
		return nil, err
	}
	var order []*Step
	for _, s := range st.History {
		if s.Order > 0 {
			order = append(order, s)
		}
	}
	slices.SortFunc(order, func(a, b *Step) int { return a.Order - b.Order })
	for _, s := range order {
		r.delivered, r.now = s.Order, s.At
		if err := rt.handle(r, r.drive()); err != nil {
			return nil, err
		}
	}
	if r.next != len(st.History) {
		r.abort()
		return nil, &fatalError{fmt.Errorf("%w: orchestration %s (%s), step %d: the history has a %s, the code now waits without making it%s", ErrNondeterministic, st.Name, id, r.next+1, st.History[r.next].describe(), nondeterminismHint)}
	}
	r.rebuilding = false
	return r, nil
}

// complete records the result of step of orchestration id and lets its
// body go on.
func (rt *runtime) complete(ctx *Ctx, id string, step int, result []byte, callErr *CallError) error {
	rt.clock(ctx)
	d := rt.durState()
	st, ok := d.Orchestrations[id]
	if !ok || step < 0 || step >= len(st.History) || st.History[step].Done {
		return nil // a late result of a finished orchestration or a timed-out call
	}
	r, err := rt.live(ctx, id, st)
	if err != nil {
		return err
	}
	s := st.History[step]
	st.Completions++
	s.Done, s.Order, s.At = true, st.Completions, rt.clock(ctx)
	if len(result) > 0 {
		s.Result = json.RawMessage(append([]byte(nil), result...))
	}
	if callErr != nil {
		s.Error, s.Code = callErr.Message, callErr.Code
		if s.Error == "" {
			s.Error = "failed"
		}
	}
	if s.Guard > 0 {
		if g := st.History[s.Guard-1]; !g.Done {
			delete(d.Timers, timerKey(g.Timer))
			g.Canceled = true
		}
	}
	r.delivered, r.now, r.replaying = st.Completions, s.At, ctx.replaying
	return rt.handle(r, r.drive())
}

// orchResult routes the result of a call an orchestration made.
func (rt *runtime) orchResult(ctx *Ctx, p pendingCall, env rawEnvelope) error {
	var ce *CallError
	var result []byte
	if env.flags&FlagError != 0 {
		ce = callError(p.method, env.flags, env.payload)
	} else {
		result = env.payload
		if len(result) > 0 && !json.Valid(result) {
			ce = &CallError{Method: p.method, Message: "the result is not JSON"}
			result = nil
		}
	}
	return rt.complete(ctx, p.orch, p.step, result, ce)
}

// abortOrchestrations ends the goroutines of the bodies in d.
func abortOrchestrations(d *DurableState) {
	if d == nil {
		return
	}
	for _, st := range d.Orchestrations {
		if st.live != nil {
			st.live.abort()
			st.live = nil
		}
	}
}

// An Awaitable is a step an orchestration can wait for: a *Task.
type Awaitable interface {
	// completedAt returns whether the body sees the task done, and the
	// order in which it completed (0: at once).
	completedAt() (bool, int)
	describe() string
}

// Task is a step of an orchestration whose result comes later: a call
// (CallAsync, CallEntityAsync) or a timer (Orch.Timer).
type Task[R any] struct {
	r       *orchRun
	step    int // in the history; -1 if it failed before it was made
	guard   int // the step of its timeout timer, -1 if none
	timeout time.Duration
	err     error // why it failed before it was made
}

func (t *Task[R]) completedAt() (bool, int) {
	if t.err != nil {
		return true, 0
	}
	done, order := false, 0
	for _, i := range []int{t.step, t.guard} {
		if i >= 0 && t.r.visible(i) {
			if o := t.r.st.History[i].Order; !done || o < order {
				done, order = true, o
			}
		}
	}
	return done, order
}

func (t *Task[R]) describe() string {
	if t.step < 0 {
		return "a failed step"
	}
	return fmt.Sprintf("step %d (%s)", t.step+1, t.r.st.History[t.step].describe())
}

// Await waits for the task and returns its result: the callee's (decoded
// from JSON) or its error (a *CallError; errors.Is works for declared
// errors), ErrTimeout if the timeout came first.
func (t *Task[R]) Await() (R, error) {
	var zero R
	if t.err != nil {
		return zero, t.err
	}
	t.r.await(func() string { return t.describe() }, func() bool { d, _ := t.completedAt(); return d })
	st := t.r.st.History[t.step]
	if t.guard >= 0 && t.r.visible(t.guard) && !(t.r.visible(t.step) && st.Order < t.r.st.History[t.guard].Order) {
		return zero, fmt.Errorf("%w: %s after %v", ErrTimeout, st.describe(), t.timeout)
	}
	if st.Error != "" {
		method := st.Method
		if st.Entity != nil {
			method = st.Entity.String() + "." + st.Method
		}
		return zero, &CallError{Method: method, Message: st.Error, Code: st.Code}
	}
	var r R
	if len(st.Result) > 0 {
		if err := json.Unmarshal(st.Result, &r); err != nil {
			return zero, fmt.Errorf("immortal: %s: decode result: %w", st.describe(), err)
		}
	}
	return r, nil
}

// WhenAll waits until every task is done; their Awaits then return at once.
func (o *Orch) WhenAll(tasks ...Awaitable) {
	o.r.await(func() string { return "all of " + describeAll(tasks) }, func() bool {
		for _, t := range tasks {
			if d, _ := t.completedAt(); !d {
				return false
			}
		}
		return true
	})
}

// WhenAny waits until one of the tasks is done and returns the index of the
// one that completed first.
func (o *Orch) WhenAny(tasks ...Awaitable) int {
	if len(tasks) == 0 {
		panic("immortal: WhenAny of no tasks")
	}
	first := -1
	o.r.await(func() string { return "any of " + describeAll(tasks) }, func() bool {
		best := 0
		for i, t := range tasks {
			if d, order := t.completedAt(); d && (first < 0 || order < best) {
				first, best = i, order
			}
		}
		return first >= 0
	})
	return first
}

// describeAll names the tasks a body waits for, the first few of them.
func describeAll(tasks []Awaitable) string {
	const shown = 4
	s := make([]string, 0, shown+1)
	for _, t := range tasks[:min(len(tasks), shown)] {
		s = append(s, t.describe())
	}
	if len(tasks) > shown {
		s = append(s, fmt.Sprintf("and %d more", len(tasks)-shown))
	}
	return strings.Join(s, ", ")
}

// A CallOption changes a call an orchestration makes.
type CallOption func(*callOptions)

type callOptions struct{ timeout time.Duration }

// WithTimeout makes the call's Await return ErrTimeout if no result came
// within d of the orchestration's Now, measured by a durable timer. The call
// itself is not withdrawn: it may still run at the callee.
func WithTimeout(d time.Duration) CallOption { return func(o *callOptions) { o.timeout = d } }

// CallAsync calls method of the instance dest ("" for this one) with args
// and returns the task of its result.
func CallAsync[R any](o *Orch, dest, method string, args any, opts ...CallOption) *Task[R] {
	r := o.r
	if dest == "" {
		dest = r.rt.name
	}
	t := &Task[R]{r: r, step: -1, guard: -1}
	if dest == r.rt.name && !r.rt.methods[method] {
		t.err = fmt.Errorf("immortal: orchestration %s: call %s: %s has no handler for it", r.st.Name, method, dest)
		return t
	}
	payload, err := json.Marshal(args)
	if err != nil {
		t.err = fmt.Errorf("immortal: orchestration %s: call %s: encode arguments: %w", r.st.Name, method, err)
		return t
	}
	t.step = r.schedule(&Step{Kind: "call", Dest: dest, Method: method}, func(st *Step) {
		st.CallID = r.rt.newCall(pendingCall{method: method, dest: dest, orch: r.id, step: len(r.st.History) - 1})
		r.rt.send(r.rt.wireDest(dest), ReservedRequest, method, logfmt.RPCCall,
			Envelope{Method: method, CallID: st.CallID, Time: r.now.UnixNano(), ReplyTo: r.rt.name, Payload: payload})
	})
	t.withTimeout(opts)
	return t
}

func (t *Task[R]) withTimeout(opts []CallOption) {
	var co callOptions
	for _, opt := range opts {
		opt(&co)
	}
	if co.timeout <= 0 {
		return
	}
	t.timeout = co.timeout
	t.guard = t.r.timer(co.timeout)
	t.r.st.History[t.step].Guard = t.guard + 1
}

// newCall registers a pending call and returns its id.
func (rt *runtime) newCall(p pendingCall) int64 {
	b := rt.bind
	id := b.nextCallID
	b.nextCallID++
	b.pending[id] = p
	return id
}

// Fork sends a fire-and-forget call of method to the instance dest.
func (o *Orch) Fork(dest, method string, args any) error {
	r := o.r
	if dest == "" {
		dest = r.rt.name
	}
	if dest == r.rt.name && !r.rt.methods[method] {
		return fmt.Errorf("immortal: orchestration %s: fork %s: %s has no handler for it", r.st.Name, method, dest)
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("immortal: orchestration %s: fork %s: encode arguments: %w", r.st.Name, method, err)
	}
	r.schedule(&Step{Kind: "fork", Dest: dest, Method: method, Done: true}, func(*Step) {
		r.rt.send(r.rt.wireDest(dest), ReservedRequest, method, logfmt.RPCFork,
			Envelope{Method: method, Time: r.now.UnixNano(), Payload: payload})
	})
	return nil
}

// Timer returns a durable timer that fires d after the orchestration's Now.
// It is kept in the checkpoint and fires after a recovery too; its firing
// is logged (an impulse), never made again by replay.
func (o *Orch) Timer(d time.Duration) *Task[struct{}] {
	return &Task[struct{}]{r: o.r, step: o.r.timer(d), guard: -1}
}

// Sleep waits for a durable timer of d.
func (o *Orch) Sleep(d time.Duration) error {
	_, err := o.Timer(d).Await()
	return err
}

func (r *orchRun) timer(d time.Duration) int {
	due := r.now.Add(d)
	return r.schedule(&Step{Kind: "timer", Due: due}, func(st *Step) {
		ds := r.rt.durState()
		ds.NextTimer++
		st.Timer = ds.NextTimer
		ds.Timers[timerKey(st.Timer)] = &TimerState{Orchestration: r.id, Step: len(r.st.History) - 1, Due: due}
		r.rt.wakeTimers()
	})
}
