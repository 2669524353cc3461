package immortal

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkpointInputs are checkpoint bytes the fast path must take exactly as
// json.Unmarshal does: what encodeCheckpoint writes, and near misses of it.
func checkpointInputs(t testing.TB) [][]byte {
	in := bindingState{nextCallID: 5, pending: map[int64]pendingCall{
		2: {onResult: "r", method: "m", dest: "other", note: []byte{0, 1, 2}},
		4: {onResult: "r", method: "m"},
	}}
	var out [][]byte
	for _, state := range [][]byte{{}, {0xff}, {1, 2, 3, 4, 5, 6, 7}, make([]byte, 4096)} {
		b, err := encodeCheckpoint(gobCodec{}, state, &in)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	for _, s := range []string{
		`{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`,
		// An escape inside the string: JSON's "\/" is "/".
		`{"state_b64":"AQ\/D","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`,
		// Line breaks, which base64 skips and a JSON string may not hold.
		"{\"state_b64\":\"AQ\nID\",\"binding\":{\"codec\":\"gob\",\"next_call_id\":1,\"pending\":{}}}",
		"{\"state_b64\":\"AQ\rID\",\"binding\":{\"codec\":\"gob\",\"next_call_id\":1,\"pending\":{}}}",
		`{"state_b64":"AQI","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`,
		`{"state_b64":"A*ID","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`,
		`{"state_b64":"AQID"}`,
		`{"state_b64":"AQID",}`,
		`{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}}} x`,
		`{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}},"state_b64":"BAUG"}`,
		`{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}},"state_b64":null}`,
		`{"state_b64":"AQID","state":[1],"binding":{"codec":"gob"}}`,
		`{"state_b64":"AQID","binding":5}`,
		`{"state_b64":"AQID",`,
		`{"state_b64":"AQID`,
		`{"state_b64":"`,
		`{"state_b64": "AQID","binding":{}}`,
		`{"state":[1,2],"binding":{"codec":"json","next_call_id":1,"pending":{}}}`,
	} {
		out = append(out, []byte(s))
	}
	return out
}

// compareUnmarshal fails if unmarshalCheckpoint and json.Unmarshal disagree
// on data: in the checkpoint they return or in whether and how they fail.
func compareUnmarshal(t *testing.T, data []byte) {
	var want, got checkpointJSON
	werr := json.Unmarshal(data, &want)
	gerr := unmarshalCheckpoint(data, &got)
	if fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%q: error %v, json.Unmarshal's %v", data, gerr, werr)
	}
	if werr != nil {
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("%q: checkpoint differs from json.Unmarshal's (-want +got):\n%s", data, diff)
	}
}

// A checkpoint decoded by the fast path is what json.Unmarshal makes of it,
// and an input it cannot take exactly so gets json.Unmarshal's result and
// error: the fast path must never accept a checkpoint encoding/json rejects
// or read one differently.
func TestUnmarshalCheckpointAsJSON(t *testing.T) {
	for _, data := range checkpointInputs(t) {
		compareUnmarshal(t, data)
	}
}

func FuzzUnmarshalCheckpoint(f *testing.F) {
	for _, data := range checkpointInputs(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) { compareUnmarshal(t, data) })
}

// The fast path takes what encodeCheckpoint writes with a codec other than
// JSON (else recovery would not get faster).
func TestUnmarshalCheckpointFastPath(t *testing.T) {
	b, err := encodeCheckpoint(gobCodec{}, []byte{1, 2, 3}, &bindingState{nextCallID: 1})
	if err != nil {
		t.Fatal(err)
	}
	var ck checkpointJSON
	if !fastUnmarshalCheckpoint(b, &ck) {
		t.Fatalf("fast path refused %q", b)
	}
	if ck.StateB64 == nil || string(*ck.StateB64) != "\x01\x02\x03" || ck.Binding.Codec != "gob" {
		t.Fatalf("fast path read %q as %+v", b, ck)
	}
}
