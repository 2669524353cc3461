// Command slowconvert is server-v2 whose conversion takes 3 seconds: a
// live upgrade that is still converting when a test kills its upgrader.
package main

import (
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// StateV2 is server-v2's state layout.
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
		time.Sleep(3 * time.Second)
		return StateV2{Value: s.Count, Layout: 2}, nil
	})
	immortal.Main(v1)
}
