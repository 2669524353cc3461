package immortal

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/ambr-dev/ambr/logfmt"
)

// bindingState is the binding's own part of the app's state: the bookkeeping
// of calls with a result. It is checkpointed with the user's state, so that
// a call pending when a checkpoint is taken finds its result handler and note
// after recovery.
type bindingState struct {
	nextCallID int64 // the id the next call gets; ids start at 1
	pending    map[int64]pendingCall
	dur        *DurableState // orchestrations, timers, entities; nil until used
	// stateType names the Go type the state was encoded from (see
	// WithStateType): a build never decodes a state of another type.
	stateType string
}

func newBindingState() bindingState {
	return bindingState{nextCallID: 1, pending: map[int64]pendingCall{}}
}

// pendingCall is a call whose result has not arrived yet.
type pendingCall struct {
	onResult string // name of the HandleResult handler
	method   string // method called, for errors and tools
	dest     string // instance called, "" for self
	note     []byte // codec bytes, nil if the caller gave no note
	orch     string // the orchestration whose step this is, "" for a HandleResult call
	step     int    // the step of orch
}

// The checkpoint bytes, as the coordinator stores them and tools show them:
//
//	{"state": <codec bytes>, "binding": {"codec": "json", "next_call_id": 3,
//	 "pending": {"2": {"on_result": "doubled", "method": "double", "note": ...}},
//	 "state_type": "example.com/app/bank.Account"}}
//
// The state and notes are embedded as JSON when the codec is JSON, and as
// base64 strings under "state_b64" and "note_b64" otherwise.
type checkpointJSON struct {
	State    json.RawMessage `json:"state,omitempty"`
	StateB64 *[]byte         `json:"state_b64,omitempty"`
	Binding  bindingJSON     `json:"binding"`
}

type bindingJSON struct {
	Codec      string                 `json:"codec"`
	NextCallID int64                  `json:"next_call_id"`
	Pending    map[string]pendingJSON `json:"pending"`
	Durable    *DurableState          `json:"durable,omitempty"`
	// StateType is the type the state was encoded from; absent in
	// checkpoints of builds before it was recorded.
	StateType string `json:"state_type,omitempty"`
}

type pendingJSON struct {
	OnResult string          `json:"on_result"`
	Method   string          `json:"method"`
	Dest     string          `json:"dest,omitempty"`
	Note     json.RawMessage `json:"note,omitempty"`
	NoteB64  *[]byte         `json:"note_b64,omitempty"`
	Orch     string          `json:"orchestration,omitempty"`
	Step     int             `json:"step,omitempty"`
}

// embed returns b as JSON to embed if the codec is JSON and b is valid JSON,
// and otherwise as bytes to store in base64. A nil b gives neither.
func embed(c Codec, b []byte) (json.RawMessage, *[]byte) {
	if b == nil {
		return nil, nil
	}
	if c.Name() == (JSONCodec{}).Name() && json.Valid(b) {
		return json.RawMessage(b), nil
	}
	return nil, &b
}

// unembed is the inverse of embed.
func unembed(raw json.RawMessage, b64 *[]byte) []byte {
	switch {
	case raw != nil:
		return []byte(raw)
	case b64 != nil:
		return *b64 // decoded into a slice of its own
	}
	return nil
}

// encodeCheckpoint returns the checkpoint bytes for the state, encoded with
// c, and the binding's bookkeeping.
func encodeCheckpoint(c Codec, state []byte, b *bindingState) ([]byte, error) {
	return appendCheckpoint(nil, c, state, b, false)
}

// checkpointValue is what the binding's checkpoint holds, as json.Marshal
// would encode it.
func checkpointValue(c Codec, state []byte, b *bindingState) checkpointJSON {
	ck := checkpointJSON{Binding: bindingJSON{
		Codec:      c.Name(),
		NextCallID: b.nextCallID,
		Pending:    make(map[string]pendingJSON, len(b.pending)),
		Durable:    b.dur,
		StateType:  b.stateType,
	}}
	if state == nil {
		state = []byte{}
	}
	ck.State, ck.StateB64 = embed(c, state)
	for id, p := range b.pending {
		pj := pendingJSON{OnResult: p.onResult, Method: p.method, Dest: p.dest, Orch: p.orch, Step: p.step}
		pj.Note, pj.NoteB64 = embed(c, p.note)
		ck.Binding.Pending[strconv.FormatInt(id, 10)] = pj
	}
	return ck
}

// appendCheckpoint appends the checkpoint bytes of encodeCheckpoint to dst,
// after the Checkpoint message that announces them if framed. The bytes are
// json.Marshal's, but a state stored in base64 (a codec other than JSON:
// nearly all of a large checkpoint) is base64-encoded straight into dst:
// json.Marshal would encode it into a buffer of its own, growing it, and
// the caller copy it again (made up most of the becoming-primary checkpoint
// of a 64 MiB state). json.Marshal writes the field first, as
// {"state_b64":"<base64>", then the rest of the object, which is what
// json.Marshal makes of the checkpoint without it, from its first key on.
func appendCheckpoint(dst []byte, c Codec, state []byte, b *bindingState, framed bool) ([]byte, error) {
	ck := checkpointValue(c, state, b)
	if ck.StateB64 == nil {
		out, err := json.Marshal(ck)
		if err != nil {
			return nil, fmt.Errorf("encode checkpoint: %w", err)
		}
		if framed {
			dst = logfmt.AppendCheckpointMessage(dst, int64(len(out)))
		}
		return append(dst, out...), nil
	}
	ck.StateB64 = nil
	rest, err := json.Marshal(ck) // {"binding":...}
	if err != nil {
		return nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	if len(rest) < 2 || rest[0] != '{' || rest[1] != '"' {
		return nil, fmt.Errorf("encode checkpoint: internal error: the rest encodes as %.20q", rest)
	}
	n := len(b64StatePrefix) + base64.StdEncoding.EncodedLen(len(state)) + len(`",`) + len(rest) - 1
	if framed {
		dst = logfmt.AppendCheckpointMessage(dst, int64(n))
	}
	dst = slices.Grow(dst, n)
	dst = append(dst, b64StatePrefix...)
	dst = base64.StdEncoding.AppendEncode(dst, state)
	dst = append(dst, `",`...)
	return append(dst, rest[1:]...), nil
}

// decodeCheckpoint parses checkpoint bytes made by encodeCheckpoint with a
// codec of the same name and returns the state's codec bytes and the
// binding's bookkeeping.
func decodeCheckpoint(c Codec, data []byte) ([]byte, bindingState, error) {
	var ck checkpointJSON
	if err := unmarshalCheckpoint(data, &ck); err != nil {
		return nil, bindingState{}, fmt.Errorf("checkpoint is not an ambr checkpoint (%d bytes): %w", len(data), err)
	}
	if ck.Binding.Codec != c.Name() {
		return nil, bindingState{}, fmt.Errorf("checkpoint was made with codec %q, the app uses %q", ck.Binding.Codec, c.Name())
	}
	if ck.Binding.NextCallID < 1 {
		return nil, bindingState{}, fmt.Errorf("checkpoint has next_call_id %d, want at least 1", ck.Binding.NextCallID)
	}
	b := bindingState{nextCallID: ck.Binding.NextCallID, pending: make(map[int64]pendingCall, len(ck.Binding.Pending)), dur: ck.Binding.Durable, stateType: ck.Binding.StateType}
	for key, pj := range ck.Binding.Pending {
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil || id < 1 || id >= b.nextCallID {
			return nil, bindingState{}, fmt.Errorf("checkpoint has a pending call with id %q, want 1 to %d", key, b.nextCallID-1)
		}
		b.pending[id] = pendingCall{onResult: pj.OnResult, method: pj.Method, dest: pj.Dest, note: unembed(pj.Note, pj.NoteB64), orch: pj.Orch, step: pj.Step}
	}
	state := unembed(ck.State, ck.StateB64)
	if state == nil {
		return nil, bindingState{}, fmt.Errorf("checkpoint has neither \"state\" nor \"state_b64\"")
	}
	return state, b, nil
}

// b64StatePrefix opens a checkpoint that encodeCheckpoint wrote with a codec
// other than JSON: json.Marshal puts state_b64 first, without spaces.
const b64StatePrefix = `{"state_b64":"`

// unmarshalCheckpoint is json.Unmarshal(data, ck), with a fast path for a
// checkpoint that opens with a base64 state as encodeCheckpoint writes it:
// the state (nearly all of a large checkpoint) is base64-decoded in place
// instead of being validated, unquoted and copied by encoding/json (which
// made up most of recovering a 64 MiB checkpoint), and only the rest goes
// through json.Unmarshal. Anything the fast path does not take exactly as
// encoding/json would (escapes, line breaks, which base64 skips and JSON
// forbids, invalid base64, an error in the rest) falls back to
// json.Unmarshal of the whole, so results and errors are the same.
func unmarshalCheckpoint(data []byte, ck *checkpointJSON) error {
	if fastUnmarshalCheckpoint(data, ck) {
		return nil
	}
	*ck = checkpointJSON{}
	return json.Unmarshal(data, ck)
}

func fastUnmarshalCheckpoint(data []byte, ck *checkpointJSON) bool {
	if !bytes.HasPrefix(data, []byte(b64StatePrefix)) {
		return false
	}
	s := data[len(b64StatePrefix):]
	end := bytes.IndexByte(s, '"')
	if end < 0 || end+1 >= len(s) || s[end+1] != ',' {
		return false
	}
	enc := s[:end]
	if bytes.IndexByte(enc, '\\') >= 0 || bytes.IndexByte(enc, '\r') >= 0 || bytes.IndexByte(enc, '\n') >= 0 {
		return false
	}
	state := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(state, enc)
	if err != nil {
		return false
	}
	state = state[:n]
	// The rest as an object of its own: "{" and what follows the comma,
	// which must be a key ("{" then "}" alone would accept a trailing comma).
	if k := bytes.TrimLeft(s[end+2:], " \t\r\n"); len(k) == 0 || k[0] != '"' {
		return false
	}
	rest := make([]byte, 0, 1+len(s)-end-2)
	rest = append(append(rest, '{'), s[end+2:]...)
	ck.StateB64 = &state
	if err := json.Unmarshal(rest, ck); err != nil {
		return false
	}
	return true
}
