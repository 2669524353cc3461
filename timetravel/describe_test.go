package timetravel

import (
	"testing"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/logfmt"
)

// TestDescribe: a sent message of the Go binding shows its method, result
// flag and payload; another binding's RPC its method id and raw arguments.
func TestDescribe(t *testing.T) {
	env := immortal.Envelope{Method: "Inc", Payload: []byte(`{"n":1}`)}
	call := Sent{RPC: logfmt.RPC{Reserved: immortal.ReservedRequest, MethodID: immortal.MethodID("Inc"), Kind: logfmt.RPCCall, Args: env.Append(nil)}}
	if d := call.Describe(); d.Dest != "self" || d.Kind != "call" || d.Method != "Inc" || d.Result || string(d.Payload) != `{"n":1}` {
		t.Errorf("binding call: %+v", d)
	}
	res := immortal.Envelope{CallID: 3, Payload: []byte("7")}
	result := Sent{Dest: "client", RPC: logfmt.RPC{Reserved: immortal.ReservedResult, Kind: logfmt.RPCFork, Args: res.Append(nil)}}
	if d := result.Describe(); d.Dest != "client" || !d.Result || string(d.Payload) != "7" {
		t.Errorf("binding result: %+v", d)
	}
	other := Sent{Dest: "x", RPC: logfmt.RPC{MethodID: 42, Kind: logfmt.RPCFork, Args: []byte{0xff, 0x00}}}
	d := other.Describe()
	if d.Method != "method 42" || string(d.Payload) != "\xff\x00" {
		t.Errorf("other binding: %+v", d)
	}
	if _, ok := PayloadText(d.Payload); ok {
		t.Error("binary payload taken for text")
	}
	if s, ok := PayloadText([]byte("plain words")); !ok || s != "plain words" {
		t.Errorf("printable payload: %q %v", s, ok)
	}
}
