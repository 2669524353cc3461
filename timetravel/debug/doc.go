// Package debug runs a Go program under the Delve debugger from inside the
// ambr process: `ambr replay NAME --until P --debug [--break METHOD|FILE:LINE]`
// uses it to stop the app in the handler of the message at P. Delve is linked
// in as a library (github.com/go-delve/delve), so users need no `dlv` binary.
//
//	ambr process                                            the app
//	┌──────────────────────────────────────────────┐      ┌──────────────────┐
//	│ Session: Break…, Continue, Eval, Detach      │      │ built by         │
//	│    │ rpc2 client (JSON-RPC, API v2)          │      │ BuildDebug:      │
//	│    ▼                                         │      │ -gcflags=all=    │
//	│ headless server ──► Delve debugger ──────────┼─────►│ "-N -l"          │
//	│ (rpccommon)         (service/debugger)       │ptrace│                  │
//	│    ▲ 127.0.0.1:port = Session.Addr()         │      │ handlers on      │
//	└────┼─────────────────────────────────────────┘      │ conn goroutines  │
//	     └── `dlv connect ADDR`, VS Code, GoLand          └──────────────────┘
//
// Start launches the app stopped at its entry point and serves the debugger
// on a loopback port with the JSON-RPC API of `dlv --headless
// --accept-multiclient`. The Session is itself a client of that server, over
// the same port, so an editor attached to Addr sees what the Session does
// and the other way round: while ambr waits at a stop, a user can inspect
// the app with the whole dlv terminal, and a breakpoint set there stops the
// Session's Continue too. Only connections from the same Unix user are
// accepted.
//
// A breakpoint stops the whole app: every goroutine, including the ones that
// talk TCP to its peers, freezes until Continue, so peers may time out. A
// Stop reports the goroutine that hit the breakpoint (a handler runs on a
// connection goroutine, not the main one): its innermost frame's location,
// arguments and locals, closures' captured variables included. Eval
// evaluates expressions there.
//
// Functions are named as Delve names them: main.main, pkg.(*T).M; function
// literals by their enclosing function and their position in it,
// main.main.func1, main.main.func2, nested main.main.func1.1; generic code
// by GC shape, one function per shape, e.g.
// main.Handle[go.shape.struct { main.count int },go.shape.int].func1.
// BreakFunction also accepts friendlier names, the method name a handler is
// registered with among them; see there. BreakHandler finds a Go-binding
// handler by the name it was registered under however it was registered
// (a literal, a method value, under a constant): it stops where the
// binding calls the handler registered under that name and steps into it.
//
// Limits:
//   - Linux needs ptrace for the app (root in a container is fine; a seccomp
//     profile or Yama setting that forbids it is not).
//   - Delve starts the app with the debugger's environment and cannot be
//     given another one, so Start adds env to ambr's own environment for the
//     instant of the launch (serialised, then put back).
//   - Delve kills an app it launched when the Session ends; it cannot be
//     left running.
//   - On the func line of a function literal, where a breakpoint on it
//     stops, Delve 1.27 cannot read a captured variable of func type (it
//     shows as unreadable); other captured variables, the arguments, and
//     all of them from the next line on, read fine.
package debug
