package immortal

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestDeclaredErrorCrossesTheWire(t *testing.T) {
	err := fmt.Errorf("account alice: %w", errTestDeclared)
	flags, payload := errorPayload(err)
	if flags != FlagError|FlagErrorCode || string(payload) != "[test.declared] account alice: declared failure" {
		t.Fatalf("flags %b payload %q", flags, payload)
	}
	ce := callError("debit", flags, payload)
	if !errors.Is(ce, errTestDeclared) || ce.Code != "test.declared" || ce.Message != "account alice: declared failure" {
		t.Errorf("decoded %#v: errors.Is %v", ce, errors.Is(ce, errTestDeclared))
	}
	if errors.Is(ce, ErrTimeout) {
		t.Error("a call error matches a declared error of another code")
	}
	// Passed on by a caller that returns it: the code goes along.
	if f, p := errorPayload(fmt.Errorf("transfer 7: %w", ce)); f&FlagErrorCode == 0 || string(p[:15]) != "[test.declared]" {
		t.Errorf("re-sent as %b %q", f, p)
	}
	// A code this binary never declared still matches a value of that code.
	other := callError("x", FlagError|FlagErrorCode, []byte("[elsewhere.gone] it went"))
	if !errors.Is(other, &DeclaredError{Code: "elsewhere.gone"}) || other.Message != "it went" {
		t.Errorf("undeclared code: %#v", other)
	}
	// Errors that declare nothing travel as text, as before.
	if f, p := errorPayload(errors.New("boom")); f != FlagError || string(p) != "boom" {
		t.Errorf("plain error sent as %b %q", f, p)
	}
	if ce := callError("x", FlagError, []byte("[not.a.code] text")); ce.Code != "" || ce.Message != "[not.a.code] text" {
		t.Errorf("text without the flag was parsed: %#v", ce)
	}
}

func TestReservedMethodNames(t *testing.T) {
	for _, register := range []func(){
		func() {
			Handle(New(func() int { return 0 }), "ambr.entity", func(*Ctx, *int, int) (int, error) { return 0, nil })
		},
		func() {
			Orchestrate(New(func() int { return 0 }), "ambr.x", func(*Orch, int) (int, error) { return 0, nil })
		},
	} {
		func() {
			defer func() {
				if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "are the binding's") {
					t.Errorf("registering a reserved name: %v", v)
				}
			}()
			register()
		}()
	}
}

func TestDeclareErrorRules(t *testing.T) {
	if DeclareError("test.declared", "declared failure") != errTestDeclared {
		t.Error("declaring the same code and text again gives another value")
	}
	for _, bad := range []func(){
		func() { DeclareError("test.declared", "another text") },
		func() { DeclareError("has space", "x") },
		func() { DeclareError("", "x") },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("DeclareError accepted a bad declaration")
				}
			}()
			bad()
		}()
	}
}

// A plain handler's declared error reaches a plain result handler with its
// code too: typed errors are not only for orchestrations.
func TestDeclaredErrorThroughPlainCall(t *testing.T) {
	ic := newFakeIC(t)
	app := newDurApp(durOpts{})
	ic.start(app)
	mustImpulseDur(t, app, "start", startArgs{Orch: "fail", Arg: 3}) // "fail" is a plain handler
	ic.settle()
	want := "fail: error immortal: call to fail failed: fail 3: declared failure is-declared=true is-timeout=false is-lock=false"
	if got := stateOf(t, app).Results; len(got) != 1 || got[0] != want {
		t.Errorf("results %q, want %q", got, want)
	}
}
