package immortal

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// testState is the state of the app the scenario tests run.
type testState struct {
	Started  bool     `json:"started"`
	Greeting string   `json:"greeting,omitempty"`
	N        int      `json:"n"`
	Samples  []sample `json:"samples,omitempty"`
	Echoes   []sample `json:"echoes,omitempty"`
	Results  []string `json:"results,omitempty"`
}

// sample is what a handler saw of Ctx.
type sample struct {
	Seq  int64 `json:"seq"`
	Now  int64 `json:"now"`
	Rand int64 `json:"rand"`
}

type note struct {
	Tag string `json:"tag"`
}

// observation is what the test side saw a handler do. It is kept outside
// the state, which must not depend on Replaying.
type observation struct {
	method    string
	seq       int64
	replaying bool
	now       time.Time
}

type observer struct {
	mu          sync.Mutex
	seen        []observation
	impulseErrs []error
}

func (o *observer) saw(ctx *Ctx, method string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seen = append(o.seen, observation{method, ctx.Seq(), ctx.Replaying(), ctx.Now()})
}

func (o *observer) observations() []observation {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]observation(nil), o.seen...)
}

func (o *observer) errs() []error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]error(nil), o.impulseErrs...)
}

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// newTestApp returns the app of the scenario tests. A recovery uses a new
// one, as a restarted process would.
func newTestApp(obs *observer, opts ...Option) *App[testState] {
	opts = append([]Option{WithLogger(quietLogger())}, opts...)
	app := New(func() testState { return testState{} }, opts...)
	app.OnFirstStart(func(ctx *Ctx, s *testState, initArgs []byte) error {
		obs.saw(ctx, "OnFirstStart")
		s.Started = true
		if initArgs != nil {
			var args map[string]string
			if err := ctx.Unmarshal(initArgs, &args); err != nil {
				return err
			}
			s.Greeting = args["greeting"]
		}
		return nil
	})
	Handle(app, "count", func(ctx *Ctx, s *testState, n int) (struct{}, error) {
		obs.saw(ctx, "count")
		s.N++
		if n > 0 {
			return struct{}{}, ctx.Fork("", "count", n-1)
		}
		return struct{}{}, nil
	})
	Handle(app, "sample", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		obs.saw(ctx, "sample")
		smp := sample{Seq: ctx.Seq(), Now: ctx.Now().UnixNano(), Rand: ctx.Rand().Int64()}
		s.Samples = append(s.Samples, smp)
		return struct{}{}, ctx.Fork(ctx.Self(), "echo", smp)
	})
	Handle(app, "echo", func(ctx *Ctx, s *testState, smp sample) (struct{}, error) {
		obs.saw(ctx, "echo")
		s.Echoes = append(s.Echoes, sample{Seq: ctx.Seq(), Now: ctx.Now().UnixNano(), Rand: smp.Rand})
		return struct{}{}, nil
	})
	Handle(app, "start", func(ctx *Ctx, s *testState, n int) (struct{}, error) {
		obs.saw(ctx, "start")
		return struct{}{}, ctx.Call("", "double", n, "doubled", note{Tag: fmt.Sprintf("double %d", n)})
	})
	Handle(app, "startFail", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		return struct{}{}, ctx.Call("", "fail", 0, "doubled", nil)
	})
	Handle(app, "double", func(ctx *Ctx, s *testState, n int) (int, error) {
		obs.saw(ctx, "double")
		return 2 * n, nil
	})
	Handle(app, "fail", func(ctx *Ctx, s *testState, _ int) (int, error) {
		return 0, errors.New("boom")
	})
	HandleResult(app, "doubled", func(ctx *Ctx, s *testState, r int, callErr error, nb []byte) error {
		obs.saw(ctx, "doubled")
		var n note
		if nb != nil {
			if err := ctx.Unmarshal(nb, &n); err != nil {
				return err
			}
		}
		s.Results = append(s.Results, fmt.Sprintf("%d err=%v note=%q", r, callErr, n.Tag))
		return nil
	})
	Handle(app, "remote", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		for _, err := range []error{
			ctx.Fork("other", "ping", 1),
			ctx.Fork("other", "ping", 2),
			ctx.Fork("third", "ping", 3),
			ctx.Call("other", "double", 5, "doubled", note{Tag: "remote"}),
		} {
			if err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	Handle(app, "tryImpulse", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		obs.saw(ctx, "tryImpulse")
		err := app.Impulse("count", 0)
		obs.mu.Lock()
		obs.impulseErrs = append(obs.impulseErrs, err)
		obs.mu.Unlock()
		return struct{}{}, nil
	})
	Handle(app, "ckpt", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		ctx.RequestCheckpoint()
		return struct{}{}, nil
	})
	Handle(app, "panic", func(ctx *Ctx, s *testState, _ struct{}) (struct{}, error) {
		panic("kaboom")
	})
	return app
}

// mustState returns the app's state, which it must have.
func mustState(t *testing.T, app *App[testState]) testState {
	t.Helper()
	s, ok := app.State()
	if !ok {
		t.Fatal("app has no state")
	}
	return s
}

func mustImpulse(t *testing.T, app *App[testState], method string, args any) {
	t.Helper()
	if err := app.Impulse(method, args); err != nil {
		t.Fatalf("Impulse(%s): %v", method, err)
	}
}
