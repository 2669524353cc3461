package debug

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-delve/delve/service/api"
	"github.com/go-delve/delve/service/rpc2"
	"go.uber.org/goleak"
)

// progExe is testdata/prog built by TestMain with BuildDebug.
var progExe string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ambr-debug-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	progExe = filepath.Join(dir, "prog")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	err = BuildDebug(ctx, filepath.Join("testdata", "prog"), progExe)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// progLines maps the NAME of each "// break:NAME" marker in the test
// program to its line.
var progLines = sync.OnceValue(func() map[string]int {
	f, err := os.Open(filepath.Join("testdata", "prog", "main.go"))
	if err != nil {
		panic(err)
	}
	defer f.Close()
	marker := regexp.MustCompile(`// break:(\w+)`)
	lines := map[string]int{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		if m := marker.FindStringSubmatch(sc.Text()); m != nil {
			lines[m[1]] = n
		}
	}
	return lines
})

// syncBuffer is a bytes.Buffer the target's output can be copied to while
// the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs the test program under the debugger, skipping the test if
// the environment does not allow debugging, and detaches at the end of the
// test, checking that the target is gone and no goroutine leaked.
func start(t *testing.T, ctx context.Context, args, env []string, stdout *syncBuffer) *Session {
	t.Helper()
	if stdout == nil {
		stdout = &syncBuffer{}
	}
	var stderr syncBuffer
	s, err := Start(ctx, progExe, args, env, stdout, &stderr)
	if err != nil {
		if strings.Contains(err.Error(), "operation not permitted") {
			t.Skipf("the debugger cannot trace processes here (ptrace denied, e.g. by seccomp or kernel.yama.ptrace_scope=3): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Detach(true); err != nil {
			t.Errorf("Detach: %v", err)
		}
		if alive(s.Pid()) {
			t.Errorf("target %d still alive after Detach", s.Pid())
		}
		if t.Failed() {
			t.Logf("target stdout:\n%s\ntarget stderr:\n%s", stdout, &stderr)
		}
		goleak.VerifyNone(t)
	})
	return s
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …
	fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// cont is Continue with a deadline, so that a test never hangs.
func cont(t *testing.T, s *Session) *Stop {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stop, err := s.ContinueContext(ctx)
	if err != nil {
		t.Fatalf("Continue: %v", err)
	}
	return stop
}

func eval(t *testing.T, s *Session, expr string) string {
	t.Helper()
	v, err := s.Eval(expr)
	if err != nil {
		t.Fatalf("Eval(%q): %v", expr, err)
	}
	return v.Value
}

func varValue(vs []Var, name string) (string, bool) {
	for _, v := range vs {
		if v.Name == name {
			return v.Value, true
		}
	}
	return "", false
}

func wantVar(t *testing.T, what string, vs []Var, name, want string) {
	t.Helper()
	got, ok := varValue(vs, name)
	if !ok {
		t.Errorf("%s: no %s in %+v", what, name, vs)
	} else if got != want {
		t.Errorf("%s: %s = %s, want %s", what, name, got, want)
	}
}

func wantAt(t *testing.T, stop *Stop, marker string, bp int) {
	t.Helper()
	if stop.Exited {
		t.Fatalf("target exited with status %d, want a stop at %s", stop.ExitStatus, marker)
	}
	if stop.Line != progLines()[marker] || !strings.HasSuffix(stop.File, "testdata/prog/main.go") {
		t.Errorf("stopped at %s:%d in %s, want main.go:%d (%s)", stop.File, stop.Line, stop.Function, progLines()[marker], marker)
	}
	if stop.Breakpoint != bp {
		t.Errorf("stopped by breakpoint %d, want %d", stop.Breakpoint, bp)
	}
	// Goroutine 1 runs main; the handlers run on the connection goroutine.
	if stop.Goroutine <= 1 {
		t.Errorf("stopped on goroutine %d, want the connection goroutine", stop.Goroutine)
	}
	t.Logf("stop: %s:%d %s goroutine %d args %v locals %v",
		filepath.Base(stop.File), stop.Line, stop.Function, stop.Goroutine, stop.Args, stop.Locals)
}

// TestHandleClosure stops in the handle closure, which runs on the TCP
// server's goroutine, reads its arguments and captured variables, moves to
// the next hit and lets the program finish.
func TestHandleClosure(t *testing.T) {
	stdout := &syncBuffer{}
	s := start(t, context.Background(), nil, []string{"PROG_GREETING=hello from env"}, stdout)

	bp, err := s.BreakFunction("handle")
	if err != nil {
		t.Fatal(err)
	}
	stop := cont(t, s)
	wantAt(t, stop, "handle", bp)
	if stop.Function != "main.main.func1" {
		t.Errorf("Function = %q, want main.main.func1", stop.Function)
	}
	wantVar(t, "args", stop.Args, "n", "1")
	wantVar(t, "args", stop.Args, "s", `*main.state {count: 0, name: "counter"}`)
	wantVar(t, "locals", stop.Locals, "calls", "0") // captured by the closure
	if got := eval(t, s, "s.count"); got != "0" {
		t.Errorf("s.count = %s before the first increment, want 0", got)
	}

	stop = cont(t, s)
	wantAt(t, stop, "handle", bp)
	wantVar(t, "args", stop.Args, "n", "2")
	if got := eval(t, s, "s.count"); got != "1" {
		t.Errorf("s.count = %s at the second call, want 1", got)
	}
	if got := eval(t, s, "n*10 + s.count"); got != "21" {
		t.Errorf("n*10 + s.count = %s, want 21", got)
	}

	if err := s.Clear(bp); err != nil {
		t.Fatal(err)
	}
	stop = cont(t, s)
	if !stop.Exited || stop.ExitStatus != 0 {
		t.Fatalf("got %+v, want exit 0", stop)
	}
	if err := s.Detach(true); err != nil { // drains the output
		t.Fatal(err)
	}
	want := "Inc 1 -> 1\nInc 2 -> 3\nInc 3 -> 6\ncount=6 calls=3 hello from env\n"
	if got := stdout.String(); got != want {
		t.Errorf("target stdout:\n%s\nwant:\n%s", got, want)
	}
	if _, ok := os.LookupEnv("PROG_GREETING"); ok {
		t.Error("PROG_GREETING left in the environment of the test process")
	}
}

// TestGenericHandler stops in the closure of the generic Handle (by
// FILE:LINE) and in the handler registered as "Inc" (by method name), and
// reads their shape-typed and captured variables.
func TestGenericHandler(t *testing.T) {
	s := start(t, context.Background(), nil, nil, nil)
	generic, err := s.Break(fmt.Sprintf("prog/main.go:%d", progLines()["generic"]))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := s.BreakFunction("Inc")
	if err != nil {
		t.Fatal(err)
	}

	stop := cont(t, s)
	wantAt(t, stop, "generic", generic)
	if !strings.HasPrefix(stop.Function, "main.Handle[") || !strings.HasSuffix(stop.Function, "].func1") {
		t.Errorf("Function = %q, want main.Handle[…].func1", stop.Function)
	}
	wantVar(t, "args", stop.Args, "payload", `"1"`)
	wantVar(t, "args", stop.Args, "ctx", `*main.Ctx {Method: "Inc", Seq: 1}`)
	wantVar(t, "locals", stop.Locals, "args", "1")
	wantVar(t, "locals", stop.Locals, "method", `"Inc"`) // captured
	if got := eval(t, s, "s.name"); got != `"counter"` {
		t.Errorf("s.name = %s, want \"counter\"", got)
	}

	stop = cont(t, s)
	wantAt(t, stop, "Inc", inc)
	if stop.Function != "main.main.func2" {
		t.Errorf("Function = %q, want main.main.func2", stop.Function)
	}
	wantVar(t, "args", stop.Args, "n", "1")
	if got := eval(t, s, "ctx.Seq"); got != "1" {
		t.Errorf("ctx.Seq = %s, want 1", got)
	}

	bps, err := s.Breakpoints()
	if err != nil {
		t.Fatal(err)
	}
	if len(bps) != 2 || bps[0].ID != generic || bps[0].Hits != 1 || bps[1].ID != inc || bps[1].Hits != 1 {
		t.Errorf("Breakpoints() = %+v, want %d and %d hit once each", bps, generic, inc)
	}
}

// TestDlvConnect attaches a second client, as `dlv connect ADDR` does, to
// the headless server while the Session is stopped at a breakpoint.
func TestDlvConnect(t *testing.T) {
	s := start(t, context.Background(), nil, nil, nil)
	bp, err := s.BreakFunction("handle")
	if err != nil {
		t.Fatal(err)
	}
	stop := cont(t, s)

	conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	client := rpc2.NewClientFromConn(conn)
	state, err := client.GetState()
	if err != nil {
		t.Fatal(err)
	}
	if state.Pid != s.Pid() || state.SelectedGoroutine == nil || int(state.SelectedGoroutine.ID) != stop.Goroutine {
		t.Errorf("GetState: pid %d, goroutine %+v; want pid %d, goroutine %d", state.Pid, state.SelectedGoroutine, s.Pid(), stop.Goroutine)
	}
	if th := state.CurrentThread; th == nil || th.Line != stop.Line || th.Breakpoint == nil || th.Breakpoint.ID != bp {
		t.Errorf("GetState: current thread %+v, want at line %d on breakpoint %d", th, stop.Line, bp)
	}
	bps, err := client.ListBreakpoints(false)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, b := range bps {
		found = found || b.ID == bp
	}
	if !found {
		t.Errorf("ListBreakpoints: %d not in %+v", bp, bps)
	}
	// A breakpoint the other client sets stops the Session too.
	other, err := client.CreateBreakpoint(&api.Breakpoint{File: stop.File, Line: progLines()["generic"]})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Disconnect(false); err != nil {
		t.Fatal(err)
	}

	stop = cont(t, s)
	wantAt(t, stop, "generic", other.ID)
	wantVar(t, "locals", stop.Locals, "args", "2")
	stop = cont(t, s)
	wantAt(t, stop, "handle", bp)
	wantVar(t, "args", stop.Args, "n", "2")
}

// TestBreakFunctionRules resolves specs by each of BreakFunction's rules.
func TestBreakFunctionRules(t *testing.T) {
	s := start(t, context.Background(), nil, nil, nil)
	// The one instantiation of Handle: App[state], int arguments and results.
	const handle = "main.Handle[go.shape.struct { main.count int; main.name string },go.shape.int,go.shape.int]"
	for _, tc := range []struct {
		rule string
		spec string
		want string // the functions, comma-separated, or "error: …"
	}{
		{"1 regexp", `/^main\.serve$/`, "main.serve"},
		{"2 closure variable", "handle", "main.main.func1"},
		{"2 registered handler", "Inc", "main.main.func2"},
		{"3 Delve, full name", "main.main.func1", "main.main.func1"},
		{"3 Delve, full name", "main.serve", "main.serve"},
		{"3 Delve, short name", "serve", "main.serve"},
		{"3 Delve, generic", "main.Handle", handle},
		{"3 Delve, user code only", "func1", handle + ".func1,main.main.func1"},
		{"4 suffix", "Handle.func1", handle + ".func1"},
		{"5 substring", "in.gowrap", "main.main.gowrap1"},
		{"no match", "nosuchfunction", "error: no function of the program matches"},
		{"not a function", "main.go:10", "error: a FILE:LINE, not a function"},
	} {
		id, err := s.BreakFunction(tc.spec)
		var got string
		if err != nil {
			got = "error: " + err.Error()
		} else {
			bps, err := s.Breakpoints()
			if err != nil {
				t.Fatal(err)
			}
			for _, bp := range bps {
				if bp.ID == id {
					got = strings.Join(bp.Functions, ",")
				}
			}
			if err := s.Clear(id); err != nil {
				t.Fatal(err)
			}
		}
		if strings.HasPrefix(tc.want, "error: ") && strings.Contains(got, tc.want[len("error: "):]) {
			continue
		}
		if got != tc.want {
			t.Errorf("rule %s: BreakFunction(%q) → %s, want %s", tc.rule, tc.spec, got, tc.want)
		}
	}
}

// TestStartContextKills checks that the end of Start's context ends the
// session and the target.
func TestStartContextKills(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := start(t, ctx, nil, nil, nil)
	cancel()
	deadline := time.Now().Add(10 * time.Second)
	for alive(s.Pid()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(s.Pid()) {
		t.Fatalf("target %d alive after the context was cancelled", s.Pid())
	}
	if _, err := s.Continue(); err == nil {
		t.Error("Continue after the context was cancelled: no error")
	}
}

// TestHalt stops a target that never hits a breakpoint when the context of
// ContinueContext ends, continues it again, and detaches while it runs.
func TestHalt(t *testing.T) {
	stdout := &syncBuffer{}
	s := start(t, context.Background(), []string{"-hang"}, nil, stdout)
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		stop, err := s.ContinueContext(ctx)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) || stop == nil || stop.Exited {
			t.Fatalf("ContinueContext: %+v, %v; want a halted stop and DeadlineExceeded", stop, err)
		}
		t.Logf("halted at %s:%d in %s, goroutine %d", filepath.Base(stop.File), stop.Line, stop.Function, stop.Goroutine)
	}
	if got := stdout.String(); !strings.Contains(got, "count=6") {
		t.Errorf("target stdout %q: the program did not get to its end", got)
	}

	done := make(chan error, 1)
	go func() {
		_, err := s.Continue()
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if err := s.Detach(true); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Continue interrupted by Detach: no error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Continue still running 10s after Detach")
	}
}

func TestStartErrors(t *testing.T) {
	for _, tc := range []struct {
		exe  string
		env  []string
		want string
	}{
		{filepath.Join(t.TempDir(), "missing"), nil, "no such file or directory"},
		{progExe, []string{"NOEQUALS"}, `environment entry "NOEQUALS" is not KEY=VALUE`},
		{"/etc/passwd", nil, "could not launch process"},
	} {
		s, err := Start(context.Background(), tc.exe, nil, tc.env, nil, nil)
		if err == nil {
			s.Detach(true)
			t.Errorf("Start(%s, env %q): no error", tc.exe, tc.env)
		} else if !strings.HasPrefix(err.Error(), "debug: start ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%s, env %q): %v, want %q", tc.exe, tc.env, err, tc.want)
		}
	}
	goleak.VerifyNone(t)
}

func TestBuildDebugError(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"go.mod":  "module broken\n\ngo 1.22\n",
		"main.go": "package main\n\nfunc main() { undefinedThing() }\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o666); err != nil {
			t.Fatal(err)
		}
	}
	err := BuildDebug(context.Background(), dir, filepath.Join(dir, "out"))
	if err == nil || !strings.HasPrefix(err.Error(), "debug: build ") || !strings.Contains(err.Error(), "undefined: undefinedThing") {
		t.Fatalf("BuildDebug of a broken package: %v, want the compiler's message", err)
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct{ name, stripped, pkg string }{
		{"main.main.func1", "main.main.func1", "main"},
		{"github.com/x/y.(*T).M", "github.com/x/y.(*T).M", "github.com/x/y"},
		{"main.Handle[go.shape.struct { main.count int },go.shape.int].func1", "main.Handle.func1", "main"},
		{"example.com/a.F[example.com/b/c.T]", "example.com/a.F", "example.com/a"},
		{"runtime.main", "runtime.main", "runtime"},
	} {
		if got := stripTypeArgs(tc.name); got != tc.stripped {
			t.Errorf("stripTypeArgs(%q) = %q, want %q", tc.name, got, tc.stripped)
		}
		if got := funcPackage(tc.stripped); got != tc.pkg {
			t.Errorf("funcPackage(%q) = %q, want %q", tc.stripped, got, tc.pkg)
		}
	}
	for _, tc := range []struct {
		name, suffix string
		want         bool
	}{
		{"main.main.func1", "func1", true},
		{"main.main.func1", "main.func1", true},
		{"main.main.func1", "unc1", false},
		{"github.com/x/y.F", "y.F", true},
		{"main.(*T).M", "(*T).M", true},
		{"main.(*T).M", "M", true},
	} {
		if got := hasNameSuffix(tc.name, tc.suffix); got != tc.want {
			t.Errorf("hasNameSuffix(%q, %q) = %v", tc.name, tc.suffix, got)
		}
	}
}
