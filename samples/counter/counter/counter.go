// Package counter is the seeds' canonical example of virtual resiliency: a
// server immortal whose Inc() increments its count and returns it, and a
// client immortal that on its first start calls Inc() k times, one after the
// other, keeping every result it receives. Whatever is killed, and whenever,
// the client's results end as exactly 1, 2, …, k.
package counter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// ServerState is the server's checkpointed state (JSON).
type ServerState struct {
	Count int `json:"count"`
}

// NewServer returns the server app; it prints each Inc to out when live.
func NewServer(out io.Writer) *immortal.App[ServerState] {
	app := immortal.New(func() ServerState { return ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *ServerState, _ struct{}) (int, error) {
		s.Count++
		if !ctx.Replaying() && out != nil {
			fmt.Fprintf(out, "Inc() → %d\n", s.Count)
		}
		return s.Count, nil
	})
	return app
}

// ClientArgs start a client.
type ClientArgs struct {
	Server string `json:"server"`
	Count  int    `json:"count"`
	// Paced makes the client wait for a "next" impulse before each call
	// (see Pace) instead of calling again as soon as a result arrives.
	Paced bool `json:"paced,omitempty"`
}

// ClientState is the client's checkpointed state (JSON).
type ClientState struct {
	Server  string `json:"server"`
	Count   int    `json:"count"`
	Paced   bool   `json:"paced,omitempty"`
	Pending bool   `json:"pending"`
	Results []int  `json:"results"`
	Done    bool   `json:"done"`
}

// NewClient returns the client app; it prints each result to out when live.
func NewClient(args ClientArgs, out io.Writer) *immortal.App[ClientState] {
	app := immortal.New(func() ClientState { return ClientState{Results: []int{}} }, immortal.WithInitArgs(args))
	call := func(ctx *immortal.Ctx, s *ClientState) error {
		s.Pending = true
		return ctx.Call(s.Server, "Inc", struct{}{}, "incResult", len(s.Results)+1)
	}
	app.OnFirstStart(func(ctx *immortal.Ctx, s *ClientState, raw []byte) error {
		var a ClientArgs
		if err := ctx.Unmarshal(raw, &a); err != nil {
			return err
		}
		if a.Server == "" {
			return errors.New("counter client: no server named (start it with --server NAME)")
		}
		s.Server, s.Count, s.Paced = a.Server, a.Count, a.Paced
		if s.Count == 0 {
			s.Done = true
			return nil
		}
		if s.Paced {
			return nil // the first "next" impulse makes the first call
		}
		return call(ctx, s)
	})
	// "next" is an impulse from Pace: make the next call unless one is
	// under way. Impulses are logged like any input and replayed, never
	// made again, so pacing does not break determinism.
	immortal.Handle(app, "next", func(ctx *immortal.Ctx, s *ClientState, _ struct{}) (struct{}, error) {
		if s.Pending || s.Done || s.Server == "" {
			return struct{}{}, nil
		}
		return struct{}{}, call(ctx, s)
	})
	immortal.HandleResult(app, "incResult", func(ctx *immortal.Ctx, s *ClientState, result int, callErr error, note []byte) error {
		if callErr != nil {
			return fmt.Errorf("Inc() failed at the server: %w", callErr)
		}
		s.Pending = false
		s.Results = append(s.Results, result)
		if !ctx.Replaying() && out != nil {
			fmt.Fprintf(out, "result %d: %d\n", len(s.Results), result)
		}
		if len(s.Results) < s.Count {
			if s.Paced {
				return nil
			}
			return call(ctx, s)
		}
		s.Done = true
		ctx.RequestCheckpoint()
		if !ctx.Replaying() && out != nil {
			fmt.Fprintf(out, "done: %d results\n", len(s.Results))
		}
		return nil
	})
	return app
}

// Pace sends the client a "next" impulse every interval while it waits to
// make its next call, until it is done or ctx ends.
func Pace(ctx context.Context, app *immortal.App[ClientState], every time.Duration) {
	immortal.Every(ctx, app, every, func(s ClientState) (string, any, bool) {
		if s.Done {
			return "", nil, true
		}
		if !s.Paced || s.Pending || s.Server == "" {
			return "", nil, false
		}
		return "next", struct{}{}, false
	})
}
