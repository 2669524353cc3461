// Command panicky is the counter server with a bug: its Inc() panics when
// the count would reach --panic-at, live and in every replay. The crash-loop
// scenario runs it to see ambr run stop, naming the record.
package main

import (
	"flag"
	"fmt"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	panicAt := flag.Int("panic-at", 3, "the count at which Inc panics")
	flag.Parse()
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		if s.Count+1 == *panicAt {
			panic(fmt.Sprintf("Inc: the count may not reach %d", *panicAt))
		}
		s.Count++
		return s.Count, nil
	})
	immortal.Main(app)
}
