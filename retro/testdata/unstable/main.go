// Command unstable is a counter server candidate whose output varies
// between runs of the same build, the way map order or a goroutine race
// makes it vary: the first run started with $UNSTABLE_MARKER naming a file
// that does not exist yet (it creates it) answers as the counter does;
// every later run answers a thousand times more. A retro-test's first run
// matches the recorded history, its second run beside it does not.
package main

import (
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	first := true
	if path := os.Getenv("UNSTABLE_MARKER"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		first = err == nil
		if f != nil {
			f.Close()
		}
	}
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		s.Count++
		if first {
			return s.Count, nil
		}
		return s.Count * 1000, nil
	})
	immortal.Main(app)
}
