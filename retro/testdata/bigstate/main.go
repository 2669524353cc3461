// Command bigstate is the counter server with about 1 MiB of state: the
// retro-test benchmark's app whose state is large while each record
// changes little of it (one 1 KiB slot per Inc). It answers Inc as the
// counter server does, so it replays the counter's synthetic log.
package main

import (
	"fmt"
	"strings"

	"github.com/ambr-dev/ambr/engine/immortal"
)

const slots, slotSize = 1024, 1024

type state struct {
	Count   int      `json:"count"`
	Ballast []string `json:"ballast,omitempty"`
}

func main() {
	app := immortal.New(func() state { return state{} })
	immortal.Handle(app, "Inc", func(ctx *immortal.Ctx, s *state, _ struct{}) (int, error) {
		if len(s.Ballast) == 0 {
			s.Ballast = make([]string, slots)
			for i := range s.Ballast {
				s.Ballast[i] = strings.Repeat("x", slotSize)
			}
		}
		s.Count++
		slot := fmt.Sprintf("%08d", s.Count)
		s.Ballast[s.Count%slots] = slot + strings.Repeat("y", slotSize-len(slot))
		return s.Count, nil
	})
	immortal.Main(app)
}
