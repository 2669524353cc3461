package immortal

import (
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"
)

// DefaultName is an app's instance name until SetName (or Run, from
// AMBR_INSTANCE) sets another.
const DefaultName = "self"

// App is an immortal: a state of type S and the handlers that change it,
// driven by the records its coordinator sends. Make one with New, register
// handlers with Handle, HandleResult and OnFirstStart, then call Run (or
// Serve). Handlers run one at a time, in log order, on the goroutine of
// Serve.
type App[S any] struct {
	initial func() S
	codec   Codec
	init    []byte // encoded init args, nil if none
	initErr error  // from encoding them, reported by Serve
	log     *slog.Logger
	clock   func() time.Time // wall clock, for impulses and the first start

	// Registered before Serve, read-only once frozen.
	handlers     map[string]requestHandler[S]
	ids          map[int32]string
	results      map[string]resultHandler[S]
	onFirstStart func(ctx *Ctx, s *S, initArgs []byte) error
	// durable holds the orchestrations and entity types, nil if none.
	durable *durableRegistry
	// upgrade hands over to the next version (Upgrade), nil if none.
	upgrade func(old *session[S], takeCheckpoint bool) (*switchCode, error)
	// stateType names S in checkpoints (WithStateType).
	stateType string
	// base64Checkpoints: WithBase64Checkpoints.
	base64Checkpoints bool
	// adopt, set by Upgrade, takes a checkpoint of a later version's state
	// (the instance was upgraded already): it loads it into that version
	// and hands over to it. ok is false if no later version has the type.
	adopt func(old *session[S], stateType string, data []byte) (sw *switchCode, ok bool, err error)

	mu      sync.Mutex // guards state, bind and started; held while a record is processed
	state   S
	bind    bindingState
	started bool

	lmu       sync.Mutex // guards the fields below
	name      string
	frozen    bool  // Serve was called: no more registration
	wire      *wire // the connection to the coordinator while Serve runs
	primary   bool  // impulses are allowed
	replaying bool
}

// requestHandler runs a method on encoded arguments and, if wantResult,
// returns the encoded result.
type requestHandler[S any] func(ctx *Ctx, s *S, args []byte, wantResult bool) ([]byte, error)

// resultHandler runs a result handler on an encoded result.
type resultHandler[S any] func(ctx *Ctx, s *S, result []byte, callErr error, note []byte) error

// An Option configures an App.
type Option func(*options)

type options struct {
	codec     Codec
	initArgs  any
	hasInit   bool
	log       *slog.Logger
	stateType string
	base64    bool
}

// WithBase64Checkpoints makes the app checkpoint a state that is not JSON
// (a codec other than JSON) in base64 under "state_b64", as builds of this
// binding before the binary checkpoint form did, instead of in that form:
// for an instance that may have to go back to such a build, which cannot
// read the binary form. It costs a third more checkpoint and the base64
// both ways. Either form is read.
func WithBase64Checkpoints() Option { return func(o *options) { o.base64 = true } }

// WithStateType names the state's type in checkpoints, instead of its Go
// package path and type name. A build refuses a checkpoint whose state has
// another type name (it was not written by this app, or needs an Upgrade
// from it): give the old name here when a refactor moves or renames the
// type but keeps its encoding.
func WithStateType(name string) Option { return func(o *options) { o.stateType = name } }

// StateTypeName is the name a state of type S gets in checkpoints by
// default: its package path and type name.
func StateTypeName[S any]() string {
	t := reflect.TypeFor[S]()
	if t.Name() == "" || t.PkgPath() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// WithCodec sets the codec for arguments, results, notes, init args and the
// state in checkpoints. The default is JSONCodec.
func WithCodec(c Codec) Option { return func(o *options) { o.codec = c } }

// WithInitArgs sets the arguments handed, encoded, to OnFirstStart. They are
// sent in the InitialMessage on the instance's very first start and logged;
// later runs replay the logged ones.
func WithInitArgs(args any) Option {
	return func(o *options) { o.initArgs, o.hasInit = args, true }
}

// WithLogger sets where the app reports handler errors and messages it
// skips. The default is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// New returns an app whose state starts as initial() on the instance's first
// start. After a recovery the state comes from the checkpoint instead,
// decoded into a zero S.
func New[S any](initial func() S, opts ...Option) *App[S] {
	if initial == nil {
		panic("immortal: New with a nil initial state function")
	}
	o := options{codec: JSONCodec{}, log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	a := &App[S]{
		initial:  initial,
		codec:    o.codec,
		log:      o.log,
		clock:    time.Now,
		handlers: map[string]requestHandler[S]{},
		ids:      map[int32]string{},
		results:  map[string]resultHandler[S]{},
		name:     DefaultName,
	}
	a.stateType, a.base64Checkpoints = o.stateType, o.base64
	if a.stateType == "" {
		a.stateType = StateTypeName[S]()
	}
	if o.hasInit {
		a.init, a.initErr = a.codec.Marshal(o.initArgs)
		if a.initErr != nil {
			a.initErr = fmt.Errorf("immortal: encode init args: %w", a.initErr)
		}
	}
	return a
}

// Handle registers fn as the handler of method on app. A call of the
// method gets fn's result, or its error as a CallError; for a fork or an
// impulse the result is dropped and an error is logged. R may be struct{}.
// Handle panics if method is empty or already registered, or after Serve
// started.
func Handle[S, A, R any](app *App[S], method string, fn func(ctx *Ctx, s *S, args A) (R, error)) {
	if fn == nil {
		panic("immortal: Handle " + method + " with a nil function")
	}
	checkUserMethod("Handle", method)
	// The arguments are decoded into slot, not into a variable of each
	// call: a pointer handed to the codec (an interface) escapes, so that
	// would be an allocation per message. Handlers of an app run one at a
	// time, and slot is zeroed before and after each decode, so it holds
	// nothing between calls and fn gets exactly what a fresh variable
	// would hold.
	slot := new(A)
	app.register(method, func(ctx *Ctx, s *S, payload []byte, wantResult bool) ([]byte, error) {
		var args A
		if len(payload) > 0 {
			*slot = args // zero, even after a decode that panicked
			err := ctx.rt.codec.Unmarshal(payload, slot)
			args, *slot = *slot, args
			if err != nil {
				return nil, fmt.Errorf("immortal: %s: decode arguments: %w", method, err)
			}
		}
		r, err := fn(ctx, s, args)
		if err != nil || !wantResult {
			return nil, err
		}
		b, err := ctx.rt.codec.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("immortal: %s: encode result: %w", method, err)
		}
		return b, nil
	})
}

func (a *App[S]) register(method string, h requestHandler[S]) {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.checkOpen("Handle " + method)
	if method == "" {
		panic("immortal: Handle with an empty method name")
	}
	if _, dup := a.handlers[method]; dup {
		panic("immortal: method " + method + " registered twice")
	}
	id := MethodID(method)
	if other, clash := a.ids[id]; clash {
		panic(fmt.Sprintf("immortal: methods %s and %s have the same method id %d; rename one", other, method, id))
	}
	a.handlers[method], a.ids[id] = h, method
}

// HandleResult registers fn as the result handler name: Ctx.Call names it,
// and it runs when the call's result arrives, with the result decoded into R
// (zero if the call failed), the call's error (a *CallError if the callee
// failed), and the note given to Call (codec bytes; decode with
// Ctx.Unmarshal). An error fn returns is logged. HandleResult panics if name
// is empty or already registered, or after Serve started.
func HandleResult[S, R any](app *App[S], name string, fn func(ctx *Ctx, s *S, result R, callErr error, note []byte) error) {
	if fn == nil {
		panic("immortal: HandleResult " + name + " with a nil function")
	}
	app.lmu.Lock()
	defer app.lmu.Unlock()
	app.checkOpen("HandleResult " + name)
	if name == "" {
		panic("immortal: HandleResult with an empty name")
	}
	if _, dup := app.results[name]; dup {
		panic("immortal: result handler " + name + " registered twice")
	}
	slot := new(R) // as in Handle: no allocation per decode
	app.results[name] = func(ctx *Ctx, s *S, payload []byte, callErr error, note []byte) error {
		var r R
		if callErr == nil && len(payload) > 0 {
			*slot = r
			err := ctx.rt.codec.Unmarshal(payload, slot)
			r, *slot = *slot, r
			if err != nil {
				callErr = fmt.Errorf("immortal: result for %s: decode: %w", name, err)
			}
		}
		return fn(ctx, s, r, callErr, note)
	}
}

// OnFirstStart registers fn to run once in the life of the instance, as its
// first input: when the coordinator hands back the InitialMessage. initArgs
// are the codec bytes of WithInitArgs (nil without it). Like any handler it
// runs again, with the same input, when a recovery replays it. An error fn
// returns is logged.
func (a *App[S]) OnFirstStart(fn func(ctx *Ctx, s *S, initArgs []byte) error) {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.checkOpen("OnFirstStart")
	a.onFirstStart = fn
}

// checkOpen panics if registration is closed. Called with lmu held.
func (a *App[S]) checkOpen(what string) {
	if a.frozen {
		panic("immortal: " + what + " after Serve started; register handlers first")
	}
}

// Name returns the instance name: the destination other instances send to,
// and an input of Ctx.Rand.
func (a *App[S]) Name() string {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	return a.name
}

// SetName sets the instance name. It takes effect at the next Serve; it must
// be the same in every run of the instance, or replays compute differently.
func (a *App[S]) SetName(name string) {
	a.lmu.Lock()
	defer a.lmu.Unlock()
	a.name = name
}

// State returns a copy of the current state, and false if the app has no
// state yet (before the first start or the checkpoint of a recovery). The
// copy is made through the codec, so it is deep and holds exactly what a
// checkpoint would hold; if the codec fails it is a shallow copy. It waits
// for the record being processed, so a handler must not call it.
func (a *App[S]) State() (S, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.started {
		var zero S
		return zero, false
	}
	if b, err := a.codec.Marshal(a.state); err == nil {
		var c S
		if a.codec.Unmarshal(b, &c) == nil {
			return c, true
		}
	}
	return a.state, true
}
