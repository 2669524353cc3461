package immortal

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// Orchestrations, entities and critical sections (the Durable Functions
// model) are built in this package, not a subpackage, because they live in
// the binding's own bookkeeping: an orchestration replies to its caller
// when it finishes (the session must hold the reply back), its calls'
// results are routed by the pending-call table, and its history, timers and
// the entities' state are checkpointed next to it under "binding.durable".
// They are written against the non-generic runtime, so that none of it
// depends on the app's state type.

// Method names of the binding's own messages. Apps cannot register them.
const (
	entityMethod = "ambr.entity" // an entity operation, lock request or release
	timerMethod  = "ambr.timer"  // a durable timer fired (an impulse)
	clockMethod  = "ambr.clock"  // the wall clock moved on (an impulse)
)

// reservedPrefix starts the names of the binding's own methods.
const reservedPrefix = "ambr."

// checkUserMethod panics if an app registers a method under a name the
// binding keeps for itself.
func checkUserMethod(what, method string) {
	if strings.HasPrefix(method, reservedPrefix) {
		panic("immortal: " + what + " " + method + ": method names starting with " + reservedPrefix + " are the binding's; choose another")
	}
}

// errDeferred is what a request handler returns when the reply comes later
// (an orchestration, or an entity operation queued behind a lock).
var errDeferred = errors.New("immortal: reply deferred")

// fatalError makes a handler's error stop Serve, as a panic does.
type fatalError struct{ err error }

func (e *fatalError) Error() string { return e.err.Error() }
func (e *fatalError) Unwrap() error { return e.err }

func isFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

// durableRegistry is what an app registered: orchestrations and entity types.
type durableRegistry struct {
	orchs    map[string]orchBody
	entities map[string]*entityType
	wake     chan struct{} // a timer was added: the timer loop looks again
}

// orchBody runs an orchestration's body on its encoded input.
type orchBody func(o *Orch, input []byte) ([]byte, error)

// registry returns the app's registry, making it on first use. It panics
// unless the app's codec is JSON: histories and entity states are JSON in
// the checkpoint, for the tools.
func (a *App[S]) registry(what string) *durableRegistry {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.checkOpen(what)
	if a.codec.Name() != (JSONCodec{}).Name() {
		panic("immortal: " + what + ": orchestrations and entities need the JSON codec (their history and state are JSON in the checkpoint), this app uses " + a.codec.Name())
	}
	if a.durable == nil {
		a.durable = &durableRegistry{orchs: map[string]orchBody{}, entities: map[string]*entityType{}, wake: make(chan struct{}, 1)}
	}
	return a.durable
}

// DurableState is the checkpointed part of orchestrations, timers and
// entities: "binding.durable" in the checkpoint, so the tools show it.
type DurableState struct {
	// Clock is the instance's durable time: the latest time of any message
	// the orchestrations and timers saw, and of the clock impulses the
	// timer loop sends while orchestrations are in flight. Orchestrations
	// take their Now from it, so time advances along call chains too.
	Clock             time.Time                      `json:"clock,omitzero"`
	NextOrchestration int64                          `json:"next_orchestration"`
	Orchestrations    map[string]*OrchestrationState `json:"orchestrations,omitempty"`
	NextTimer         int64                          `json:"next_timer"`
	Timers            map[string]*TimerState         `json:"timers,omitempty"`
	Entities          map[string]*EntityState        `json:"entities,omitempty"`
}

// OrchestrationState is one orchestration in flight: its input, who wants its
// result, and its history: every step the body scheduled, in order, with
// what came back and in which order (a body re-run after a recovery sees
// the results in that order).
type OrchestrationState struct {
	Name        string          `json:"name"`
	Input       json.RawMessage `json:"input,omitempty"`
	ReplyTo     string          `json:"reply_to,omitempty"`
	CallID      int64           `json:"call_id,omitempty"`
	Started     time.Time       `json:"started"`
	History     []*Step         `json:"history"`
	Completions int             `json:"completions"`
	// Waiting says what the body waits for now, for people.
	Waiting string `json:"waiting,omitempty"`
	// Locked is the critical section the orchestration holds.
	Locked []EntityID `json:"locked,omitempty"`

	live *orchRun // the body's goroutine, nil until (re)built
}

// Step is one step of an orchestration's history.
type Step struct {
	Step     int             `json:"step"` // from 1
	Kind     string          `json:"kind"` // call, entity_call, signal, fork, timer, lock, unlock
	Dest     string          `json:"dest,omitempty"`
	Method   string          `json:"method,omitempty"` // method, or entity operation
	Entity   *EntityID       `json:"entity,omitempty"`
	Entities []EntityID      `json:"entities,omitempty"` // of a lock
	CallID   int64           `json:"call_id,omitempty"`
	Timer    int64           `json:"timer,omitempty"`
	Due      time.Time       `json:"due,omitzero"`
	Guard    int             `json:"timeout_step,omitempty"` // the timer step of a call's timeout
	Done     bool            `json:"done"`
	Canceled bool            `json:"canceled,omitempty"` // a timeout timer whose call returned first
	Order    int             `json:"order,omitempty"`    // 1 for the first result that came back, …
	At       time.Time       `json:"at,omitzero"`
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	Code     string          `json:"code,omitempty"`
}

// describe names a step for errors and for Waiting.
func (st *Step) describe() string {
	switch st.Kind {
	case "call", "fork":
		dest := st.Dest
		return fmt.Sprintf("%s of %s on %s", st.Kind, st.Method, dest)
	case "entity_call", "signal":
		return fmt.Sprintf("%s of %s on %s", st.Kind, st.Method, st.Entity)
	case "timer":
		return "timer due " + st.Due.Format(time.RFC3339Nano)
	case "lock", "unlock":
		return fmt.Sprintf("%s of %v", st.Kind, st.Entities)
	}
	return st.Kind
}

// same reports whether a step the body schedules now is the one history
// recorded.
func (st *Step) same(o *Step) bool {
	if st.Kind != o.Kind || st.Dest != o.Dest || st.Method != o.Method || (st.Entity == nil) != (o.Entity == nil) || len(st.Entities) != len(o.Entities) {
		return false
	}
	if st.Entity != nil && *st.Entity != *o.Entity {
		return false
	}
	for i := range st.Entities {
		if st.Entities[i] != o.Entities[i] {
			return false
		}
	}
	return true
}

// TimerState is a durable timer: when it is due, the timer loop sends an
// impulse, which is logged; replay never fires a timer again.
type TimerState struct {
	Orchestration string    `json:"orchestration"`
	Step          int       `json:"step"`
	Due           time.Time `json:"due"`
}

// durState returns the durable state, making it on first use.
func (rt *runtime) durState() *DurableState {
	b := rt.bind
	if b.dur == nil {
		b.dur = &DurableState{}
	}
	d := b.dur
	if d.Orchestrations == nil {
		d.Orchestrations = map[string]*OrchestrationState{}
	}
	if d.Timers == nil {
		d.Timers = map[string]*TimerState{}
	}
	if d.Entities == nil {
		d.Entities = map[string]*EntityState{}
	}
	return d
}

// wireDest is an instance as the wire names it: "" for this one.
func (rt *runtime) wireDest(instance string) string {
	if instance == rt.name {
		return ""
	}
	return instance
}

// reply sends the result of a call that was answered later: by an
// orchestration that finished or an entity operation that ran.
func (rt *runtime) reply(replyTo string, callID int64, now time.Time, result []byte, err error) {
	env := Envelope{CallID: callID, Time: now.UnixNano(), Payload: result}
	if err != nil {
		env.Flags, env.Payload = errorPayload(err)
	}
	rt.send(rt.wireDest(replyTo), ReservedResult, "", logfmt.RPCFork, env)
}

// sendInternal sends one of the binding's own messages (JSON) to instance.
// A call (callID ≠ 0) wants its result at this instance.
func (rt *runtime) sendInternal(instance, method string, kind logfmt.RPCKind, now time.Time, v any, callID int64) error {
	replyTo := ""
	if callID != 0 {
		replyTo = rt.name
	}
	return rt.sendInternalTo(instance, method, kind, now, v, callID, replyTo)
}

// sendInternalTo is sendInternal with the result going to replyTo: a lock
// request forwarded entity to entity is a call whose result (the grant, or
// an error from a host that cannot take it) goes to the orchestration.
func (rt *runtime) sendInternalTo(instance, method string, kind logfmt.RPCKind, now time.Time, v any, callID int64, replyTo string) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("immortal: encode %s message: %w", method, err)
	}
	env := Envelope{Method: method, CallID: callID, Time: now.UnixNano(), ReplyTo: replyTo, Payload: payload}
	rt.send(rt.wireDest(instance), ReservedRequest, method, kind, env)
	return nil
}

// clock advances the durable clock to the time of the message ctx handles
// and returns it.
func (rt *runtime) clock(ctx *Ctx) time.Time {
	d := rt.durState()
	if t := ctx.Now(); t.After(d.Clock) {
		d.Clock = t
	}
	return d.Clock
}

// fireTimer handles the impulse of a timer that is due.
func (rt *runtime) fireTimer(ctx *Ctx, id string) error {
	rt.clock(ctx)
	d := rt.durState()
	t, ok := d.Timers[id]
	if !ok {
		return nil // fired before (a retried impulse), or canceled
	}
	delete(d.Timers, id)
	return rt.complete(ctx, t.Orchestration, t.Step, nil, nil)
}

func timerKey(id int64) string { return strconv.FormatInt(id, 10) }

// wakeTimers tells the timer loop that a timer was added.
func (rt *runtime) wakeTimers() {
	select {
	case rt.dur.wake <- struct{}{}:
	default:
	}
}
