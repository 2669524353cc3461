// Command badupgrade carries a next version whose state conversion always
// fails: what `ambr upgrade test` must report, and exit 2 on.
package main

import (
	"errors"
	"os"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func main() {
	v1 := counter.NewServer(os.Stdout)
	v2 := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(v2, "Inc", func(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
		s.Count++
		return s.Count, nil
	})
	immortal.Upgrade(v1, v2, func(counter.ServerState) (counter.ServerState, error) {
		return counter.ServerState{}, errors.New("the new layout needs a field the old state does not have")
	})
	immortal.Main(v1)
}
