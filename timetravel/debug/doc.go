// Package debug runs a Go program under the Delve debugger from inside the
// ambr process: `ambr replay NAME --until P --debug [--break METHOD|FILE:LINE]`
// uses it to stop the app in the handler of the message at P. Delve is linked
// in as a library (github.com/go-delve/delve), so users need no `dlv` binary.
//
//	ambr process                                        target (the app)
//	┌────────────────────────────────────────────┐     ┌────────────────────┐
//	│ Session ── rpc2 client ──┐                 │     │ built by BuildDebug│
//	│   Break… Continue Eval   │ JSON-RPC        │     │ (-N -l: every local│
//	│                          ▼                 │     │  variable readable)│
//	│   headless server (rpccommon, API v2) ─ Delve debugger ─ ptrace ─►│ │
//	│          ▲ 127.0.0.1:port = Session.Addr() │     │ handler goroutines │
//	└──────────┼─────────────────────────────────┘     └────────────────────┘
//	           └── `dlv connect ADDR`, VS Code / GoLand ("attach to remote")
//
// Start launches the executable stopped at its entry point and serves the
// debugger on a loopback port with the same JSON-RPC API a `dlv --headless`
// server has. The Session itself is one client of that server, over the same
// port, so whatever it does an editor attached to Addr sees, and the other
// way round: a user can inspect the stopped app with the full dlv terminal
// while ambr waits. The server accepts several clients (like
// `--accept-multiclient`) and only connections from the same Unix user.
//
// Breakpoints stop the whole process: every goroutine of the app, including
// the ones that talk TCP to its peers, freezes until Continue. A Stop reports
// the goroutine that hit the breakpoint (the app's handlers run on
// connection goroutines, not the main one) with the arguments and locals of
// its innermost frame; Eval evaluates expressions there.
//
// Functions are named as Delve names them: main.main, pkg.(*T).M, closures
// main.main.func1 (numbered in source order within the enclosing function,
// nested ones main.main.func1.1), generic instantiations by GC shape, e.g.
// main.Handle[go.shape.int,go.shape.string].func1. BreakFunction accepts
// friendlier names; see there for the matching rules.
//
// Limits: Linux needs ptrace (root in a container is fine; a seccomp profile
// that forbids ptrace is not); the environment of the target is set by
// changing ambr's own environment for the instant of the launch, because
// Delve starts the target with the debugger's environment; a target Delve
// launched is always killed when the Session ends.
package debug
