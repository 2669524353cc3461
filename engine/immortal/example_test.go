package immortal_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// Counter is the state of an immortal counter. Whatever the codec (JSON by
// default) keeps of it survives crashes.
type Counter struct {
	Total int `json:"total"`
	Adds  int `json:"adds"`
}

// A counter that survives crashes: every "add" is logged by the coordinator
// before it runs, and replayed after a crash.
func Example() {
	app := immortal.New(func() Counter { return Counter{} })
	immortal.Handle(app, "add", func(ctx *immortal.Ctx, s *Counter, n int) (int, error) {
		s.Total += n
		s.Adds++
		if !ctx.Replaying() { // print once, not again on replay
			fmt.Printf("total %d at %s\n", s.Total, ctx.Now().Format(time.RFC3339))
		}
		if s.Adds%1000 == 0 {
			ctx.RequestCheckpoint()
		}
		return s.Total, nil
	})
	// Input from outside the deterministic world is an impulse: here a
	// ticker. The source retries what was refused (before the app is
	// primary, while it replays).
	go func() {
		for range time.Tick(time.Second) {
			if err := app.Impulse("add", 1); err != nil && !errors.Is(err, immortal.ErrNotPrimary) {
				log.Print(err)
			}
		}
	}()
	immortal.Main(app) // connects to the coordinator named by the environment
}

// Shop is the state of an immortal shop.
type Shop struct {
	Orders map[string]string `json:"orders"`
}

// A call with a result: the result comes back later as a logged message of
// its own. What the caller needs then travels in the note, which is kept in
// the checkpointed state, so a call survives a crash of the caller.
func ExampleCtx_Call() {
	type order struct{ ID, Item string }
	app := immortal.New(func() Shop { return Shop{Orders: map[string]string{}} })
	immortal.Handle(app, "order", func(ctx *immortal.Ctx, s *Shop, o order) (struct{}, error) {
		s.Orders[o.ID] = "reserving"
		return struct{}{}, ctx.Call("stock", "reserve", o.Item, "reserved", o.ID)
	})
	immortal.HandleResult(app, "reserved", func(ctx *immortal.Ctx, s *Shop, ok bool, callErr error, note []byte) error {
		var id string
		if err := ctx.Unmarshal(note, &id); err != nil {
			return err
		}
		switch {
		case callErr != nil:
			s.Orders[id] = "failed: " + callErr.Error()
		case ok:
			s.Orders[id] = "reserved"
		default:
			s.Orders[id] = "out of stock"
		}
		return nil
	})
	immortal.Main(app)
}
