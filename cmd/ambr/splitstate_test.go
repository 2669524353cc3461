package main

import "testing"

// ambr replay splits the Go binding's binary checkpoint (a state that is
// not JSON) as its JSON form, {"state_b64": …, "binding": …}: JSON, shown
// whole, as before the binary form.
func TestSplitStateBinaryCheckpoint(t *testing.T) {
	meta := `{"binding":{"codec":"gob","next_call_id":1,"pending":{}}}`
	bin := append([]byte("\x00ambr-binary\x01"+string(rune(len(meta)))+meta), 1, 2, 3)
	asJSON := `{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`
	state, binding, isJSON := splitState(bin)
	if !isJSON || string(state) != asJSON || binding != nil {
		t.Fatalf("binary checkpoint split as %q, %q, JSON %v; want its JSON form whole", state, binding, isJSON)
	}
}
