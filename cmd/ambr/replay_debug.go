package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/timetravel"
	"github.com/ambr-dev/ambr/timetravel/debug"
)

// debugProcess adapts a Delve session to timetravel.Process.
type debugProcess struct {
	s    *debug.Session
	done chan struct{}
	once sync.Once
}

func (p *debugProcess) exited() { p.once.Do(func() { close(p.done) }) }
func (p *debugProcess) Wait() error {
	<-p.done
	return nil
}
func (p *debugProcess) Kill() error {
	err := p.s.Detach(true)
	p.exited()
	return err
}

// debugResult is the JSON form of `ambr replay --debug`.
type debugResult struct {
	Seq       int64       `json:"seq"`
	Record    string      `json:"record"`
	Break     string      `json:"break"`
	Function  string      `json:"function"`
	File      string      `json:"file"`
	Line      int         `json:"line"`
	Goroutine int         `json:"goroutine"`
	Args      []debug.Var `json:"args"`
	Locals    []debug.Var `json:"locals"`
	// Addr is where a debugger attaches, while --wait keeps the session.
	Addr string `json:"addr,omitempty"`
}

// debugPackage finds the Go package to build with debug information.
func debugPackage(in *layout.Instance, app string) (string, error) {
	for _, cand := range []string{app, in.Manifest.App.Source} {
		if cand == "" {
			continue
		}
		if st, err := os.Stat(cand); err == nil && st.IsDir() {
			return cand, nil
		}
	}
	return "", usageErrorf("--debug builds the app from its Go source, but the recorded source %q is not a package directory here; run from the app's repository or pass --app ./path/to/package", in.Manifest.App.Source)
}

// recordRPCs lists the Go-binding RPCs of a record: method names of calls,
// forks and impulses, and whether it holds results.
func recordRPCs(rec *logfmt.Record) (methods []string, results bool) {
	it := logfmt.NewMessageIter(rec.Messages)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		if m.Type != logfmt.TypeRPC {
			continue
		}
		r, err := logfmt.ParseRPC(m.Data)
		if err != nil {
			continue
		}
		if name, result, _, ok := immortal.DecodeArgs(r.Args, r.Reserved); ok {
			if result {
				results = true
			} else if name != "" {
				methods = append(methods, name)
			}
		}
	}
	return methods, results
}

// setDebugBreak sets the breakpoint for record rec: spec as --break gives
// it, or by default the handler of the record's first message. A method
// the record calls, and a result handler of a record with results, are
// found through the binding however they were registered (see
// debug.Session.BreakHandler); other names as Delve's locations.
func setDebugBreak(dbg *debug.Session, rec *logfmt.Record, spec string) (string, error) {
	methods, results := recordRPCs(rec)
	switch {
	case spec == "" && len(methods) > 0:
		_, err := dbg.BreakHandler(debug.MethodHandler, methods[0])
		return "the handler of " + methods[0], err
	case spec == "" && results:
		_, err := dbg.BreakHandler(debug.ResultHandler, "")
		return "the result handler", err
	case spec == "":
		return "", usageErrorf("record %d holds no call, impulse or result of a Go-binding method to stop in (%s); name a place with --break FILE:LINE", rec.Seq, summarizeRecord(rec))
	case slices.Contains(methods, spec):
		_, err := dbg.BreakHandler(debug.MethodHandler, spec)
		return "the handler of " + spec, err
	case results && !strings.ContainsAny(spec, ".:/()"):
		_, err := dbg.BreakHandler(debug.ResultHandler, spec)
		return "the result handler " + spec, err
	}
	_, err := dbg.Break(spec)
	return spec, err
}

// userView shortens what Delve prints for people: package paths go
// (*github.com/x/app/bank.Account → *bank.Account).
var packagePath = regexp.MustCompile(`(?:[A-Za-z0-9_.~-]+/)+([A-Za-z0-9_]+\.)`)

func userView(s string) string { return packagePath.ReplaceAllString(s, "$1") }

// userVars drops the binding's own arguments (the *immortal.Ctx every
// handler gets) from what a stop shows.
func userVars(vs []debug.Var) []debug.Var {
	var out []debug.Var
	for _, v := range vs {
		if strings.HasSuffix(v.Type, "engine/immortal.Ctx") || strings.HasPrefix(v.Name, "~") { // the binding's; unnamed (_) arguments
			continue
		}
		out = append(out, debug.Var{Name: v.Name, Type: userView(v.Type), Value: userView(v.Value)})
	}
	return out
}

// runReplayDebug replays up to the record before seq under Delve, sets the
// breakpoint, delivers record seq and reports where the handler stopped.
func runReplayDebug(ctx context.Context, g *globals, in *layout.Instance, seq int64, o replayOptions) error {
	if seq < 1 {
		return usageErrorf("--debug stops in the handler of a record; the point names the initial state, before record 1")
	}
	pkg, err := debugPackage(in, o.app)
	if err != nil {
		return err
	}
	exe := filepath.Join(g.Home(), ".bin", "debug-"+in.Manifest.Instance)
	if err := os.MkdirAll(filepath.Dir(exe), 0o755); err != nil {
		return problemErrorf("%v", err)
	}
	fmt.Fprintf(g.stderr, "building %s with debug information …\n", pkg)
	if err := debug.BuildDebug(ctx, pkg, exe); err != nil {
		return problemErrorf("%v", err)
	}
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var (
		dbg       *debug.Session
		proc      *debugProcess
		freeRun   = make(chan error, 1) // the target running freely until halted
		freeHalt  context.CancelFunc
		appOutput io.Writer
	)
	if o.appOutput {
		appOutput = g.stderr
	}
	launch := func(lctx context.Context, exe string, env []string, stdout, stderr io.Writer) (timetravel.Process, error) {
		s, err := debug.Start(runCtx, exe, nil, env, appOutput, appOutput)
		if err != nil {
			return nil, err
		}
		dbg, proc = s, &debugProcess{s: s, done: make(chan struct{})}
		var hctx context.Context
		hctx, freeHalt = context.WithCancel(runCtx)
		go func() {
			stop, err := s.ContinueContext(hctx)
			if stop != nil && stop.Exited {
				proc.exited()
			}
			freeRun <- err
		}()
		return proc, nil
	}
	sess, err := timetravel.Open(timetravel.Options{Dir: in.Dir, App: exe, Launch: launch, FromCheckpoint: o.fromCheckpoint})
	if err != nil {
		return problemErrorf("%v", err)
	}
	defer sess.Close()
	if _, err := sess.Goto(ctx, seq-1); err != nil {
		return problemErrorf("replay to record %d: %v", seq-1, err)
	}
	// Halt the target, set the breakpoint, let it run, deliver record seq.
	freeHalt()
	<-freeRun
	rec, err := timetravel.RecordAt(in, seq)
	if err != nil {
		return problemErrorf("%v", err)
	}
	spec, err := setDebugBreak(dbg, rec, o.breakAt)
	if err != nil {
		if _, ok := err.(*exitError); ok {
			return err
		}
		return usageErrorf("--break %s: %v", orDefault(o.breakAt, spec), err)
	}
	stopped := make(chan struct {
		stop *debug.Stop
		err  error
	}, 1)
	go func() {
		s, err := dbg.Continue()
		stopped <- struct {
			stop *debug.Stop
			err  error
		}{s, err}
	}()
	if _, err := sess.Deliver(ctx); err != nil {
		return problemErrorf("deliver record %d: %v", seq, err)
	}
	var stop *debug.Stop
	select {
	case r := <-stopped:
		if r.err != nil {
			return problemErrorf("%v", r.err)
		}
		stop = r.stop
	case <-time.After(60 * time.Second):
		return problemErrorf("record %d was delivered but the app did not stop at %s within 60 s: does its handler run there?", seq, spec)
	case <-ctx.Done():
		return usageErrorf("interrupted")
	}
	if stop.Exited {
		return problemErrorf("the app exited (status %d) before reaching %s", stop.ExitStatus, spec)
	}
	res := debugResult{Seq: seq, Record: summarizeRecord(rec), Break: spec, Function: stop.Function, File: stop.File, Line: stop.Line,
		Goroutine: stop.Goroutine, Args: stop.Args, Locals: stop.Locals}
	if o.wait { // without --wait the session ends with this command: no address to give
		res.Addr = dbg.Addr()
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(g.stdout, "stopped at %s:%d in %s (goroutine %d), handling record %d: %s\n", stop.File, stop.Line, userView(stop.Function), stop.Goroutine, seq, res.Record)
		fmt.Fprintln(g.stdout, "arguments:")
		for _, v := range userVars(stop.Args) {
			fmt.Fprintf(g.stdout, "  %s %s = %s\n", v.Name, v.Type, v.Value)
		}
		if locals := userVars(stop.Locals); len(locals) > 0 {
			fmt.Fprintln(g.stdout, "locals:")
			for _, v := range locals {
				fmt.Fprintf(g.stdout, "  %s %s = %s\n", v.Name, v.Type, v.Value)
			}
		}
		if o.wait {
			fmt.Fprintf(g.stdout, "debugger: dlv connect %s (or attach an editor to it)\n", dbg.Addr())
		}
	}
	if o.wait {
		fmt.Fprintln(g.stderr, "the app stays stopped for a debugger to attach; Ctrl-C ends the session")
		<-ctx.Done()
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func summarizeRecord(rec *logfmt.Record) string {
	var parts []string
	it := logfmt.NewMessageIter(rec.Messages)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		desc := m.Type.String()
		if m.Type == logfmt.TypeRPC {
			if r, err := logfmt.ParseRPC(m.Data); err == nil {
				if name, result, payload, ok := immortal.DecodeArgs(r.Args, r.Reserved); ok {
					if result {
						name = "result"
					}
					desc = fmt.Sprintf("%s(%s)", name, payload)
				}
			}
		}
		parts = append(parts, desc)
	}
	return fmt.Sprint(parts)
}
