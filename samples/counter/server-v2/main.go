// Command server-v2 is the counter server carrying its next version: it
// runs the current code (counter.NewServer, state {"count": n}) and, when
// the coordinator asks for the upgrade, converts the state to the new layout
// {"value": n, "layout": 2} and goes on with the new code, which behaves the
// same. `ambr upgrade test NAME --candidate ./samples/counter/server-v2`
// proves it can take over a recorded instance's state and history.
package main

import (
	"errors"
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// StateV2 is the new state layout.
type StateV2 struct {
	Value  int `json:"value"`
	Layout int `json:"layout"`
}

func main() {
	v1 := counter.NewServer(os.Stdout)
	v2 := immortal.New(func() StateV2 { return StateV2{Layout: 2} })
	immortal.Handle(v2, "Inc", func(ctx *immortal.Ctx, s *StateV2, _ struct{}) (int, error) {
		s.Value++
		return s.Value, nil
	})
	immortal.Upgrade(v1, v2, func(s counter.ServerState) (StateV2, error) {
		if s.Count < 0 {
			return StateV2{}, errors.New("a negative count cannot be converted")
		}
		return StateV2{Value: s.Count, Layout: 2}, nil
	})
	immortal.Main(v1)
}
