package immortal

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// durState is the state of the durable test app: what came back to plain
// result handlers from orchestrations.
type durState struct {
	Results []string `json:"results"`
}

var errTestDeclared = DeclareError("test.declared", "declared failure")

// fakeClock is a wall clock the test moves; timers compare against it.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// body lets a test swap an orchestration's code between runs ("a changed
// build").
type durOpts struct {
	clock    *fakeClock
	variant  string // "changed": the fanout body calls something else at step 2
	panicked bool
}

func newDurApp(o durOpts) *App[durState] {
	app := New(func() durState { return durState{Results: []string{}} }, WithLogger(quietLogger()))
	if o.clock == nil { // a clock that stands still unless a test moves it
		o.clock = &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	}
	app.clock = o.clock.Now
	Handle(app, "double", func(ctx *Ctx, s *durState, n int) (int, error) { return 2 * n, nil })
	Handle(app, "fail", func(ctx *Ctx, s *durState, n int) (int, error) {
		return 0, fmt.Errorf("fail %d: %w", n, errTestDeclared)
	})
	Handle(app, "start", func(ctx *Ctx, s *durState, args startArgs) (struct{}, error) {
		return struct{}{}, ctx.Call("", args.Orch, args.Arg, "done", args.Orch)
	})
	HandleResult(app, "done", func(ctx *Ctx, s *durState, r json.RawMessage, callErr error, note []byte) error {
		var name string
		ctx.Unmarshal(note, &name)
		line := fmt.Sprintf("%s: %s", name, r)
		if callErr != nil {
			line = fmt.Sprintf("%s: error %v is-declared=%v is-timeout=%v is-lock=%v", name, callErr, errors.Is(callErr, errTestDeclared), errors.Is(callErr, ErrTimeout), errors.Is(callErr, ErrLockRule))
		}
		s.Results = append(s.Results, line)
		return nil
	})
	Orchestrate(app, "fanout", func(oc *Orch, n int) (int, error) {
		var tasks []*Task[int]
		var aw []Awaitable
		for i := 1; i <= n; i++ {
			method := "double"
			if o.variant == "changed" && i == 2 {
				method = "fail"
			}
			t := CallAsync[int](oc, "", method, i)
			tasks, aw = append(tasks, t), append(aw, t)
		}
		oc.WhenAll(aw...)
		sum := 0
		for _, t := range tasks {
			v, err := t.Await()
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, nil
	})
	Orchestrate(app, "first", func(oc *Orch, _ struct{}) (string, error) {
		slow := oc.Timer(time.Hour)
		fast := CallAsync[int](oc, "", "double", 21)
		i := oc.WhenAny(slow, fast)
		v, _ := fast.Await()
		return fmt.Sprintf("winner %d value %d", i, v), nil
	})
	Orchestrate(app, "failing", func(oc *Orch, n int) (int, error) {
		_, err := CallAsync[int](oc, "", "fail", n).Await()
		return 0, err // carries the callee's declared error on
	})
	Orchestrate(app, "hang", func(oc *Orch, _ struct{}) (int, error) {
		return 0, oc.Sleep(24 * time.Hour)
	})
	Orchestrate(app, "timeout", func(oc *Orch, _ struct{}) (int, error) {
		return CallAsync[int](oc, "", "hang", nil, WithTimeout(time.Minute)).Await()
	})
	Orchestrate(app, "sleeper", func(oc *Orch, d time.Duration) (string, error) {
		start := oc.Now()
		if err := oc.Sleep(d); err != nil {
			return "", err
		}
		return fmt.Sprintf("slept %v", oc.Now().Sub(start) >= d), nil
	})
	Orchestrate(app, "chain", func(oc *Orch, n int) (int, error) {
		sum := 0
		for i := range n {
			v, err := CallAsync[int](oc, "", "double", i).Await()
			if err != nil {
				return 0, err
			}
			sum += v
		}
		return sum, oc.Sleep(24 * time.Hour)
	})
	Orchestrate(app, "stamps", func(oc *Orch, _ struct{}) (string, error) {
		t0 := oc.Now()
		CallAsync[int](oc, "", "double", 1).Await()
		CallAsync[int](oc, "", "double", 2).Await()
		return oc.Now().Sub(t0).String(), nil
	})
	Orchestrate(app, "boom", func(oc *Orch, _ struct{}) (int, error) {
		if _, err := CallAsync[int](oc, "", "double", 1).Await(); err != nil {
			return 0, err
		}
		panic("body exploded")
	})
	addEntities(app)
	return app
}

// acctState is the test entity: a balance.
type acctState struct {
	Balance int `json:"balance"`
}

type xferArgs struct {
	From, To string
	Amount   int
}

func acct(key string) EntityID { return EntityID{Name: "acct", Key: key} }

// addEntities registers the account entity, orchestrations that lock
// accounts, and a handler that signals one.
func addEntities(app *App[durState]) {
	acctType := NewEntity(app, "acct", func() acctState { return acctState{Balance: 100} })
	HandleOp(acctType, "add", func(ec *EntityCtx, e *acctState, n int) (int, error) {
		if e.Balance+n < 0 {
			return e.Balance, fmt.Errorf("%s: %w", ec.ID(), errTestDeclared)
		}
		e.Balance += n
		return e.Balance, nil
	})
	HandleOp(acctType, "get", func(ec *EntityCtx, e *acctState, _ struct{}) (int, error) { return e.Balance, nil })
	Handle(app, "signal", func(ctx *Ctx, s *durState, a xferArgs) (struct{}, error) {
		return struct{}{}, ctx.SignalEntity(acct(a.To), "add", a.Amount)
	})
	Orchestrate(app, "xfer", func(oc *Orch, a xferArgs) (string, error) {
		cs, err := oc.Lock(acct(a.From), acct(a.To))
		if err != nil {
			return "", err
		}
		defer cs.Unlock()
		from := CallEntityAsync[int](oc, acct(a.From), "get", nil)
		to := CallEntityAsync[int](oc, acct(a.To), "get", nil)
		oc.WhenAll(from, to)
		f, _ := from.Await()
		if f < a.Amount {
			return "insufficient", nil
		}
		if _, err := CallEntityAsync[int](oc, acct(a.From), "add", -a.Amount).Await(); err != nil {
			return "", err
		}
		if _, err := CallEntityAsync[int](oc, acct(a.To), "add", a.Amount).Await(); err != nil {
			return "", err
		}
		return "moved", nil
	})
	Orchestrate(app, "rules", func(oc *Orch, _ struct{}) ([]bool, error) {
		if _, err := oc.Lock(acct("a"), acct("b")); err != nil {
			return nil, err
		}
		_, nested := oc.Lock(acct("c"))
		_, outside := CallEntityAsync[int](oc, acct("c"), "get", nil).Await()
		signalLocked := oc.Signal(acct("a"), "add", 1)
		first := CallEntityAsync[int](oc, acct("a"), "get", nil)
		_, twice := CallEntityAsync[int](oc, acct("a"), "get", nil).Await()
		first.Await()
		signalOther := oc.Signal(acct("c"), "add", 1)
		return []bool{errors.Is(nested, ErrLockRule), errors.Is(outside, ErrLockRule), errors.Is(signalLocked, ErrLockRule), errors.Is(twice, ErrLockRule), signalOther == nil}, nil
	})
	Orchestrate(app, "lockpanic", func(oc *Orch, key string) (int, error) {
		oc.Lock(acct(key))
		CallEntityAsync[int](oc, acct(key), "add", 1).Await()
		panic("in the critical section")
	})
	Orchestrate(app, "lockfail", func(oc *Orch, key string) (int, error) {
		oc.Lock(acct(key))
		return CallEntityAsync[int](oc, acct(key), "add", -1000).Await() // fails: errTestDeclared
	})
}

type startArgs struct {
	Orch string `json:"orch"`
	Arg  any    `json:"arg"`
}

func TestOrchestrationParallelCalls(t *testing.T) {
	ic := newFakeIC(t)
	app := newDurApp(durOpts{})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "fanout", Arg: 4})
	mustImpulseDur(t, app, "start", startArgs{Orch: "first", Arg: nil})
	mustImpulseDur(t, app, "start", startArgs{Orch: "failing", Arg: 7})
	mustImpulseDur(t, app, "fanout", 2) // started by an impulse: no one to answer
	ic.settle()
	want := []string{
		"fanout: 20",
		`first: "winner 1 value 42"`,
		`failing: error immortal: call to failing failed: immortal: call to fail failed: fail 7: declared failure is-declared=true is-timeout=false is-lock=false`,
	}
	got := stateOf(t, app).Results
	if diff := cmp.Diff(sortedCopy(want), sortedCopy(got)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	// Nothing is left in flight but first's hour-long timer, which was
	// dropped with its orchestration.
	if d := durableIn(t, ic.lastCheckpoint()); len(d.Orchestrations) != 0 || len(d.Timers) != 0 || d.NextOrchestration != 4 {
		t.Errorf("durable state after all finished: %+v", d)
	}
}

func mustImpulseDur(t *testing.T, app *App[durState], method string, args any) {
	t.Helper()
	if err := app.Impulse(method, args); err != nil {
		t.Fatalf("Impulse(%s): %v", method, err)
	}
}

func stateOf(t *testing.T, app *App[durState]) durState {
	t.Helper()
	s, ok := app.State()
	if !ok {
		t.Fatal("no state")
	}
	return s
}

func sortedCopy(s []string) []string {
	c := append([]string(nil), s...)
	for i := range c {
		for j := i + 1; j < len(c); j++ {
			if c[j] < c[i] {
				c[i], c[j] = c[j], c[i]
			}
		}
	}
	return c
}

// run is one scenario on the durable test app: begin sends its impulses.
type scenario struct {
	opts  durOpts
	begin func(t *testing.T, app *App[durState])
	check func(t *testing.T, s durState)
}

// crashEverywhere runs sc once to count its records, then again for every
// record: crash there (the output of the record last delivered is lost),
// recover from the newest checkpoint (the orchestrations re-run against
// their history) and from the first (the whole log is replayed), run to
// the end and check. The fake coordinator checks that every replay
// regenerates what the first run sent.
func crashEverywhere(t *testing.T, sc scenario) {
	t.Helper()
	ic := newFakeIC(t)
	app := newDurApp(sc.opts)
	ic.start(app)
	sc.begin(t, app)
	n := 0
	for ic.step() {
		if n++; n > 200 {
			t.Fatal("the scenario does not settle")
		}
	}
	sc.check(t, stateOf(t, app))
	ic.crash()
	for i := 1; i <= n; i++ { // after 0 steps the impulses are lost, as they may be
		for _, from := range []string{"newest", "first"} {
			t.Run(fmt.Sprintf("crash after %d steps, recover from %s checkpoint", i, from), func(t *testing.T) {
				ic := newFakeIC(t)
				app := newDurApp(sc.opts)
				ic.start(app)
				sc.begin(t, app)
				for j := 0; j < i; j++ {
					ic.step()
				}
				ic.crash()
				k := len(ic.checkpoints) - 1
				if from == "first" {
					k = 0
				}
				app2 := newDurApp(sc.opts)
				ic.recoverFrom(app2, k)
				ic.settle()
				sc.check(t, stateOf(t, app2))
				ic.crash()
			})
		}
	}
}

func TestOrchestrationCrashAtEveryStep(t *testing.T) {
	crashEverywhere(t, scenario{
		begin: func(t *testing.T, app *App[durState]) {
			mustImpulseDur(t, app, "start", startArgs{Orch: "fanout", Arg: 3})
			mustImpulseDur(t, app, "start", startArgs{Orch: "failing", Arg: 1})
		},
		check: func(t *testing.T, s durState) {
			want := []string{"failing: error immortal: call to failing failed: immortal: call to fail failed: fail 1: declared failure is-declared=true is-timeout=false is-lock=false", "fanout: 12"}
			if diff := cmp.Diff(want, sortedCopy(s.Results)); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		},
	})
}

func TestOrchestrationChangedBodyIsNondeterministic(t *testing.T) {
	ic := newFakeIC(t)
	app := newDurApp(durOpts{})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "fanout", Arg: 3})
	ic.step() // the impulse: start calls fanout
	ic.step() // the call of fanout is logged
	ic.step() // fanout started and called double 3 times; checkpointed in flight
	ic.crash()
	k := len(ic.checkpoints) - 1
	if !strings.Contains(string(ic.checkpoints[k].state), `"orchestrations":{"o1"`) {
		t.Fatalf("the checkpoint does not hold fanout in flight:\n%s", ic.checkpoints[k].state)
	}
	// A build whose fanout calls "fail" at step 2 recovers from it: the
	// first result re-runs the body against its history.
	changed := newDurApp(durOpts{variant: "changed"})
	ic.recoverFrom(changed, k) // then delivers the results of double
	err := ic.c.serveErr()
	if !errors.Is(err, ErrNondeterministic) {
		t.Fatalf("Serve returned %v, want an error wrapping ErrNondeterministic", err)
	}
	t.Logf("Serve stopped with: %v", err)
	for _, want := range []string{"orchestration fanout (o1), step 2", "the history has a call of double", "the code now makes a call of fail"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// stepUntilInput steps until the app sent itself input (a timer's impulse
// comes from the timer loop, a goroutine of its own), nudging the loop.
func stepUntilInput(t *testing.T, ic *fakeIC, app *App[durState]) {
	t.Helper()
	deadline := time.Now().Add(safety)
	for !ic.step() {
		if time.Now().After(deadline) {
			t.Fatal("no timer fired")
		}
		select {
		case app.durable.wake <- struct{}{}:
		default:
		}
		time.Sleep(time.Millisecond)
	}
}

// durableIn returns the durable state of a checkpoint, empty if it has none.
func durableIn(t *testing.T, ck []byte) *DurableState {
	t.Helper()
	d, err := DecodeDurable(ck)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil {
		d = &DurableState{}
	}
	return d
}

func timersIn(t *testing.T, ck []byte) map[string]*TimerState { return durableIn(t, ck).Timers }

// countTimerImpulses counts the logged firings of timers.
func countTimerImpulses(ic *fakeIC) int {
	n := 0
	for _, body := range ic.log {
		n += strings.Count(string(body), timerMethod)
	}
	return n
}

func TestTimerFiresAfterRecoveryOnce(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	opts := durOpts{clock: clock}
	ic := newFakeIC(t)
	app := newDurApp(opts)
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "sleeper", Arg: time.Minute})
	ic.settle()
	timers := timersIn(t, ic.lastCheckpoint())
	if len(timers) != 1 {
		t.Fatalf("checkpoint holds timers %v, want the sleeper's one", timers)
	}
	for _, tm := range timers {
		if want := clock.Now().Add(time.Minute); !tm.Due.Equal(want) {
			t.Errorf("timer due %v, want %v (the orchestration's Now + 1m)", tm.Due, want)
		}
	}
	beforeFire := len(ic.checkpoints) - 1

	// The process dies while the timer is pending; a new one recovers and
	// fires it when the clock gets there, not before.
	ic.crash()
	app = newDurApp(opts)
	ic.recoverFrom(app, beforeFire)
	if ic.step() {
		t.Fatal("the timer fired before it was due")
	}
	clock.Add(2 * time.Minute)
	stepUntilInput(t, ic, app)
	ic.settle()
	if diff := cmp.Diff([]string{`sleeper: "slept true"`}, stateOf(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if n := countTimerImpulses(ic); n != 1 {
		t.Errorf("the log holds %d timer firings, want 1", n)
	}

	// Replaying the firing from the checkpoint before it fires nothing
	// again: the logged impulse completes the timer, and none is sent.
	ic.crash()
	app = newDurApp(opts)
	ic.recoverFrom(app, beforeFire)
	ic.settle()
	if n := countTimerImpulses(ic); n != 1 {
		t.Errorf("after a replay the log holds %d timer firings, want 1", n)
	}
	if len(timersIn(t, ic.lastCheckpoint())) != 0 {
		t.Error("the timer is still pending after it fired")
	}
	if diff := cmp.Diff([]string{`sleeper: "slept true"`}, stateOf(t, app).Results); diff != "" {
		t.Errorf("results after the replay (-want +got):\n%s", diff)
	}
}

func TestCallTimeout(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	ic := newFakeIC(t)
	app := newDurApp(durOpts{clock: clock})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "timeout"})
	ic.settle()
	if got := stateOf(t, app).Results; len(got) != 0 {
		t.Fatalf("the call returned before its timeout: %v", got)
	}
	if n := len(timersIn(t, ic.lastCheckpoint())); n != 2 {
		t.Fatalf("%d timers pending, want 2 (hang's day, timeout's minute)", n)
	}
	clock.Add(2 * time.Minute) // past the timeout, not hang's day
	stepUntilInput(t, ic, app)
	ic.settle()
	want := []string{"timeout: error immortal: call to timeout failed: timed out: call of hang on self after 1m0s is-declared=false is-timeout=true is-lock=false"}
	if diff := cmp.Diff(want, stateOf(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	if n := len(timersIn(t, ic.lastCheckpoint())); n != 1 {
		t.Errorf("%d timers pending, want hang's alone", n)
	}
}

// balances returns each entity's balance, and fails the test if a lock is
// held or an operation waits.
func balances(t *testing.T, ck []byte) map[string]int {
	t.Helper()
	out := map[string]int{}
	for k, e := range durableIn(t, ck).Entities {
		if e.LockedBy != "" || len(e.Queue) > 0 {
			t.Errorf("entity %s is left locked by %q with %d queued", k, e.LockedBy, len(e.Queue))
		}
		var a acctState
		if e.State != nil {
			json.Unmarshal(e.State, &a)
			out[k] = a.Balance
		}
	}
	return out
}

// TestCriticalSectionsCrashAtEveryStep covers, on one instance, the
// lost-release races Durable Functions users report: a crash between "lock
// acquired" and the commit of what follows (every record, the grant's
// too, is crashed after, with its output lost), and locks of a body that
// finishes during a replay (recovery from the first checkpoint replays
// every transfer to its end; its releases are regenerated, not lost).
// Locks released on errors and panics: TestCriticalSectionRulesAndRelease.
// Across instances: TestLockAcrossInstancesCrashAtEveryStep.
func TestCriticalSectionsCrashAtEveryStep(t *testing.T) {
	crashEverywhere(t, scenario{
		begin: func(t *testing.T, app *App[durState]) {
			// Three transfers contend for a and b; a signal adds to c.
			mustImpulseDur(t, app, "start", startArgs{Orch: "xfer", Arg: xferArgs{From: "a", To: "b", Amount: 30}})
			mustImpulseDur(t, app, "start", startArgs{Orch: "xfer", Arg: xferArgs{From: "b", To: "a", Amount: 50}})
			mustImpulseDur(t, app, "start", startArgs{Orch: "xfer", Arg: xferArgs{From: "a", To: "c", Amount: 500}})
			mustImpulseDur(t, app, "signal", xferArgs{To: "c", Amount: 7})
		},
		check: func(t *testing.T, s durState) {
			want := []string{`xfer: "insufficient"`, `xfer: "moved"`, `xfer: "moved"`}
			if diff := cmp.Diff(want, sortedCopy(s.Results)); diff != "" {
				t.Errorf("results (-want +got):\n%s", diff)
			}
		},
	})
}

func TestCriticalSectionRulesAndRelease(t *testing.T) {
	ic := newFakeIC(t)
	app := newDurApp(durOpts{})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "rules"})
	mustImpulseDur(t, app, "start", startArgs{Orch: "lockpanic", Arg: "p"})
	mustImpulseDur(t, app, "start", startArgs{Orch: "lockfail", Arg: "f"})
	ic.settle()
	// After each ended (returned, panicked, failed) its locks are free: a
	// transfer over all of them goes through.
	mustImpulseDur(t, app, "start", startArgs{Orch: "xfer", Arg: xferArgs{From: "p", To: "f", Amount: 1}})
	mustImpulseDur(t, app, "start", startArgs{Orch: "xfer", Arg: xferArgs{From: "a", To: "b", Amount: 1}})
	ic.settle()
	want := []string{
		`lockfail: error immortal: call to lockfail failed: immortal: call to self/acct@f.add failed: self/acct@f: declared failure is-declared=true is-timeout=false is-lock=false`,
		`lockpanic: error immortal: call to lockpanic failed: orchestration panicked: lockpanic (o2): in the critical section is-declared=false is-timeout=false is-lock=false`,
		`rules: [true,true,true,true,true]`,
		`xfer: "moved"`, `xfer: "moved"`,
	}
	if diff := cmp.Diff(want, sortedCopy(stateOf(t, app).Results)); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
	wantBal := map[string]int{"acct@a": 99, "acct@b": 101, "acct@c": 101, "acct@p": 100, "acct@f": 101}
	if diff := cmp.Diff(wantBal, balances(t, ic.lastCheckpoint())); diff != "" {
		t.Errorf("balances (-want +got):\n%s", diff)
	}
}

func TestDurableClockAdvancesAlongCalls(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	ic := newFakeIC(t)
	app := newDurApp(durOpts{clock: clock})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "stamps"})
	ic.step() // the impulse: start calls stamps
	ic.step() // stamps starts and calls double(1)
	// A minute later the wall clock's impulse is logged with double(1)'s
	// result: double(2) is made at the old time, but its result comes at
	// the new one. (Without the durable clock, time stays where the
	// impulse that began the chain put it.)
	clock.Add(time.Minute)
	mustImpulseDur(t, app, clockMethod, nil)
	ic.settle()
	if diff := cmp.Diff([]string{`stamps: "1m0s"`}, stateOf(t, app).Results); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}

	// The timer loop sends that impulse by itself when the clock lags
	// while an orchestration is in flight.
	mustImpulseDur(t, app, "start", startArgs{Orch: "hang"})
	ic.settle()
	clock.Add(time.Hour)
	deadline := time.Now().Add(safety)
	for !strings.Contains(string(ic.log[len(ic.log)-1]), clockMethod) {
		if time.Now().After(deadline) {
			t.Fatal("no clock impulse while the clock lags by an hour")
		}
		select {
		case app.durable.wake <- struct{}{}:
		default:
		}
		ic.step()
	}
	ic.step() // checkpoints the state after the impulse
	if got := durableIn(t, ic.lastCheckpoint()).Clock; !got.Equal(clock.Now()) {
		t.Errorf("durable clock %v after the impulse, want %v", got, clock.Now())
	}
}

// A build without the orchestration (here: with none at all) that recovers
// a state holding one in flight stops with an error naming it, at its next
// result.
func TestRecoveryWithoutTheOrchestration(t *testing.T) {
	ic := newFakeIC(t)
	app := newDurApp(durOpts{})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "fanout", Arg: 2})
	for range 3 {
		ic.step()
	}
	ic.crash()
	bare := New(func() durState { return durState{Results: []string{}} }, WithLogger(quietLogger()))
	Handle(bare, "start", func(*Ctx, *durState, startArgs) (struct{}, error) { return struct{}{}, nil })
	Handle(bare, "double", func(ctx *Ctx, s *durState, n int) (int, error) { return 2 * n, nil })
	HandleResult(bare, "done", func(*Ctx, *durState, json.RawMessage, error, []byte) error { return nil })
	ic.recoverFrom(bare, len(ic.checkpoints)-1) // then the results of double arrive
	err := ic.c.serveErr()
	if err == nil || !strings.Contains(err.Error(), "orchestration fanout (o1) is in the state, but this build has no orchestration of that name") {
		t.Errorf("Serve returned %v", err)
	}
}
