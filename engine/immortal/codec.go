package immortal

import "encoding/json"

// A Codec turns values into bytes and back: handler arguments and results,
// call notes, init args, and the app's state in checkpoints. Both ends of a
// call must use the same codec. Marshal must be deterministic (the same value
// gives the same bytes), because replay compares the output it regenerates
// with the output first produced.
//
// The bytes Marshal returns belong to the binding: a large payload (64 KiB
// or more) is sent by reference, after the handler that sent it has
// returned, and so is a large state that is not JSON in a checkpoint
// (written before the next record is handled), so Marshal may return bytes
// of v itself (a []byte as it is) only if the app does not change them
// afterwards.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
	// Name identifies the codec in checkpoints ("json"); a checkpoint made
	// with another codec is refused.
	Name() string
}

// JSONCodec is the default Codec: encoding/json. Checkpoints embed a JSON
// state as JSON, so tools show it as it is. Only exported fields survive, as
// with encoding/json anywhere.
type JSONCodec struct{}

// Marshal implements Codec.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Name implements Codec; it returns "json".
func (JSONCodec) Name() string { return "json" }
