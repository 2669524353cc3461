package immortal

import (
	"encoding/json"
	"testing"
)

// TestSplitDurable: the tools show orchestrations, timers and entities apart
// from the rest of the binding; a binding without them comes back as it was.
func TestSplitDurable(t *testing.T) {
	plain := json.RawMessage(`{"codec":"json","next_call_id":3,"pending":{}}`)
	if d, rest := SplitDurable(plain); d != nil || string(rest) != string(plain) {
		t.Fatalf("no durable part: %s, %s", d, rest)
	}
	with := json.RawMessage(`{"codec":"json","durable":{"orchestrations":{"o1":{"name":"Transfer","waiting":"step 2"}}},"next_call_id":3}`)
	d, rest := SplitDurable(with)
	if string(d) != `{"orchestrations":{"o1":{"name":"Transfer","waiting":"step 2"}}}` {
		t.Fatalf("durable part %s", d)
	}
	if string(rest) != `{"codec":"json","next_call_id":3}` {
		t.Fatalf("rest %s", rest)
	}
	if d, rest := SplitDurable(json.RawMessage(`not json`)); d != nil || string(rest) != "not json" {
		t.Fatalf("not JSON: %s, %s", d, rest)
	}
}
