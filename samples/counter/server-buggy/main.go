// Command server-buggy is a candidate build of the counter server with a
// bug: from its 50th Inc() on it returns the count plus 1000. It exists to
// show (and test) what `ambr retro-test` reports when a new build behaves
// differently from the recorded one.
package main

import (
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		s.Count++
		if s.Count >= 50 {
			return s.Count + 1000, nil // the bug
		}
		return s.Count, nil
	})
	immortal.Main(app)
}
