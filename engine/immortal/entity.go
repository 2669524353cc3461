package immortal

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// EntityID addresses an entity: a small piece of state of type Name with
// its Key, hosted by the immortal Instance ("" for the sender's own). Its
// operations run one at a time, in order per sender.
type EntityID struct {
	Instance string `json:"instance,omitempty"`
	Name     string `json:"name"`
	Key      string `json:"key"`
}

func (e EntityID) String() string {
	if e.Instance == "" {
		return e.Name + "@" + e.Key
	}
	return e.Instance + "/" + e.Name + "@" + e.Key
}

// compareEntities is the one global order of locks: instance, name, key.
func compareEntities(a, b EntityID) int {
	return cmp.Or(cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Key, b.Key))
}

func (rt *runtime) canonical(e EntityID) EntityID {
	if e.Instance == "" {
		e.Instance = rt.name
	}
	return e
}

// entityKey names a hosted entity in the state: "name@key".
func entityKey(name, key string) string { return name + "@" + key }

// entityType is a registered kind of entity.
type entityType struct {
	name    string
	initial func() ([]byte, error)
	ops     map[string]entityOp
}

// entityOp runs an operation on an entity's encoded state and returns the
// new state and the encoded result.
type entityOp func(ec *EntityCtx, state, args []byte) ([]byte, []byte, error)

// EntityType is a kind of entity hosted by an app: NewEntity registers it,
// HandleOp its operations.
type EntityType[E any] struct {
	name  string
	reg   *entityType
	check func(string)
}

// NewEntity registers the entity type name on app, whose state starts as
// initial() the first time an entity of the type is addressed. The state
// (JSON) is in the checkpoint under binding.durable.entities["name@key"].
func NewEntity[S, E any](app *App[S], name string, initial func() E) *EntityType[E] {
	if initial == nil || name == "" {
		panic("immortal: NewEntity needs a name and an initial state function")
	}
	reg := app.registry("NewEntity " + name)
	app.lmu.Lock()
	if _, dup := reg.entities[name]; dup {
		app.lmu.Unlock()
		panic("immortal: entity type " + name + " registered twice")
	}
	et := &entityType{name: name, initial: func() ([]byte, error) { return json.Marshal(initial()) }, ops: map[string]entityOp{}}
	reg.entities[name] = et
	_, hasEntity := app.handlers[entityMethod]
	app.lmu.Unlock()
	if !hasEntity {
		app.register(entityMethod, func(ctx *Ctx, _ *S, payload []byte, wantResult bool) ([]byte, error) {
			return nil, ctx.rt.entityMessage(ctx, payload, wantResult)
		})
	}
	return &EntityType[E]{name: name, reg: et, check: func(what string) {
		app.lmu.Lock()
		defer app.lmu.Unlock()
		app.checkOpen(what)
	}}
}

// ID returns the id of the entity of this type with key, hosted by instance
// ("" for the sender's own instance).
func (t *EntityType[E]) ID(instance, key string) EntityID {
	return EntityID{Instance: instance, Name: t.name, Key: key}
}

// HandleOp registers fn as the operation op of the entity type. The state
// fn changes is kept only if it returns no error: an operation that fails
// (or panics: the caller gets the error) changes nothing and sends none of
// its signals.
func HandleOp[E, A, R any](t *EntityType[E], op string, fn func(ec *EntityCtx, e *E, args A) (R, error)) {
	t.check("HandleOp " + t.name + "." + op)
	if _, dup := t.reg.ops[op]; dup || op == "" {
		panic("immortal: entity operation " + t.name + "." + op + " empty or registered twice")
	}
	t.reg.ops[op] = func(ec *EntityCtx, state, args []byte) ([]byte, []byte, error) {
		var e E
		if err := json.Unmarshal(state, &e); err != nil {
			return nil, nil, fmt.Errorf("immortal: entity %s: decode state: %w", ec.id, err)
		}
		var a A
		if len(args) > 0 {
			if err := json.Unmarshal(args, &a); err != nil {
				return nil, nil, fmt.Errorf("immortal: entity %s.%s: decode arguments: %w", ec.id, op, err)
			}
		}
		r, err := fn(ec, &e, a)
		if err != nil {
			return nil, nil, err
		}
		ns, err := json.Marshal(e)
		if err != nil {
			return nil, nil, fmt.Errorf("immortal: entity %s: encode state: %w", ec.id, err)
		}
		res, err := json.Marshal(r)
		if err != nil {
			return nil, nil, fmt.Errorf("immortal: entity %s.%s: encode result: %w", ec.id, op, err)
		}
		return ns, res, nil
	}
}

// EntityCtx is what an entity operation knows and does.
type EntityCtx struct {
	rt        *runtime
	id        EntityID
	now       time.Time
	replaying bool
	signals   []entitySignal
}

type entitySignal struct {
	to  EntityID
	msg EntityMessage
}

// ID returns the entity the operation runs on.
func (ec *EntityCtx) ID() EntityID { return ec.id }

// Now returns the logical time of the message that runs the operation.
func (ec *EntityCtx) Now() time.Time { return ec.now }

// Replaying reports whether the instance replays its log.
func (ec *EntityCtx) Replaying() bool { return ec.replaying }

// Signal sends entity e the one-way operation op with args, when (and only
// if) this operation succeeds. Entities may signal; only orchestrations may
// call.
func (ec *EntityCtx) Signal(e EntityID, op string, args any) error {
	m, err := signalMsg(e, op, args)
	if err != nil {
		return err
	}
	ec.signals = append(ec.signals, entitySignal{to: ec.rt.canonical(e), msg: m})
	return nil
}

func signalMsg(e EntityID, op string, args any) (EntityMessage, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return EntityMessage{}, fmt.Errorf("immortal: signal %s.%s: encode arguments: %w", e, op, err)
	}
	return EntityMessage{Kind: "op", Name: e.Name, Key: e.Key, Op: op, Args: b}, nil
}

// SignalEntity sends entity e the one-way operation op with args. Any
// handler may signal; only orchestrations may call an entity.
func (c *Ctx) SignalEntity(e EntityID, op string, args any) error {
	if c.done {
		return errCtxDone
	}
	m, err := signalMsg(e, op, args)
	if err != nil {
		return err
	}
	e = c.rt.canonical(e)
	if e.Instance == c.rt.name && !c.rt.methods[entityMethod] {
		return fmt.Errorf("immortal: signal %s: %s hosts no entities", e, c.rt.name)
	}
	return c.rt.sendInternal(e.Instance, entityMethod, logfmt.RPCFork, c.Now(), m, 0)
}

// EntityMessage is the payload of an entityMethod message (JSON), and an entry
// of an entity's queue while it is locked.
type EntityMessage struct {
	Kind  string          `json:"kind"` // op, lock, release
	Name  string          `json:"entity"`
	Key   string          `json:"key"`
	Op    string          `json:"op,omitempty"`
	Args  json.RawMessage `json:"args,omitempty"`
	Owner string          `json:"owner,omitempty"` // "instance/orchestration" for locks, and for calls by an orchestration
	// A lock request: the sorted lock set and the position of this entity.
	Set   []EntityID `json:"set,omitempty"`
	Index int        `json:"index,omitempty"`
	// Where the reply goes: the call's, or for a lock the grant's.
	CallID  int64  `json:"call_id,omitempty"`
	ReplyTo string `json:"reply_to,omitempty"`
}

// EntityState is a hosted entity: its state, who holds its lock, and what
// waits for the lock to be released.
type EntityState struct {
	State    json.RawMessage  `json:"state,omitempty"`
	LockedBy string           `json:"locked_by,omitempty"`
	Queue    []*EntityMessage `json:"queue,omitempty"`
}

// entityMessage handles an entityMethod message at the host.
func (rt *runtime) entityMessage(ctx *Ctx, payload []byte, wantResult bool) error {
	var m EntityMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		err = fmt.Errorf("immortal: %s: unreadable entity message: %w", rt.name, err)
		if wantResult {
			rt.reply(string(ctx.replyTo), ctx.callID, ctx.Now(), nil, err)
			return errDeferred
		}
		return err
	}
	if wantResult {
		m.CallID, m.ReplyTo = ctx.callID, string(ctx.replyTo)
	}
	d := rt.durState()
	key := entityKey(m.Name, m.Key)
	e := d.Entities[key]
	if e == nil {
		e = &EntityState{}
		d.Entities[key] = e
	}
	switch m.Kind {
	case "op":
		if e.LockedBy != "" && e.LockedBy != m.Owner {
			e.Queue = append(e.Queue, &m)
		} else {
			rt.runOp(ctx, e, &m)
		}
	case "lock":
		if e.LockedBy != "" {
			e.Queue = append(e.Queue, &m)
		} else {
			rt.grant(ctx, e, &m)
		}
	case "release":
		if e.LockedBy != m.Owner {
			rt.log.Warn("immortal: release of a lock not held", "instance", rt.name, "entity", key, "owner", m.Owner, "locked_by", e.LockedBy)
			break
		}
		e.LockedBy = ""
		for e.LockedBy == "" && len(e.Queue) > 0 {
			next := e.Queue[0]
			e.Queue = e.Queue[1:]
			if next.Kind == "lock" {
				rt.grant(ctx, e, next)
			} else {
				rt.runOp(ctx, e, next)
			}
		}
		if len(e.Queue) == 0 {
			e.Queue = nil
		}
	default:
		rt.log.Error("immortal: entity message of an unknown kind", "instance", rt.name, "kind", m.Kind)
	}
	return errDeferred
}

// grant gives the lock to the request's owner and forwards the request to
// the next entity of the set, or tells the owner it holds them all. Each
// hop is a call whose result goes to the owner: a host that cannot take
// the request answers it with an error there, and only the grant comes from
// the last entity.
func (rt *runtime) grant(ctx *Ctx, e *EntityState, m *EntityMessage) {
	e.LockedBy = m.Owner
	if m.Index+1 < len(m.Set) {
		fwd := *m
		fwd.Index++
		next := fwd.Set[fwd.Index]
		fwd.Name, fwd.Key = next.Name, next.Key
		if err := rt.sendInternalTo(next.Instance, entityMethod, logfmt.RPCCall, ctx.Now(), fwd, fwd.CallID, fwd.ReplyTo); err != nil {
			rt.log.Error("immortal: forward lock request", "error", err)
		}
		return
	}
	rt.reply(m.ReplyTo, m.CallID, ctx.Now(), []byte("true"), nil)
}

// runOp runs an operation on the entity and replies if it was a call.
func (rt *runtime) runOp(ctx *Ctx, e *EntityState, m *EntityMessage) {
	id := EntityID{Instance: rt.name, Name: m.Name, Key: m.Key}
	var op entityOp
	et := rt.dur.entities[m.Name]
	if et != nil {
		op = et.ops[m.Op]
	}
	var ns, res []byte
	var err error
	ec := &EntityCtx{rt: rt, id: id, now: ctx.Now(), replaying: ctx.replaying}
	if op == nil {
		err = fmt.Errorf("%w: %s has no operation %s", ErrNoSuchEntityOp, id, m.Op)
	} else {
		state := []byte(e.State)
		if state == nil {
			state, err = et.initial()
		}
		if err == nil {
			if p := protect(func() { ns, res, err = op(ec, state, m.Args) }); p != nil {
				err = fmt.Errorf("immortal: entity %s.%s panicked: %v", id, m.Op, p.value)
			}
		}
	}
	if err == nil {
		e.State = ns
		for _, s := range ec.signals {
			if serr := rt.sendInternal(s.to.Instance, entityMethod, logfmt.RPCFork, ec.now, s.msg, 0); serr != nil {
				rt.log.Error("immortal: entity signal", "error", serr)
			}
		}
	}
	if m.CallID != 0 {
		rt.reply(m.ReplyTo, m.CallID, ctx.Now(), res, err)
	} else if err != nil {
		rt.log.Log(context.Background(), slog.LevelError, "immortal: entity operation failed", "instance", rt.name, "entity", id.String(), "op", m.Op, "error", err)
	}
}

// CriticalSection is a set of entities an orchestration holds locked: it
// may call only those, and signal only others, until it releases them
// (Unlock, or by returning, failing or panicking).
type CriticalSection struct {
	r        *orchRun
	entities []EntityID
	released bool
}

// Entities returns the locked entities, in lock order.
func (cs *CriticalSection) Entities() []EntityID { return slices.Clone(cs.entities) }

func (cs *CriticalSection) holds(e EntityID) bool {
	_, ok := slices.BinarySearchFunc(cs.entities, e, compareEntities)
	return ok
}

// Unlock releases the entities. It does nothing the second time.
func (cs *CriticalSection) Unlock() {
	r := cs.r
	if cs.released || r.aborting {
		return
	}
	cs.released = true
	r.schedule(&Step{Kind: "unlock", Entities: cs.entities, Done: true}, func(*Step) {
		owner := r.rt.name + "/" + r.id
		for _, e := range cs.entities {
			m := EntityMessage{Kind: "release", Name: e.Name, Key: e.Key, Owner: owner}
			if err := r.rt.sendInternal(e.Instance, entityMethod, logfmt.RPCFork, r.now, m, 0); err != nil {
				r.rt.log.Error("immortal: release", "error", err)
			}
		}
	})
	r.cs, r.st.Locked = nil, nil
	clear(r.calling)
}

// Lock locks the entities for this orchestration and returns when it holds
// them all. They are locked one after the other in one global order
// (instance, name, key) by a request each entity forwards to the next, so
// two orchestrations locking overlapping sets never deadlock. The locks are
// held across crashes and released by Unlock or when the body ends, however
// it ends. Lock in a critical section is an error (ErrLockRule).
func (o *Orch) Lock(entities ...EntityID) (*CriticalSection, error) {
	r := o.r
	if r.cs != nil {
		return nil, fmt.Errorf("%w: orchestration %s (%s) already holds %v; critical sections do not nest", ErrLockRule, r.st.Name, r.id, r.cs.entities)
	}
	if len(entities) == 0 {
		return nil, fmt.Errorf("%w: Lock of no entities", ErrLockRule)
	}
	set := make([]EntityID, len(entities))
	for i, e := range entities {
		set[i] = r.rt.canonical(e)
	}
	slices.SortFunc(set, compareEntities)
	set = slices.Compact(set)
	step := r.schedule(&Step{Kind: "lock", Entities: set}, func(st *Step) {
		st.CallID = r.rt.newCall(pendingCall{method: "lock", orch: r.id, step: len(r.st.History) - 1})
		m := EntityMessage{Kind: "lock", Name: set[0].Name, Key: set[0].Key, Owner: r.rt.name + "/" + r.id, Set: set, CallID: st.CallID, ReplyTo: r.rt.name}
		if err := r.rt.sendInternal(set[0].Instance, entityMethod, logfmt.RPCCall, r.now, m, st.CallID); err != nil {
			r.rt.log.Error("immortal: lock request", "error", err)
		}
	})
	r.await(func() string { return fmt.Sprintf("step %d (lock of %v)", step+1, set) }, func() bool { return r.visible(step) })
	if st := r.st.History[step]; st.Error != "" {
		// A host could not take its lock (it hosts no entities): release
		// those granted before it.
		(&CriticalSection{r: r, entities: set}).Unlock()
		return nil, &CallError{Method: fmt.Sprintf("lock of %v", set), Message: st.Error, Code: st.Code}
	}
	r.cs = &CriticalSection{r: r, entities: set}
	r.st.Locked = set
	return r.cs, nil
}

// CallEntityAsync calls the operation op of entity e with args and returns
// the task of its result. In a critical section, e must be one of the
// locked entities, with no other call to it in flight.
func CallEntityAsync[R any](o *Orch, e EntityID, op string, args any, opts ...CallOption) *Task[R] {
	r := o.r
	e = r.rt.canonical(e)
	t := &Task[R]{r: r, step: -1, guard: -1}
	if cs := r.cs; cs != nil {
		if !cs.holds(e) {
			t.err = fmt.Errorf("%w: orchestration %s (%s) calls %s inside a critical section of %v; call only locked entities there", ErrLockRule, r.st.Name, r.id, e, cs.entities)
			return t
		}
		if s, busy := r.calling[e]; busy && !r.visible(s) && !r.timedOut(s) {
			t.err = fmt.Errorf("%w: orchestration %s (%s) calls %s while its call of step %d is in flight; await it first", ErrLockRule, r.st.Name, r.id, e, s+1)
			return t
		}
	}
	if e.Instance == r.rt.name && !r.rt.methods[entityMethod] {
		t.err = fmt.Errorf("immortal: call %s: %s hosts no entities", e, r.rt.name)
		return t
	}
	b, err := json.Marshal(args)
	if err != nil {
		t.err = fmt.Errorf("immortal: call %s.%s: encode arguments: %w", e, op, err)
		return t
	}
	t.step = r.schedule(&Step{Kind: "entity_call", Entity: &e, Method: op}, func(st *Step) {
		st.CallID = r.rt.newCall(pendingCall{method: e.String() + "." + op, dest: e.Instance, orch: r.id, step: len(r.st.History) - 1})
		m := EntityMessage{Kind: "op", Name: e.Name, Key: e.Key, Op: op, Args: b, Owner: r.rt.name + "/" + r.id}
		if err := r.rt.sendInternal(e.Instance, entityMethod, logfmt.RPCCall, r.now, m, st.CallID); err != nil {
			r.rt.log.Error("immortal: entity call", "error", err)
		}
	})
	if r.cs != nil {
		r.calling[e] = t.step
	}
	t.withTimeout(opts)
	return t
}

// Signal sends entity e the one-way operation op with args. In a critical
// section e must not be one of the locked entities (call those instead).
func (o *Orch) Signal(e EntityID, op string, args any) error {
	r := o.r
	e = r.rt.canonical(e)
	if r.cs != nil && r.cs.holds(e) {
		return fmt.Errorf("%w: orchestration %s (%s) signals %s, which it holds locked; call it instead", ErrLockRule, r.st.Name, r.id, e)
	}
	m, err := signalMsg(e, op, args)
	if err != nil {
		return err
	}
	r.schedule(&Step{Kind: "signal", Entity: &e, Method: op, Done: true}, func(*Step) {
		if err := r.rt.sendInternal(e.Instance, entityMethod, logfmt.RPCFork, r.now, m, 0); err != nil {
			r.rt.log.Error("immortal: signal", "error", err)
		}
	})
	return nil
}
