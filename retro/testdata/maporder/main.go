// Command maporder is a counter server that, on every Inc, tells its
// caller about a few named counters by iterating over a map. Built with
// -ldflags "-X main.sorted=yes" it sorts the names first (deterministic);
// built without, it sends them in Go's random map order: a candidate whose
// messages depend on map iteration order.
package main

import (
	"sort"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

var sorted string

func main() {
	names := map[string]int{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8}
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		s.Count++
		keys := make([]string, 0, len(names))
		for k := range names {
			keys = append(keys, k)
		}
		if sorted == "yes" {
			sort.Strings(keys)
		}
		// Go may happen to iterate a small map in sorted order (one start
		// offset in eight): iterate again until it does not, so the random
		// build differs from the sorted one at its first Inc, every time.
		for sorted != "yes" && sort.StringsAreSorted(keys) {
			keys = keys[:0]
			for k := range names {
				keys = append(keys, k)
			}
		}
		for _, k := range keys {
			if err := ctx.Fork("client", "note", k); err != nil {
				return 0, err
			}
		}
		return s.Count, nil
	})
	immortal.Main(app)
}
