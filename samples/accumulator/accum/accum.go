// Package accum is the sample single immortal behind samples/accumulator:
// it adds 1, 2, …, target by calling itself (a chain of self-forks, each
// logged before it runs) while a ticker outside the deterministic world
// feeds it impulses. Its final state is fixed whatever crashes happen:
// count = target, sum = target·(target+1)/2, ticks = tick target.
//
// The ticker shows how an impulse source survives crashes: an impulse not
// yet logged when the process dies is lost, so the source retries, and the
// handler ignores a tick it has already counted (each tick carries the
// number it expects to be).
package accum

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// State is the accumulator's checkpointed state (JSON).
type State struct {
	Target     int   `json:"target"`
	TickTarget int   `json:"tick_target"`
	Count      int   `json:"count"`
	Sum        int64 `json:"sum"`
	Ticks      int   `json:"ticks"`
	Done       bool  `json:"done"`
}

// InitArgs start the accumulator on its first start.
type InitArgs struct {
	Target int `json:"target"`
	Ticks  int `json:"ticks"`
}

// Expected returns the state every run with these arguments must end in.
func Expected(a InitArgs) State {
	return State{Target: a.Target, TickTarget: a.Ticks, Count: a.Target, Sum: int64(a.Target) * int64(a.Target+1) / 2, Ticks: a.Ticks, Done: true}
}

// New returns the app. Progress lines go to out while the app is live (never
// during a replay); every is how often a line is printed (every n adds).
func New(args InitArgs, out io.Writer, every int) *immortal.App[State] {
	if every <= 0 {
		every = 1
	}
	app := immortal.New(func() State { return State{} }, immortal.WithInitArgs(args))
	app.OnFirstStart(func(ctx *immortal.Ctx, s *State, raw []byte) error {
		var a InitArgs
		if err := ctx.Unmarshal(raw, &a); err != nil {
			return err
		}
		s.Target, s.TickTarget = a.Target, a.Ticks
		if !ctx.Replaying() {
			fmt.Fprintf(out, "started: adding 1..%d, waiting for %d ticks\n", a.Target, a.Ticks)
		}
		if s.Target > 0 {
			return ctx.Fork("", "add", 1)
		}
		checkDone(ctx, s, out)
		return nil
	})
	immortal.Handle(app, "add", func(ctx *immortal.Ctx, s *State, i int) (struct{}, error) {
		s.Count++
		s.Sum += int64(i)
		if !ctx.Replaying() && (i%every == 0 || i == s.Target) {
			fmt.Fprintf(out, "add %d: count %d, sum %d (record %d)\n", i, s.Count, s.Sum, ctx.Seq())
		}
		if i < s.Target {
			if err := ctx.Fork("", "add", i+1); err != nil {
				return struct{}{}, err
			}
		}
		checkDone(ctx, s, out)
		return struct{}{}, nil
	})
	immortal.Handle(app, "tick", func(ctx *immortal.Ctx, s *State, k int) (struct{}, error) {
		if k != s.Ticks || s.Ticks >= s.TickTarget {
			return struct{}{}, nil // a retried tick that was already counted
		}
		s.Ticks++
		if !ctx.Replaying() {
			fmt.Fprintf(out, "tick %d of %d\n", s.Ticks, s.TickTarget)
		}
		checkDone(ctx, s, out)
		return struct{}{}, nil
	})
	return app
}

func checkDone(ctx *immortal.Ctx, s *State, out io.Writer) {
	if s.Done || s.Count < s.Target || s.Ticks < s.TickTarget {
		return
	}
	s.Done = true
	ctx.RequestCheckpoint()
	if !ctx.Replaying() {
		fmt.Fprintf(out, "done: count %d, sum %d, ticks %d\n", s.Count, s.Sum, s.Ticks)
	}
}

// Tick feeds the app impulses until it has counted all its ticks or ctx
// ends. It retries: a tick lost in a crash is sent again.
func Tick(ctx context.Context, app *immortal.App[State], every time.Duration) {
	immortal.Every(ctx, app, every, func(s State) (string, any, bool) {
		if s.Done {
			return "", nil, true
		}
		if s.TickTarget == 0 || s.Ticks >= s.TickTarget {
			return "", nil, false
		}
		return "tick", s.Ticks, false
	})
}
