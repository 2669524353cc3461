package logview

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// TestResultNamesItsCall: with an EnvelopeDecoder a result says which call
// it answers and whether it is an error, in the view and in the text.
func TestResultNamesItsCall(t *testing.T) {
	dec := func(args []byte, reserved byte) (Envelope, bool) {
		switch string(args) {
		case "ok":
			return Envelope{Result: true, CallID: 7, Payload: []byte("50")}, true
		case "bad":
			return Envelope{Result: true, CallID: 8, Failed: true, Payload: []byte(`"no such key"`)}, true
		}
		return Envelope{Method: "Inc", CallID: 3, Payload: []byte("{}")}, true
	}
	var msgs []byte
	for _, a := range []string{"ok", "bad", "call"} {
		msgs = logfmt.AppendRPC(msgs, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(a)})
	}
	rec := &logfmt.Record{Seq: 5, Messages: msgs}
	v := ViewEnvelopes(rec, 1, 0, dec)
	if len(v.Messages) != 3 {
		t.Fatalf("%d messages, want 3: %+v", len(v.Messages), v.Messages)
	}
	for i, want := range []string{"result of call 7", "error of call 8"} {
		if got := v.Messages[i].ResultLabel(); got != want {
			t.Errorf("message %d: ResultLabel %q, want %q", i, got, want)
		}
	}
	if m := v.Messages[2]; m.Result || m.MethodName != "Inc" || m.CallID != 3 || m.Args != "{}" {
		t.Errorf("the call: %+v", m)
	}
	var b bytes.Buffer
	if err := v.WriteText(&b, 0); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"result of call 7", "error of call 8", `"\"no such key\""`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
	// The plain ArgsDecoder knows no call numbers: just "result".
	plain := ArgsDecoder(func(args []byte, reserved byte) (string, bool, []byte, bool) { return "", true, args, true })
	if got := View(rec, 1, 0, plain).Messages[0].ResultLabel(); got != "result" {
		t.Errorf("with an ArgsDecoder: %q, want \"result\"", got)
	}
}
