package bench

import (
	"encoding"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// rawCodec is the throughput and recovery apps' codec: payloads ([]byte) go
// as they are, int64 as 8 bytes, types with binary marshalers through them,
// everything else as JSON. It keeps the binding's per-message work to the
// envelope, as an app tuned for throughput would. A []byte is marshalled as
// itself: handlers must not change one they sent (the bench handlers do not).
type rawCodec struct{}

func (rawCodec) Name() string { return "ambr-bench-raw" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case int64:
		return binary.LittleEndian.AppendUint64(nil, uint64(x)), nil
	case encoding.BinaryMarshaler:
		return x.MarshalBinary()
	}
	return json.Marshal(v)
}

// Unmarshal into *[]byte aliases data: handlers must not keep it past their
// return (the bench handlers do not).
func (rawCodec) Unmarshal(data []byte, v any) error {
	switch x := v.(type) {
	case *[]byte:
		*x = data
		return nil
	case *int64:
		if len(data) != 8 {
			return fmt.Errorf("int64 of %d bytes", len(data))
		}
		*x = int64(binary.LittleEndian.Uint64(data))
		return nil
	case encoding.BinaryUnmarshaler:
		return x.UnmarshalBinary(data)
	}
	return json.Unmarshal(data, v)
}
