// Command panicconvert is a counter server whose next version crashes while
// converting the state, before its checkpoint: a failed live upgrade.
package main

import (
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

type stateV2 struct {
	Value int `json:"value"`
}

func main() {
	v1 := counter.NewServer(os.Stdout)
	v2 := immortal.New(func() stateV2 { return stateV2{} })
	immortal.Handle(v2, "Inc", func(ctx *immortal.Ctx, s *stateV2, _ struct{}) (int, error) { s.Value++; return s.Value, nil })
	immortal.Upgrade(v1, v2, func(s counter.ServerState) (stateV2, error) {
		var counts []int
		return stateV2{Value: counts[s.Count]}, nil // index out of range: a crash
	})
	immortal.Main(v1)
}
