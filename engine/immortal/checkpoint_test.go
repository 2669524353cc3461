package immortal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/ambr-dev/ambr/logfmt"
	"github.com/google/go-cmp/cmp"
)

// checkpointInputs are checkpoint bytes the fast paths must take exactly as
// json.Unmarshal takes their JSON form: what encodeCheckpoint writes (the
// binary form), what builds before it wrote (the JSON form, in base64), and
// near misses of both.
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
		old, err := encodeCheckpointReference(gobCodec{}, state, &in)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b, old, b[:len(b)-1], b[:len(binaryCheckpointMagic)+1])
	}
	for _, s := range []string{
		binaryCheckpointMagic,
		binaryCheckpointMagic + "\x02{}",
		binaryCheckpointMagic + "\x03{}x",
		binaryCheckpointMagic + "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01{}",
		binaryCheckpointMagic + "\x09{\"state\":1}",
		binaryCheckpointMagic + "\x0d{\"binding\":5}",
		binaryCheckpointMagic + "\x10{\"state_b64\":\"\"}",
		// Found in review: decoded, but not as their JSON forms decode.
		binaryCheckpointMagic + "\x04null\x01\x02\x03",
		binaryCheckpointMagic + "\x05 null\x01",
		binaryCheckpointMagic + "\x4a{\"binding\":{\"codec\":\"gob\",\"next_call_id\":1,\"pending\":{}},\"state_b64\":null}\x01\x02\x03",
		binaryCheckpointMagic + "\x0e{\"binding\":{}}",
		binaryCheckpointMagic + "\x02{}",
	} {
		out = append(out, []byte(s))
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
// Data of the binary form is compared with json.Unmarshal of its JSON form
// (CheckpointJSON), when unmarshalCheckpoint takes it.
func compareUnmarshal(t *testing.T, data []byte) {
	var want, got checkpointJSON
	gerr := unmarshalCheckpoint(data, &got)
	if bytes.HasPrefix(data, []byte(binaryCheckpointMagic)) {
		if gerr != nil {
			return
		}
		asJSON := CheckpointJSON(data)
		if bytes.Equal(asJSON, data) {
			t.Fatalf("%q: taken, but CheckpointJSON leaves it as it is", data)
		}
		if err := json.Unmarshal(asJSON, &want); err != nil {
			t.Fatalf("%q: taken, but its JSON form %q does not decode: %v", data, asJSON, err)
		}
	} else if werr := json.Unmarshal(data, &want); fmt.Sprint(werr) != fmt.Sprint(gerr) {
		t.Fatalf("%q: error %v, json.Unmarshal's %v", data, gerr, werr)
	} else if werr != nil {
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

// The fast path takes what builds before the binary form wrote with a
// codec other than JSON (else recovering from them would not get faster).
func TestUnmarshalCheckpointFastPath(t *testing.T) {
	b, err := encodeCheckpointReference(gobCodec{}, []byte{1, 2, 3}, &bindingState{nextCallID: 1})
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

// encodeCheckpointReference is encodeCheckpoint as it was before the base64
// fast path and the binary form: json.Marshal of the whole. appendCheckpoint
// must write exactly its bytes for a state embedded as JSON, and the JSON
// form of what it writes otherwise must be exactly its bytes.
func encodeCheckpointReference(c Codec, state []byte, b *bindingState) ([]byte, error) {
	return json.Marshal(checkpointValue(c, state, b))
}

// compareEncode fails unless appendCheckpoint writes json.Marshal's bytes
// (for a state of the binary form: bytes whose JSON form is json.Marshal's),
// alone and framed by the Checkpoint message after bytes already there,
// with a large state of the binary form by reference, and the decoder
// reads them back.
func compareEncode(t *testing.T, c Codec, state []byte, b *bindingState) {
	t.Helper()
	want, werr := encodeCheckpointReference(c, state, b)
	got, gerr := encodeCheckpoint(c, state, b)
	if werr != nil || gerr != nil {
		if fmt.Sprint(fmt.Errorf("encode checkpoint: %w", werr)) != fmt.Sprint(gerr) {
			t.Fatalf("error %v, json.Marshal's %v", gerr, werr)
		}
		return
	}
	binaryForm := bytes.HasPrefix(got, []byte(binaryCheckpointMagic))
	if _, b64 := embed(c, append([]byte{}, state...)); binaryForm != (b64 != nil) {
		t.Fatalf("codec %s, state %q: binary form %v", c.Name(), state, binaryForm)
	}
	if asJSON := CheckpointJSON(got); !bytes.Equal(want, asJSON) {
		t.Fatalf("codec %s, state %q: encoded\n%q\nas JSON\n%q\njson.Marshal\n%q", c.Name(), state, got, asJSON, want)
	}
	// WithBase64Checkpoints: json.Marshal's bytes, the form before.
	old, err := encodeCheckpointB64(c, state, b)
	if err != nil || !bytes.Equal(old, want) {
		t.Fatalf("codec %s, state %q: base64 form\n%q (%v)\njson.Marshal\n%q", c.Name(), state, old, err, want)
	}
	prefix := []byte("before")
	framedOld, _, err := appendCheckpointForm(append([]byte(nil), prefix...), c, state, b, true, true)
	if wantOld := append(logfmt.AppendCheckpointMessage(append([]byte(nil), prefix...), int64(len(want))), want...); err != nil || !bytes.Equal(framedOld, wantOld) {
		t.Fatalf("framed, base64 form: %q, want %q (%v)", framedOld, wantOld, err)
	}
	framed, tail, err := appendCheckpoint(append([]byte(nil), prefix...), c, state, b, true)
	if err != nil {
		t.Fatal(err)
	}
	if byRef := binaryForm && len(state) >= refPayload; byRef != (tail != nil) || byRef && &tail[0] != &state[0] {
		t.Fatalf("codec %s, state of %d bytes: tail of %d bytes", c.Name(), len(state), len(tail))
	}
	wantFramed := append(logfmt.AppendCheckpointMessage(append([]byte(nil), prefix...), int64(len(got))), got...)
	if framed = append(framed, tail...); !bytes.Equal(framed, wantFramed) {
		t.Fatalf("framed: %q, want %q", framed, wantFramed)
	}
	if c.Name() == (JSONCodec{}).Name() || b.nextCallID < 2 && len(b.pending) > 0 || b.nextCallID < 1 {
		return // json.Marshal compacts an embedded state; a bad call id does not decode
	}
	gotState, _, err := decodeCheckpoint(c, got)
	if err != nil {
		t.Fatalf("%q does not decode: %v", got, err)
	}
	if state == nil {
		state = []byte{}
	}
	if !bytes.Equal(gotState, state) {
		t.Fatalf("state %q decodes as %q", state, gotState)
	}
}

// encodeCheckpointB64 is encodeCheckpoint under WithBase64Checkpoints.
func encodeCheckpointB64(c Codec, state []byte, b *bindingState) ([]byte, error) {
	out, tail, err := appendCheckpointForm(nil, c, state, b, false, true)
	return append(out, tail...), err
}

func checkpointEncodeCases() []*bindingState {
	return []*bindingState{
		{nextCallID: 1},
		{nextCallID: 5, pending: map[int64]pendingCall{
			2: {onResult: "r", method: "m<&>", dest: "other", note: []byte{0, 1, 2}},
			4: {onResult: "r\u2028", method: "m", orch: "o", step: 3, note: []byte(`{"a":1}`)},
		}, stateType: "example.com/app.State"},
		{nextCallID: 9, dur: &DurableState{NextOrchestration: 3, NextTimer: 2}},
	}
}

// appendCheckpoint writes what json.Marshal wrote, byte for byte, for
// states embedded as JSON and in base64, empty, nil and of every length
// modulo 3.
func TestAppendCheckpointAsJSONMarshal(t *testing.T) {
	states := [][]byte{nil, {}, {0xff}, {1, 2}, {1, 2, 3}, []byte(`{"n":5}`), []byte(`[1,2`), []byte("<html>&"), make([]byte, 4097), make([]byte, refPayload)}
	for _, c := range []Codec{gobCodec{}, JSONCodec{}} {
		for _, b := range checkpointEncodeCases() {
			for _, st := range states {
				compareEncode(t, c, st, b)
			}
		}
	}
}

func FuzzAppendCheckpoint(f *testing.F) {
	f.Add([]byte{1, 2, 3}, "r", []byte{0}, int64(3), "t", false)
	f.Add([]byte(`{"x":"<y>"}`), "", []byte(nil), int64(1), "", true)
	f.Fuzz(func(t *testing.T, state []byte, method string, note []byte, next int64, stateType string, jsonCodec bool) {
		var c Codec = gobCodec{}
		if jsonCodec {
			c = JSONCodec{}
		}
		b := &bindingState{nextCallID: next, stateType: stateType, pending: map[int64]pendingCall{1: {onResult: method, method: method, note: note}}}
		compareEncode(t, c, state, b)
	})
}

// readState reads the announced state bytes, and fails as io.ReadAll's
// check did when the stream holds fewer or more.
func TestReadState(t *testing.T) {
	for _, tc := range []struct {
		in      string
		n       int64
		want    string
		wantErr string
	}{
		{"abc", 3, "abc", ""},
		{"", 0, "", ""},
		{"ab", 3, "", "checkpoint announces 3 state bytes, read 2"},
		{"abcd", 3, "", "checkpoint announces 3 state bytes, read 4"},
		{"abcd", maxStatePrealloc + 1, "", fmt.Sprintf("checkpoint announces %d state bytes, read 4", maxStatePrealloc+1)},
	} {
		got, err := readState(strings.NewReader(tc.in), tc.n)
		if errText := fmt.Sprint(err); err == nil && tc.wantErr != "" || err != nil && errText != tc.wantErr {
			t.Fatalf("%q, %d: error %v, want %q", tc.in, tc.n, err, tc.wantErr)
		}
		if err == nil && string(got) != tc.want {
			t.Fatalf("%q, %d: %q", tc.in, tc.n, got)
		}
	}
	if _, err := readState(iotest.ErrReader(errors.New("boom")), 3); err == nil || err.Error() != "read checkpoint state: boom" {
		t.Fatalf("error %v", err)
	}
}

// BenchmarkCheckpoint64MiB: the becoming-primary checkpoint of ambr bench
// recovery (a 48 MiB state in base64, 64 MiB): framed after the output as
// session.checkpoint sends it, through json.Marshal and a copy (reference)
// or appended straight (fast).
func BenchmarkCheckpoint64MiB(b *testing.B) {
	state := make([]byte, 48<<20)
	for i := range state {
		state[i] = byte(i * 7)
	}
	bind := &bindingState{nextCallID: 1}
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(state)))
		for b.Loop() {
			ck, err := encodeCheckpointReference(gobCodec{}, state, bind)
			if err != nil {
				b.Fatal(err)
			}
			out := logfmt.AppendCheckpointMessage(nil, int64(len(ck)))
			_ = append(out, ck...)
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(state)))
		for b.Loop() {
			if _, _, err := appendCheckpoint(nil, gobCodec{}, state, bind, true); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkReadState64MiB: reading the announced state of a 64 MiB
// checkpoint, with io.ReadAll (reference) or readState.
func BenchmarkReadState64MiB(b *testing.B) {
	data := make([]byte, 64<<20)
	b.Run("reference", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := io.ReadAll(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if _, err := readState(bytes.NewReader(data), int64(len(data))); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkDecodeCheckpoint64MiB: what a recovering app does with the
// checkpoint of a 64 MiB state that is not JSON, in the form builds before
// the binary one wrote (base64) and in the binary form.
func BenchmarkDecodeCheckpoint64MiB(b *testing.B) {
	state := make([]byte, 64<<20)
	for i := range state {
		state[i] = byte(i * 7)
	}
	bind := &bindingState{nextCallID: 1}
	for _, form := range []struct {
		name string
		b64  bool
	}{{"base64", true}, {"binary", false}} {
		data, tail, err := appendCheckpointForm(nil, gobCodec{}, state, bind, false, form.b64)
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, tail...)
		b.Run(form.name, func(b *testing.B) {
			b.SetBytes(int64(len(state)))
			for b.Loop() {
				got, _, err := decodeCheckpoint(gobCodec{}, data)
				if err != nil || len(got) != len(state) {
					b.Fatal(len(got), err)
				}
			}
		})
	}
}
