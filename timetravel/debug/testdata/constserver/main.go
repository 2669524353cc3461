// Command constserver is the counter server with its handler registered
// the way larger apps register theirs: under a constant, as a method
// value, so that no source line ties the name "Inc" to the function.
// `ambr replay --debug --break Inc` must still stop in (*server).inc.
package main

import (
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// MethodInc is the method's name, as an API package would export it.
const MethodInc = "Inc"

type server struct{ calls int }

func (sv *server) inc(ctx *immortal.Ctx, s *counter.ServerState, _ struct{}) (int, error) {
	sv.calls++
	s.Count++
	return s.Count, nil
}

func main() {
	sv := &server{}
	app := immortal.New(func() counter.ServerState { return counter.ServerState{} })
	immortal.Handle(app, MethodInc, sv.inc)
	immortal.Main(app)
}
