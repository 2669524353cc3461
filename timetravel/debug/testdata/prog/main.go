// Command prog is the program the timetravel/debug tests run under the
// debugger. It is shaped like an immortal app: handlers are closures
// registered by method name through a generic function, and they run on a
// connection goroutine of a TCP server, never on the main goroutine.
//
// main dials its own server and sends "Inc 1", "Inc 2", "Inc 3"; each
// request goes through the generic wrapper, the "Inc" handler and the
// handle closure, which adds n to state.count and returns the new count.
// With -hang it does not exit after that.
//
// The lines marked "// break:NAME" are where the tests expect to stop: a
// breakpoint on a closure stops on the line of its func keyword, where
// Delve puts the end of its prologue.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

type state struct {
	count int
	name  string
}

// Ctx is what a handler learns about the request it serves.
type Ctx struct {
	Method string
	Seq    int
}

// App holds the handlers of one kind of state, like immortal.App.
type App[S any] struct {
	state    S
	handlers map[string]func(ctx *Ctx, s *S, payload string) (string, error)
}

// Handle registers fn as the handler of method, like immortal.Handle: the
// stored wrapper is a closure of a generic function.
func Handle[S, A, R any](app *App[S], method string, fn func(ctx *Ctx, s *S, args A) (R, error)) {
	app.handlers[method] = func(ctx *Ctx, s *S, payload string) (string, error) {
		var args A
		if err := json.Unmarshal([]byte(payload), &args); err != nil {
			return "", fmt.Errorf("%s: decode arguments: %w", method, err)
		}
		r, err := fn(ctx, s, args) // break:generic
		if err != nil {
			return "", err
		}
		b, err := json.Marshal(r)
		return string(b), err
	}
}

func main() {
	app := &App[state]{state: state{name: "counter"}, handlers: map[string]func(*Ctx, *state, string) (string, error){}}
	calls := 0
	handle := func(n int, s *state) int { // break:handle
		s.count += n
		calls++
		return s.count
	}
	Handle(app, "Inc", func(ctx *Ctx, s *state, n int) (int, error) { // break:Inc
		seq := ctx.Seq
		_ = seq
		return handle(n, s), nil
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "prog:", err)
		os.Exit(2)
	}
	done := make(chan struct{})
	go serve(ln, app, done)

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fmt.Fprintln(os.Stderr, "prog:", err)
		os.Exit(2)
	}
	replies := bufio.NewScanner(conn)
	for n := 1; n <= 3; n++ {
		fmt.Fprintf(conn, "Inc %d\n", n)
		if !replies.Scan() {
			fmt.Fprintln(os.Stderr, "prog: no reply")
			os.Exit(2)
		}
		fmt.Printf("Inc %d -> %s\n", n, replies.Text())
	}
	conn.Close()
	<-done
	fmt.Printf("count=%d calls=%d %s\n", app.state.count, calls, os.Getenv("PROG_GREETING"))
	if len(os.Args) > 1 && os.Args[1] == "-hang" {
		for {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// serve answers the requests of the first connection on ln, one line
// "METHOD PAYLOAD" at a time, on its own goroutine.
func serve(ln net.Listener, app *App[state], done chan<- struct{}) {
	defer close(done)
	conn, err := ln.Accept()
	if err != nil {
		return
	}
	defer conn.Close()
	requests := bufio.NewScanner(conn)
	for seq := 1; requests.Scan(); seq++ {
		method, payload, _ := strings.Cut(requests.Text(), " ")
		h := app.handlers[method]
		if h == nil {
			fmt.Fprintf(conn, "error: no method %s\n", method)
			continue
		}
		reply, err := h(&Ctx{Method: method, Seq: seq}, &app.state, payload)
		if err != nil {
			reply = "error: " + err.Error()
		}
		fmt.Fprintln(conn, reply)
	}
}
