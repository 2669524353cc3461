package debug

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-delve/delve/pkg/proc"
	"github.com/go-delve/delve/service"
	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/debugger"
	"github.com/go-delve/delve/service/rpc2"
	"github.com/go-delve/delve/service/rpccommon"
)

// loadConfig is how much of a variable a Stop or Eval reads (see Var).
var loadConfig = api.LoadConfig{
	FollowPointers:     true,
	MaxVariableRecurse: 2,
	MaxStringLen:       256,
	MaxArrayValues:     64,
	MaxStructFields:    -1,
}

// outputDrainTimeout bounds how long Detach waits for the target's output
// to be copied after the target is gone; a child process of the target that
// inherited its stdout could otherwise keep the pipe open forever.
const outputDrainTimeout = 2 * time.Second

// Session is a target program running under the debugger, together with
// the headless server that exposes the debugger at Addr. Its methods may be
// called from several goroutines; Detach may interrupt a running Continue.
type Session struct {
	server *rpccommon.ServerImpl
	client *rpc2.RPCClient
	addr   string
	pid    int
	code   userCode

	outputs    []*os.File // read ends of the target's stdout and stderr pipes
	outputDone sync.WaitGroup

	mu        sync.Mutex
	stopCtx   func() bool // unregisters the context.AfterFunc of Start
	goroutine int64       // goroutine of the last Stop; -1: the current thread's
	running   bool        // a Continue is under way
	detached  bool
	bpFuncs   map[int][]string // breakpoint ID → the functions it was set in
	stepIn    map[int]bool     // breakpoints of BreakHandler: step into the handler

	detachOnce sync.Once
	detachErr  error
}

// Stop is where the target stopped.
type Stop struct {
	// Exited is true if the target exited (ExitStatus is its status); the
	// other fields are then empty.
	Exited     bool
	ExitStatus int

	// File, Line and Function are the location of the stopped goroutine's
	// innermost frame; Function as Delve names it (see the package doc).
	File     string
	Line     int
	Function string
	// Breakpoint is the ID of the breakpoint that was hit, 0 if none (the
	// target was halted).
	Breakpoint int
	// Goroutine is the ID of the goroutine that stopped, 0 if the thread
	// that stopped was not running one.
	Goroutine int
	// Args and Locals are the arguments (with named results; unnamed ones,
	// ~r0, ~r1…, are left out: Eval reads them) and the local variables
	// visible at Line in the innermost frame, in Delve's order. Variables
	// captured by a closure are among its locals.
	Args, Locals []Var
}

// Var is a variable or the value of an expression.
type Var struct {
	Name string
	// Type is the Go type as Delve prints it, e.g. "*main.state".
	Type string
	// Value is the value as Delve's `print` shows it on one line, e.g.
	// `*main.state {count: 1, name: "counter"}`; a value that cannot be read
	// shows the reason, e.g. "(unreadable …)". Pointers are followed; nested
	// values are read two levels deep, strings up to 256 bytes, slices,
	// arrays and maps up to 64 elements, and what is left out shows as
	// "...", "(more)" or "+N more".
	Value string
}

// Start launches the executable exe (built with debug information; see
// BuildDebug) with args under the debugger, stopped at its entry point, and
// serves the debugger on a loopback TCP port (Addr) that `dlv connect` and
// editors can attach to. env entries ("KEY=VALUE") are added to the target's
// environment, which is otherwise ambr's own. The target's stdout and stderr
// go to the given writers (nil: discarded); stdin is the null device.
//
// As with exec.CommandContext, when ctx is done the session is detached and
// the target killed; ctx must therefore live as long as the session.
func Start(ctx context.Context, exe string, args, env []string, stdout, stderr io.Writer) (_ *Session, err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}
	path, err := filepath.Abs(exe)
	if err != nil {
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}
	if err := checkEnv(env); err != nil {
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}

	s := &Session{goroutine: -1, code: readUserCode(path)}
	// Until Delve has them, the files for the target's output are ours to
	// close.
	var handed []*os.File
	fail := func(err error) (*Session, error) {
		for _, f := range handed {
			f.Close()
		}
		s.closeOutputs()
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}
	stdoutRedirect, err := s.redirect(stdout)
	if err != nil {
		return fail(fmt.Errorf("stdout: %w", err))
	}
	handed = append(handed, stdoutRedirect.File)
	stderrRedirect, err := s.redirect(stderr)
	if err != nil {
		return fail(fmt.Errorf("stderr: %w", err))
	}
	handed = append(handed, stderrRedirect.File)

	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(fmt.Errorf("headless server: %w", err))
	}
	ln := &acceptListener{Listener: tcp}
	s.addr = tcp.Addr().String()
	s.server = rpccommon.NewServer(&service.Config{
		Listener:           ln,
		ProcessArgs:        append([]string{path}, args...),
		AcceptMulti:        true,
		APIVersion:         2,
		CheckLocalConnUser: true,
		Debugger: debugger.Config{
			Backend:        "default",
			CheckGoVersion: true,
			ExecuteKind:    debugger.ExecutingExistingFile,
			Stdout:         stdoutRedirect,
			Stderr:         stderrRedirect,
		},
	})
	// Run launches the target, which closes the output files once the
	// target has them (closing them again is harmless), and starts serving.
	if err := withEnv(env, s.server.Run); err != nil {
		ln.Close()
		return fail(err)
	}
	defer func() {
		if err != nil {
			s.Detach(true)
		}
	}()

	conn, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	if err != nil {
		return nil, fmt.Errorf("debug: start %s: connect to headless server: %w", exe, err)
	}
	s.client = rpc2.NewClientFromConn(conn)
	state, err := s.client.GetState()
	if err != nil {
		return nil, fmt.Errorf("debug: start %s: %w", exe, err)
	}
	s.pid = state.Pid
	s.mu.Lock() // the AfterFunc may run at once
	s.stopCtx = context.AfterFunc(ctx, func() { s.Detach(true) })
	s.mu.Unlock()
	return s, nil
}

// redirect returns where Delve should send one of the target's output
// streams: the write end of a pipe copied to w, or the null device.
func (s *Session) redirect(w io.Writer) (proc.OutputRedirect, error) {
	if w == nil {
		f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		return proc.OutputRedirect{File: f}, err
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return proc.OutputRedirect{}, err
	}
	s.outputs = append(s.outputs, r)
	s.outputDone.Add(1)
	go func() {
		defer s.outputDone.Done()
		_, _ = io.Copy(w, r) // the target's output is best effort
	}()
	return proc.OutputRedirect{File: pw}, nil
}

// closeOutputs stops copying the target's output: at once if the target is
// gone and the pipes are drained, else after outputDrainTimeout.
func (s *Session) closeOutputs() {
	done := make(chan struct{})
	go func() {
		s.outputDone.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(outputDrainTimeout):
	}
	for _, r := range s.outputs {
		r.Close()
	}
	<-done
}

// Addr is the address of the headless JSON-RPC server (API v2), as in
// `dlv connect ADDR`.
func (s *Session) Addr() string { return s.addr }

// Pid is the process ID of the target.
func (s *Session) Pid() int { return s.pid }

// Client is the Session's own connection to the headless server, for what
// this package does not wrap (stepping, stack traces, goroutine lists).
// Calls through it change what Session reports (e.g. the selected
// goroutine) and the other way round.
func (s *Session) Client() service.Client { return s.client }

// Continue resumes the target until a breakpoint is hit or the target
// exits, and reports where it stopped.
func (s *Session) Continue() (*Stop, error) {
	return s.ContinueContext(context.Background())
}

// ContinueContext is Continue that halts the target when ctx is done; it
// then returns where the target was halted together with an error that
// wraps ctx.Err().
func (s *Session) ContinueContext(ctx context.Context) (*Stop, error) {
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("debug: continue: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("debug: continue: %w", err)
	}
	s.setRunning(true)
	halt := context.AfterFunc(ctx, func() {
		// A halt request while the target is stopped would stop the next
		// Continue at once.
		s.mu.Lock()
		running := s.running
		s.mu.Unlock()
		if running {
			s.client.Halt()
		}
	})
	var last *api.DebuggerState
	for state := range s.client.Continue() {
		last = state
	}
	s.setRunning(false)
	halted := !halt() && ctx.Err() != nil
	if err := s.usable(); err != nil { // Detach halted the target
		return nil, fmt.Errorf("debug: continue: %w", err)
	}
	if last == nil {
		return nil, errors.New("debug: continue: no state from the debugger")
	}
	if last.Err != nil && !last.Exited {
		return nil, fmt.Errorf("debug: continue: %w", last.Err)
	}
	if th := last.CurrentThread; !halted && !last.Exited && th != nil && th.Breakpoint != nil {
		s.mu.Lock()
		step := s.stepIn[th.Breakpoint.ID]
		s.mu.Unlock()
		if step {
			bp := th.Breakpoint
			state, err := s.stepIntoHandler()
			if err != nil {
				return nil, fmt.Errorf("debug: continue: step into the handler: %w", err)
			}
			if state.CurrentThread != nil && state.CurrentThread.Breakpoint == nil {
				state.CurrentThread.Breakpoint = bp // stopped because of it
			}
			last = state
		}
	}
	stop, err := s.stop(last)
	if err != nil {
		return nil, fmt.Errorf("debug: continue: %w", err)
	}
	if halted {
		return stop, fmt.Errorf("debug: continue: halted: %w", ctx.Err())
	}
	return stop, nil
}

// stop turns the debugger's state into a Stop, reading arguments and
// locals of the stopped goroutine's innermost frame.
func (s *Session) stop(state *api.DebuggerState) (*Stop, error) {
	if state.Exited {
		s.setGoroutine(-1)
		return &Stop{Exited: true, ExitStatus: state.ExitStatus}, nil
	}
	th := state.CurrentThread
	if th == nil {
		return nil, errors.New("no current thread")
	}
	stop := &Stop{
		File:      th.File,
		Line:      th.Line,
		Goroutine: int(th.GoroutineID),
	}
	if th.Function != nil {
		stop.Function = th.Function.Name()
	}
	if th.Breakpoint != nil {
		stop.Breakpoint = th.Breakpoint.ID
	}
	gid := th.GoroutineID
	if gid == 0 {
		gid = -1
	}
	s.setGoroutine(gid)

	scope := api.EvalScope{GoroutineID: gid}
	args, err := s.client.ListFunctionArgs(scope, loadConfig)
	if err == nil {
		// Unnamed results hold garbage until the function returns.
		args = slices.DeleteFunc(args, func(v api.Variable) bool {
			return v.Flags&api.VariableReturnArgument != 0 && strings.HasPrefix(v.Name, "~")
		})
		stop.Args = vars(args)
		var locals []api.Variable
		locals, err = s.client.ListLocalVariables(scope, loadConfig)
		stop.Locals = vars(locals)
	}
	// Where the target was halted (in the runtime, say) there may be no
	// variables to read; that is only a failure at a breakpoint.
	if err != nil && stop.Breakpoint != 0 {
		return nil, fmt.Errorf("read variables at %s:%d: %w", stop.File, stop.Line, err)
	}
	return stop, nil
}

func vars(vs []api.Variable) []Var {
	if len(vs) == 0 {
		return nil
	}
	out := make([]Var, len(vs))
	for i := range vs {
		out[i] = toVar(&vs[i])
	}
	return out
}

func toVar(v *api.Variable) Var {
	return Var{Name: v.Name, Type: v.Type, Value: v.SinglelineString()}
}

func (s *Session) setRunning(running bool) {
	s.mu.Lock()
	s.running = running
	s.mu.Unlock()
}

func (s *Session) setGoroutine(gid int64) {
	s.mu.Lock()
	s.goroutine = gid
	s.mu.Unlock()
}

// Eval evaluates expr, a Go expression as Delve's `print` takes it, in the
// innermost frame of the goroutine of the last Stop (before the first
// Continue: of the current thread).
func (s *Session) Eval(expr string) (Var, error) {
	if err := s.usable(); err != nil {
		return Var{}, fmt.Errorf("debug: eval %q: %w", expr, err)
	}
	s.mu.Lock()
	gid := s.goroutine
	s.mu.Unlock()
	v, err := s.client.EvalVariable(api.EvalScope{GoroutineID: gid}, expr, loadConfig)
	if err != nil {
		return Var{}, fmt.Errorf("debug: eval %q: %w", expr, err)
	}
	out := toVar(v)
	out.Name = expr
	return out, nil
}

var errDetached = errors.New("session detached")

func (s *Session) usable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.detached {
		return errDetached
	}
	return nil
}

// Detach ends the session: it halts the target if it is running, kills it
// (Delve always kills a process it launched, so kill=false is the same as
// kill=true), closes the headless server and waits for the target's output
// to be copied. Clients attached to Addr lose their debugger. Detach may be
// called more than once and from any goroutine; later calls return the
// first call's result.
func (s *Session) Detach(kill bool) error {
	s.detachOnce.Do(func() {
		s.mu.Lock()
		s.detached = true
		stopCtx := s.stopCtx
		s.mu.Unlock()
		if stopCtx != nil {
			stopCtx()
		}
		// Stop halts a running target, detaches from it, killing it (forced
		// for a launched target), and closes the listener.
		if err := s.server.Stop(); err != nil {
			s.detachErr = fmt.Errorf("debug: detach: %w", err)
		}
		if s.client != nil {
			s.client.Disconnect(false)
		}
		s.closeOutputs()
	})
	return s.detachErr
}
