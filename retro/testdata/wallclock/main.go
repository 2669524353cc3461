// Command wallclock is a counter server candidate with a classic bug for
// replay: its Inc handler reads the wall clock, so what it returns depends
// on when it runs, not on its input.
package main

import (
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		s.Count++
		return s.Count + int(time.Now().UnixNano()%1000+1), nil // never the count alone
	})
	immortal.Main(app)
}
