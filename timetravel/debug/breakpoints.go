package debug

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/go-delve/delve/service/api"
)

// maxMatches bounds how many functions a name suffix or substring may match
// before BreakFunction calls the name ambiguous.
const maxMatches = 16

var (
	fileLineSpec = regexp.MustCompile(`^(.+\.go):(\d+)$`)
	// closureName matches the names the compiler gives function literals:
	// main.main.func1, main.main.func1.2, pkg.F[go.shape.int].func3.
	closureName = regexp.MustCompile(`\.func\d+(\.\d+)*$`)
)

// Breakpoint is a breakpoint as set by a Session.
type Breakpoint struct {
	ID int
	// Functions are the functions it stops in (several for a pattern that
	// matched several functions, or a generic function's instantiations).
	Functions []string
	// File and Line are its (first) location.
	File string
	Line int
	// Hits is how many times it was hit so far.
	Hits int
}

// Break sets a breakpoint at spec: FILE.go:LINE as BreakLine takes it,
// anything else as BreakFunction does.
func (s *Session) Break(spec string) (int, error) {
	if m := fileLineSpec.FindStringSubmatch(spec); m != nil {
		line, err := strconv.Atoi(m[2])
		if err != nil {
			return 0, fmt.Errorf("debug: break %q: %w", spec, err)
		}
		return s.BreakLine(m[1], line)
	}
	return s.BreakFunction(spec)
}

// BreakLine sets a breakpoint at line of file. file may be any suffix of
// the source file's path that names one file, e.g. "main.go",
// "server/main.go" or an absolute path. A line inside a generic function
// stops in every instantiation.
func (s *Session) BreakLine(file string, line int) (int, error) {
	spec := fmt.Sprintf("%s:%d", file, line)
	if err := s.usable(); err != nil {
		return 0, fmt.Errorf("debug: break %s: %w", spec, err)
	}
	locs, _, err := s.client.FindLocation(api.EvalScope{GoroutineID: -1}, spec, false, nil)
	if err != nil {
		return 0, fmt.Errorf("debug: break %s: %w", spec, err)
	}
	id, err := s.createBreakpoint(locs, spec)
	if err != nil {
		return 0, fmt.Errorf("debug: break %s: %w", spec, err)
	}
	return id, nil
}

// BreakFunction sets one breakpoint at the entry of all the functions spec
// names (after the prologue: for a function literal, on the line of its func
// keyword). "User code" below is package main and the modules the binary's
// build information lists (its main module and dependencies), not the
// standard library. The first of these rules that matches anything decides:
//
//  1. /REGEXP/: every function whose full name matches REGEXP (Delve's
//     syntax), e.g. /^main\.main\.func/.
//  2. A function literal in user code that its source names spec: its func
//     keyword is on a line of the form `spec := func(`, `spec = func(`,
//     `spec: func(`, `"spec": func(` or `"spec", func(`. The last is a
//     handler registered by method name, immortal.Handle(app, "Inc",
//     func(ctx *immortal.Ctx, …) …), so `ambr replay --break Inc` stops in
//     the handler of Inc. The source must be readable at the paths recorded
//     in the binary.
//  3. A function location as `dlv break` takes it: a full name (main.main,
//     github.com/x/y.(*T).M, main.main.func1) or Delve's shorter forms
//     (y.(*T).M, T.M, (*T).M, M, y.F). A generic function named without
//     type arguments stops in all its instantiations. Of Delve's matches,
//     those in user code are kept; standard library ones only if there are
//     none and spec is qualified (fmt.Println, not Println), so "handle"
//     does not land in runtime.(*immortalWeakHandle).handle.
//  4. A suffix of the names of user code, type arguments left out, at a
//     '.' or '/': "func1", "main.func2", "Handle.func1" for
//     main.Handle[go.shape.int,…].func1.
//  5. A substring of the names of user code, type arguments left out:
//     "Inc" for main.(*Counter).Inc.func1.
//
// Rules 4 and 5 fail as ambiguous beyond 16 functions. FILE.go:LINE is
// refused here (use BreakLine or Break).
func (s *Session) BreakFunction(spec string) (int, error) {
	if err := s.usable(); err != nil {
		return 0, fmt.Errorf("debug: break %q: %w", spec, err)
	}
	if spec == "" {
		return 0, errors.New("debug: break: empty function name")
	}
	if fileLineSpec.MatchString(spec) {
		return 0, fmt.Errorf("debug: break %q: a FILE:LINE, not a function; use BreakLine", spec)
	}
	locs, expr, err := s.findFunction(spec)
	if err != nil {
		return 0, fmt.Errorf("debug: break %q: %w", spec, err)
	}
	id, err := s.createBreakpoint(locs, expr)
	if err != nil {
		return 0, fmt.Errorf("debug: break %q: %w", spec, err)
	}
	return id, nil
}

// findFunction applies BreakFunction's rules to spec. expr is a location
// expression Delve can re-evaluate to find the same functions again (when
// the target is restarted from a `dlv connect` client), or "".
func (s *Session) findFunction(spec string) (locs []api.Location, expr string, err error) {
	scope := api.EvalScope{GoroutineID: -1}
	if strings.HasPrefix(spec, "/") && strings.HasSuffix(spec, "/") && len(spec) > 1 {
		locs, _, err := s.client.FindLocation(scope, spec, false, nil)
		return locs, spec, err
	}

	if locs, err := s.namedClosures(spec); err != nil || len(locs) > 0 {
		return locs, "", err
	}

	if locs, _, err := s.client.FindLocation(scope, spec, false, nil); err == nil {
		var user, std []api.Location
		for _, loc := range locs {
			if loc.Function != nil && !s.code.isUser(loc.Function.Name()) {
				std = append(std, loc)
			} else {
				user = append(user, loc)
			}
		}
		switch {
		case len(user) > 0:
			return user, spec, nil
		case len(std) > 0 && strings.ContainsAny(spec, "./"):
			return std, spec, nil
		}
	}

	all, err := s.client.ListFunctions("", 0)
	if err != nil {
		return nil, "", err
	}
	var suffix, substring []string
	for _, fn := range all {
		if !s.code.isUser(fn) {
			continue
		}
		name := stripTypeArgs(fn)
		if hasNameSuffix(name, spec) {
			suffix = append(suffix, fn)
		}
		if strings.Contains(name, spec) {
			substring = append(substring, fn)
		}
	}
	for _, names := range [][]string{suffix, substring} {
		switch {
		case len(names) == 0:
			continue
		case len(names) > maxMatches:
			return nil, "", fmt.Errorf("ambiguous: %d functions match, e.g. %s; use a longer name or /REGEXP/",
				len(names), strings.Join(names[:3], ", "))
		}
		locs, _, err := s.client.FindLocation(scope, exactNames(names), false, nil)
		return locs, "", err
	}
	return nil, "", errors.New("no function of the program matches (qualify standard library functions, e.g. fmt.Println; /REGEXP/ matches every full name)")
}

// namedClosures finds the function literals in user code that the source
// names spec (rule 2 of BreakFunction). Delve has no declaration line for
// a function, so the func keyword is looked for in the source, at or above
// the line where the literal's code starts.
func (s *Session) namedClosures(spec string) ([]api.Location, error) {
	if strings.ContainsAny(spec, "\"` \t\n") {
		return nil, nil
	}
	q := regexp.QuoteMeta(spec)
	var named *regexp.Regexp
	if isIdent(spec) {
		named = regexp.MustCompile(`(\b` + q + `\s*(:=|=|:)|"` + q + `"\s*[:,])\s*func\s*\(`)
	} else {
		named = regexp.MustCompile(`"` + q + `"\s*[:,]\s*func\s*\(`)
	}

	closures, _, err := s.client.FindLocation(api.EvalScope{GoroutineID: -1}, "/"+closureName.String()+"/", false, nil)
	if err != nil {
		if strings.Contains(err.Error(), "not found") { // no closures at all
			return nil, nil
		}
		return nil, err
	}
	src := sourceLines{}
	var found []api.Location
	for _, loc := range closures {
		if loc.Function == nil || !s.code.isUser(loc.Function.Name()) {
			continue
		}
		if named.MatchString(src.funcLine(loc.File, loc.Line)) {
			found = append(found, loc)
		}
	}
	return found, nil
}

// createBreakpoint sets one breakpoint at every PC of locs.
func (s *Session) createBreakpoint(locs []api.Location, expr string) (int, error) {
	return s.createBreakpointCond(locs, expr, "")
}

// createBreakpointCond is createBreakpoint with a condition (a Go boolean
// expression Delve evaluates where it stops; "" for none).
func (s *Session) createBreakpointCond(locs []api.Location, expr, cond string) (int, error) {
	var pcs []uint64
	var funcs []string
	for _, loc := range locs {
		if len(loc.PCs) == 0 && loc.PC != 0 {
			loc.PCs = []uint64{loc.PC}
		}
		pcs = append(pcs, loc.PCs...)
		if loc.Function != nil {
			funcs = append(funcs, loc.Function.Name())
		}
	}
	slices.Sort(pcs)
	pcs = slices.Compact(pcs)
	if len(pcs) == 0 {
		return 0, errors.New("no code at this location")
	}
	slices.Sort(funcs)
	funcs = slices.Compact(funcs)
	if len(locs) != 1 {
		// Delve re-evaluates an expression only if it has one location.
		expr = ""
	}
	bp, err := s.client.CreateBreakpointWithExpr(&api.Breakpoint{Addr: pcs[0], Addrs: pcs, Cond: cond}, expr, nil, false)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	if s.bpFuncs == nil {
		s.bpFuncs = map[int][]string{}
	}
	s.bpFuncs[bp.ID] = funcs
	s.mu.Unlock()
	return bp.ID, nil
}

// Breakpoints lists the breakpoints set, by this Session or by a client
// attached to Addr, by ID.
func (s *Session) Breakpoints() ([]Breakpoint, error) {
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("debug: breakpoints: %w", err)
	}
	bps, err := s.client.ListBreakpoints(false)
	if err != nil {
		return nil, fmt.Errorf("debug: breakpoints: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Breakpoint
	for _, bp := range bps {
		if bp.ID < 0 { // Delve's internal ones (unrecovered panic, fatal error)
			continue
		}
		funcs := s.bpFuncs[bp.ID]
		if funcs == nil && bp.FunctionName != "" {
			funcs = []string{bp.FunctionName}
		}
		out = append(out, Breakpoint{ID: bp.ID, Functions: funcs, File: bp.File, Line: bp.Line, Hits: int(bp.TotalHitCount)})
	}
	slices.SortFunc(out, func(a, b Breakpoint) int { return a.ID - b.ID })
	return out, nil
}

// Clear removes breakpoint id.
func (s *Session) Clear(id int) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("debug: clear breakpoint %d: %w", id, err)
	}
	if _, err := s.client.ClearBreakpoint(id); err != nil {
		return fmt.Errorf("debug: clear breakpoint %d: %w", id, err)
	}
	s.mu.Lock()
	delete(s.bpFuncs, id)
	s.mu.Unlock()
	return nil
}

// exactNames is a Delve regexp location that matches exactly names.
func exactNames(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		// Delve's location parser ends the regexp at an unescaped '/'.
		quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(n), "/", `\/`)
	}
	return "/^(?:" + strings.Join(quoted, "|") + ")$/"
}

// stripTypeArgs removes the bracketed type arguments from a function name:
// main.F[go.shape.int].func1 becomes main.F.func1.
func stripTypeArgs(name string) string {
	if !strings.Contains(name, "[") {
		return name
	}
	var b strings.Builder
	depth := 0
	for _, r := range name {
		switch {
		case r == '[':
			depth++
		case r == ']' && depth > 0:
			depth--
		case depth == 0:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// funcPackage is the import path of the package of a function name without
// type arguments: github.com/x/y.(*T).M is in github.com/x/y.
func funcPackage(name string) string {
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	if dot < 0 {
		return name
	}
	return name[:slash+1+dot]
}

// hasNameSuffix reports whether name ends with suffix at a boundary of its
// parts.
func hasNameSuffix(name, suffix string) bool {
	if !strings.HasSuffix(name, suffix) {
		return false
	}
	if len(name) == len(suffix) {
		return true
	}
	switch name[len(name)-len(suffix)-1] {
	case '.', '/':
		return true
	}
	return strings.HasPrefix(suffix, ".") || strings.HasPrefix(suffix, "(")
}

func isIdent(s string) bool {
	for i, r := range s {
		if !(r == '_' || unicode.IsLetter(r) || i > 0 && unicode.IsDigit(r)) {
			return false
		}
	}
	return s != ""
}

// sourceLines reads lines of source files, each file once.
type sourceLines map[string][]string

// maxSignatureLines is how far above the first line of a function
// literal's body funcLine looks for its func keyword.
const maxSignatureLines = 8

var funcKeyword = regexp.MustCompile(`\bfunc\s*\(`)

// funcLine is the line that holds the func keyword of the function literal
// whose body starts at line n of file: the nearest line at or above n that
// has one. Delve has the body's first line, not the literal's; a
// signature spread over several lines is allowed for. "" if the file
// cannot be read.
func (sl sourceLines) funcLine(file string, n int) string {
	lines, ok := sl[file]
	if !ok {
		if f, err := os.Open(file); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				lines = append(lines, sc.Text())
			}
			f.Close()
		}
		sl[file] = lines
	}
	for i := min(n, len(lines)); i >= 1 && i > n-maxSignatureLines; i-- {
		if funcKeyword.MatchString(lines[i-1]) {
			return lines[i-1]
		}
	}
	return ""
}
