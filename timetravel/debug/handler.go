package debug

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-delve/delve/service/api"
)

// bindingPackage is the import path of the Go binding, whose dispatch
// BreakHandler stops in.
const bindingPackage = "github.com/ambr-dev/ambr/engine/immortal"

// handlerCalls are, per kind of handler, the function literal through
// which the Go binding calls a registered handler, the source of that call
// and the variable holding the name it was registered under.
//
// Handlers are found through the binding rather than by their own names:
// a handler may be any function value (a literal, a method value, a
// function of another package) registered under any string (a constant
// such as api.Withdraw), and only the binding knows which name maps to
// which function. So the breakpoint is set on the line where the binding
// calls the function, with a condition on the name, and the debugger steps
// into the call: it stops at the first line of the user's handler.
var handlerCalls = map[HandlerKind]struct {
	closure, call *regexp.Regexp
	name          string
}{
	MethodHandler: {regexp.MustCompile(`^` + regexp.QuoteMeta(bindingPackage) + `\.Handle\[.*\]\.func1$`), regexp.MustCompile(`\bfn\(ctx, s, args\)`), "method"},
	ResultHandler: {regexp.MustCompile(`^` + regexp.QuoteMeta(bindingPackage) + `\.HandleResult\[.*\]\.func1$`), regexp.MustCompile(`\bfn\(ctx, s, r, callErr, note\)`), "name"},
}

// HandlerKind says which handlers BreakHandler stops in.
type HandlerKind int

// The kinds of handler.
const (
	// MethodHandler is a handler registered with immortal.Handle: calls,
	// forks and impulses of a method.
	MethodHandler HandlerKind = iota + 1
	// ResultHandler is one registered with immortal.HandleResult.
	ResultHandler
)

// maxBodyLines is how far below a closure's first line the binding's call
// of the handler is looked for.
const maxBodyLines = 40

// BreakHandler sets a breakpoint that stops at the first line of the
// handler registered under name (any handler of the kind if name is ""),
// however it was registered. The target must be built with debug
// information from the binding's source, readable at the paths the binary
// records.
func (s *Session) BreakHandler(kind HandlerKind, name string) (int, error) {
	what := fmt.Sprintf("the handler of %q", name)
	if name == "" {
		what = "the next result handler"
	}
	if err := s.usable(); err != nil {
		return 0, fmt.Errorf("debug: break in %s: %w", what, err)
	}
	hc, ok := handlerCalls[kind]
	if !ok {
		return 0, fmt.Errorf("debug: break in %s: unknown handler kind %d", what, kind)
	}
	closures, _, err := s.client.FindLocation(api.EvalScope{GoroutineID: -1}, "/"+strings.ReplaceAll(hc.closure.String(), "/", `\/`)+"/", false, nil)
	if err != nil || len(closures) == 0 {
		return 0, fmt.Errorf("debug: break in %s: the program has no Go-binding handlers of this kind (%v)", what, err)
	}
	// Every instantiation of the generic closure shares its source line.
	var file string
	var line int
	for _, c := range closures {
		if c.Function == nil || !hc.closure.MatchString(c.Function.Name()) {
			continue
		}
		if l, ok := findLine(c.File, c.Line, hc.call); ok {
			file, line = c.File, l
			break
		}
	}
	if file == "" {
		return 0, fmt.Errorf("debug: break in %s: the binding's call of the handler is not where this ambr expects it in %s (a binding of another version?); break at FILE:LINE instead", what, closures[0].File)
	}
	locs, _, err := s.client.FindLocation(api.EvalScope{GoroutineID: -1}, fmt.Sprintf("%s:%d", file, line), false, nil)
	if err != nil {
		return 0, fmt.Errorf("debug: break in %s: %w", what, err)
	}
	cond := ""
	if name != "" {
		cond = hc.name + " == " + strconv.Quote(name)
	}
	id, err := s.createBreakpointCond(locs, "", cond)
	if err != nil {
		return 0, fmt.Errorf("debug: break in %s: %w", what, err)
	}
	s.mu.Lock()
	if s.stepIn == nil {
		s.stepIn = map[int]bool{}
	}
	s.stepIn[id] = true
	s.mu.Unlock()
	return id, nil
}

// findLine returns the first line at or after from in file that matches re,
// within maxBodyLines.
func findLine(file string, from int, re *regexp.Regexp) (int, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, false
	}
	lines := strings.Split(string(b), "\n")
	for i := max(from-1, 0); i < len(lines) && i < from-1+maxBodyLines; i++ {
		if re.MatchString(lines[i]) {
			return i + 1, true
		}
	}
	return 0, false
}

// stepIntoHandler is what Continue does at a BreakHandler breakpoint: step
// into the binding's call of the handler, through wrappers (a method
// value's), until the stopped frame is outside the binding.
func (s *Session) stepIntoHandler() (*api.DebuggerState, error) {
	for range 8 {
		state, err := s.client.Step()
		if err != nil {
			return nil, err
		}
		if state.Exited || state.CurrentThread == nil || state.CurrentThread.Function == nil {
			return state, nil
		}
		fn := state.CurrentThread.Function.Name()
		if !strings.HasPrefix(fn, bindingPackage+".") && !strings.HasSuffix(fn, "-fm") && !strings.HasPrefix(fn, "runtime.") {
			return state, nil
		}
	}
	return nil, errors.New("stepping into the handler did not leave the binding")
}
