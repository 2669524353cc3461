package immortal

import (
	"errors"
	"fmt"
	"strings"
	"sync"
)

// FlagErrorCode is bit 1 of an envelope's flags, set with FlagError when the
// failed call's error carries a declared error (DeclareError): the payload
// is then "[code] text", readable in the tools as it is. Part of the format.
const FlagErrorCode byte = 1 << 1

// DeclaredError is an error an app declares by a code that survives the
// wire: a call whose handler (or orchestration) returns an error wrapping
// it fails at the caller with a *CallError for which errors.Is(err, it) is
// true, in this binary or any other that declares the same code.
type DeclaredError struct {
	Code string // e.g. "bank.insufficient_funds": letters, digits, '.', '_', '-'
	Text string // what Error returns
}

func (e *DeclaredError) Error() string { return e.Text }

// Is matches another DeclaredError of the same code.
func (e *DeclaredError) Is(target error) bool {
	t, ok := target.(*DeclaredError)
	return ok && t.Code == e.Code
}

var declared sync.Map // code → *DeclaredError

// DeclareError declares an error by its code and text, for package-level
// variables:
//
//	var ErrInsufficientFunds = immortal.DeclareError("bank.insufficient_funds", "insufficient funds")
//
// It panics if the code is malformed or declared before with another text.
func DeclareError(code, text string) *DeclaredError {
	if code == "" || strings.IndexFunc(code, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		panic(fmt.Sprintf("immortal: DeclareError: code %q must be letters, digits, '.', '_' or '-'", code))
	}
	e := &DeclaredError{Code: code, Text: text}
	if prev, loaded := declared.LoadOrStore(code, e); loaded {
		if p := prev.(*DeclaredError); p.Text != text {
			panic(fmt.Sprintf("immortal: DeclareError: code %q declared twice (%q, %q)", code, p.Text, text))
		}
		return prev.(*DeclaredError)
	}
	return e
}

// Errors the binding itself declares.
var (
	// ErrTimeout: a call made with WithTimeout did not return in time. The
	// call may still run at the callee later: messages are never lost.
	ErrTimeout = DeclareError("ambr.timeout", "timed out")
	// ErrLockRule: an orchestration broke a rule of critical sections (a
	// nested Lock, a call of an entity it has not locked, a signal to one it
	// has, two calls to one entity at once).
	ErrLockRule = DeclareError("ambr.lock_rule", "critical section rule broken")
	// ErrOrchestrationPanicked: an orchestration's body panicked; it failed
	// with this error and its locks were released.
	ErrOrchestrationPanicked = DeclareError("ambr.orchestration_panicked", "orchestration panicked")
	// ErrNoSuchEntityOp: an entity operation nobody registered.
	ErrNoSuchEntityOp = DeclareError("ambr.no_such_entity_op", "no such entity operation")
)

// ErrNondeterministic is wrapped by the error Serve stops with when an
// orchestration's body, re-run against its history after a recovery, does
// something other than what the history records (the code changed, or it is
// not deterministic). The error names the orchestration and the step.
var ErrNondeterministic = errors.New("immortal: nondeterministic orchestration")

// errorCode returns the code of the first declared error in err's chain.
func errorCode(err error) string {
	var d *DeclaredError
	if errors.As(err, &d) {
		return d.Code
	}
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return ""
}

// errorPayload returns the flags and payload of a failed call's result.
func errorPayload(err error) (byte, []byte) {
	if code := errorCode(err); code != "" {
		return FlagError | FlagErrorCode, []byte("[" + code + "] " + err.Error())
	}
	return FlagError, []byte(err.Error())
}

// callError decodes a failed call's result.
func callError(method string, flags byte, payload []byte) *CallError {
	text := string(payload)
	ce := &CallError{Method: method, Message: text}
	if flags&FlagErrorCode != 0 && strings.HasPrefix(text, "[") {
		if end := strings.Index(text, "] "); end > 0 {
			ce.Code, ce.Message = text[1:end], text[end+2:]
		}
	}
	return ce
}

// Unwrap returns the declared error of the call's code, if this binary
// declares it, so that errors.Is and errors.As see it.
func (e *CallError) Unwrap() error {
	if e.Code == "" {
		return nil
	}
	if d, ok := declared.Load(e.Code); ok {
		return d.(*DeclaredError)
	}
	return &DeclaredError{Code: e.Code, Text: e.Message}
}
