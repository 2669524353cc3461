// Command dropfield is a counter server whose next version keeps a second
// count (Total, of every Inc since the instance began) that its conversion
// forgets to carry over: every message it sends is right (Inc answers
// Value), only its state is wrong. `ambr upgrade test` must find it.
package main

import (
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

type stateV2 struct {
	Value  int `json:"value"`
	Total  int `json:"total"`
	Layout int `json:"layout"`
}

func main() {
	v1 := counter.NewServer(os.Stdout)
	v2 := immortal.New(func() stateV2 { return stateV2{Layout: 2} })
	immortal.Handle(v2, "Inc", func(ctx *immortal.Ctx, s *stateV2, _ struct{}) (int, error) {
		s.Value++
		s.Total++
		return s.Value, nil
	})
	immortal.Upgrade(v1, v2, func(s counter.ServerState) (stateV2, error) {
		return stateV2{Value: s.Count, Layout: 2}, nil // the bug: Total: s.Count is missing
	})
	immortal.Main(v1)
}
