// Command badconvert is a counter server whose next version cannot convert
// the state: a failed live upgrade, for the tests.
package main

import (
	"errors"
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
	immortal.Upgrade(v1, v2, func(counter.ServerState) (stateV2, error) {
		return stateV2{}, errors.New("this version cannot convert the count")
	})
	immortal.Main(v1)
}
