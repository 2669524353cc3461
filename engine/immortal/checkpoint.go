package immortal

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
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
// The state and notes are embedded as JSON when the codec is JSON; notes are
// base64 strings under "note_b64" otherwise, and a state that is not JSON
// makes the checkpoint binary (binaryCheckpointMagic; earlier builds wrote
// it in base64 under "state_b64", which is still read).
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
	out, tail, err := appendCheckpoint(nil, c, state, b, false)
	return append(out, tail...), err
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

// binaryCheckpointMagic opens the checkpoint of a state the binding stores
// as its bytes (a codec other than JSON, or a JSON codec's state that is not
// valid JSON): the length of the binding's part as a uvarint, the binding's
// part as JSON ({"binding":{...}}: the JSON form without a state), then the
// state's bytes, to the end. A NUL byte never opens JSON, so tools tell the
// two forms apart by the first byte (CheckpointJSON shows this one as the
// other). Before, such a state went into the JSON form in base64 under
// "state_b64" (still read): a third larger, and encoding and decoding it
// made up most of the app's part of recovering a 64 MiB state.
const binaryCheckpointMagic = "\x00ambr-binary\x01"

// appendCheckpoint appends the checkpoint bytes of encodeCheckpoint to dst,
// after the Checkpoint message that announces them if framed. A state
// stored as its bytes (binaryCheckpointMagic) of refPayload bytes or more is
// not copied: it is returned as tail, the bytes that follow the result,
// to be written after it by reference (then nothing may change it until it
// is written); otherwise tail is nil.
func appendCheckpoint(dst []byte, c Codec, state []byte, b *bindingState, framed bool) (out, tail []byte, err error) {
	return appendCheckpointForm(dst, c, state, b, framed, false)
}

// appendCheckpointForm is appendCheckpoint, writing a state that is not
// JSON in base64 under "state_b64" instead of the binary form when
// b64 is set (WithBase64Checkpoints): the bytes json.Marshal wrote, which
// builds before the binary form read.
func appendCheckpointForm(dst []byte, c Codec, state []byte, b *bindingState, framed, b64 bool) (out, tail []byte, err error) {
	ck := checkpointValue(c, state, b)
	if ck.StateB64 == nil {
		out, err := json.Marshal(ck)
		if err != nil {
			return nil, nil, fmt.Errorf("encode checkpoint: %w", err)
		}
		if framed {
			dst = logfmt.AppendCheckpointMessage(dst, int64(len(out)))
		}
		return append(dst, out...), nil, nil
	}
	ck.StateB64 = nil
	meta, err := json.Marshal(ck) // {"binding":...}
	if err != nil {
		return nil, nil, fmt.Errorf("encode checkpoint: %w", err)
	}
	if b64 {
		n := len(b64StatePrefix) + base64.StdEncoding.EncodedLen(len(state)) + len(`",`) + len(meta) - 1
		if framed {
			dst = logfmt.AppendCheckpointMessage(dst, int64(n))
		}
		return appendStateB64(slices.Grow(dst, n), state, meta), nil, nil
	}
	n := len(binaryCheckpointMagic) + uvarintLen(uint64(len(meta))) + len(meta) + len(state)
	if framed {
		dst = logfmt.AppendCheckpointMessage(dst, int64(n))
	}
	if len(state) < refPayload {
		dst = slices.Grow(dst, n)
	}
	dst = append(dst, binaryCheckpointMagic...)
	dst = binary.AppendUvarint(dst, uint64(len(meta)))
	dst = append(dst, meta...)
	if len(state) >= refPayload {
		return dst, state, nil
	}
	return append(dst, state...), nil, nil
}

func uvarintLen(v uint64) int {
	n := 1
	for ; v >= 0x80; v >>= 7 {
		n++
	}
	return n
}

// parseBinaryCheckpoint reads a checkpoint of the binary form into ck: the
// binding's part decoded, the state the rest of data (not copied). ok is
// false if data is not of that form.
func parseBinaryCheckpoint(data []byte, ck *checkpointJSON) (ok bool, err error) {
	rest, found := bytes.CutPrefix(data, []byte(binaryCheckpointMagic))
	if !found {
		return false, nil
	}
	n, k := binary.Uvarint(rest)
	if k <= 0 || n > uint64(len(rest)-k) {
		return true, fmt.Errorf("binary checkpoint of %d bytes: the length of its binding part is cut short or too large", len(data))
	}
	meta, state := rest[k:k+int(n)], rest[k+int(n):]
	// An object whose only member is "binding" (found in review: "null",
	// or a "state_b64":null beside it, decoded here but not as the JSON
	// form CheckpointJSON makes of it).
	var members map[string]json.RawMessage
	if err := json.Unmarshal(meta, &members); err != nil {
		return true, fmt.Errorf("binary checkpoint: its binding part is not a JSON object: %w", err)
	}
	switch _, ok := members["binding"]; {
	case members == nil:
		return true, fmt.Errorf("binary checkpoint: its binding part is null, not an object")
	case !ok:
		return true, fmt.Errorf("binary checkpoint: its binding part has no \"binding\" member")
	case len(members) != 1:
		return true, fmt.Errorf("binary checkpoint: its binding part has members besides \"binding\"")
	}
	if err := json.Unmarshal(meta, ck); err != nil {
		return true, fmt.Errorf("binary checkpoint: its binding part: %w", err)
	}
	ck.StateB64 = &state
	return true, nil
}

// CheckpointJSON returns a checkpoint of this binding in its JSON form, for
// tools that show or compare its parts: a checkpoint of the binary form
// (a state that is not JSON) as {"state_b64": …, "binding": …}, byte for
// byte what builds before the binary form wrote, and any other bytes as
// they are.
func CheckpointJSON(b []byte) []byte {
	var ck checkpointJSON
	if ok, err := parseBinaryCheckpoint(b, &ck); !ok || err != nil {
		return b
	}
	meta := binaryCheckpointMeta(b)
	state := *ck.StateB64
	out := make([]byte, 0, len(b64StatePrefix)+base64.StdEncoding.EncodedLen(len(state))+len(meta)+2)
	return appendStateB64(out, state, meta)
}

// appendStateB64 appends the JSON form of a checkpoint whose binding's
// part is meta, a JSON object ({"binding":...}), and whose state is not
// JSON: {"state_b64":"<base64>", then meta's members, as json.Marshal
// orders them.
func appendStateB64(dst, state, meta []byte) []byte {
	dst = append(dst, b64StatePrefix...)
	dst = base64.StdEncoding.AppendEncode(dst, state)
	rest := bytes.TrimLeft(meta, " \t\r\n")[1:]
	if r := bytes.TrimLeft(rest, " \t\r\n"); len(r) > 0 && r[0] == '}' {
		return append(dst, `"}`...)
	}
	dst = append(dst, `",`...)
	return append(dst, rest...)
}

// binaryCheckpointMeta returns the binding's part of a checkpoint that
// parseBinaryCheckpoint took.
func binaryCheckpointMeta(b []byte) []byte {
	rest := b[len(binaryCheckpointMagic):]
	n, k := binary.Uvarint(rest)
	return rest[k : k+int(n)]
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

// unmarshalCheckpoint decodes checkpoint bytes into ck: the binary form
// (parseBinaryCheckpoint), or json.Unmarshal(data, ck), with a fast path for a
// checkpoint that opens with a base64 state as encodeCheckpoint writes it:
// the state (nearly all of a large checkpoint) is base64-decoded in place
// instead of being validated, unquoted and copied by encoding/json (which
// made up most of recovering a 64 MiB checkpoint), and only the rest goes
// through json.Unmarshal. Anything the fast path does not take exactly as
// encoding/json would (escapes, line breaks, which base64 skips and JSON
// forbids, invalid base64, an error in the rest) falls back to
// json.Unmarshal of the whole, so results and errors are the same.
func unmarshalCheckpoint(data []byte, ck *checkpointJSON) error {
	if ok, err := parseBinaryCheckpoint(data, ck); ok {
		return err
	}
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
