package logfmt

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cespare/xxhash/v2"
)

// WireHeaderSize is the length of the header the IC puts before every record
// it sends to the app. Part of the format.
const WireHeaderSize = 24

// Sequence ids with a special meaning in a wire record header. Part of the
// format. Records from the log have ids ≥ 0, consecutive.
const (
	// SeqControl marks a control record the IC makes up for the app; it does
	// not come from the log.
	SeqControl = -1
	// SeqCheckpointRecord marks the record that carries the checkpoint to
	// recover from.
	SeqCheckpointRecord = -2
)

// WireHeader is the 24-byte header of a record sent by the IC to the app. All
// fields are little-endian and fixed-size:
//
//	bytes 0–3    CommitterID  IntFixed
//	bytes 4–7    Size         IntFixed  whole record, header included
//	bytes 8–15   CheckBytes   LongFixed over the record body
//	bytes 16–23  Seq          LongFixed
//
// A record's body, Size−WireHeaderSize bytes, is framed messages packed back
// to back. If its last message is a Checkpoint message, the state bytes follow
// the record on the stream, outside Size.
type WireHeader struct {
	// CommitterID identifies the sending instance; it is constant for the
	// life of the instance.
	CommitterID int32
	// Size is the length of the whole record, header included.
	Size int32
	// CheckBytes is a check over the record body. ambr's IC writes
	// CheckBytes(body); bindings may ignore it.
	CheckBytes int64
	// Seq is the record's sequence id: ≥ 0 for records from the log,
	// SeqControl or SeqCheckpointRecord otherwise.
	Seq int64
}

// BodyLen returns the length of the record body: Size − WireHeaderSize.
func (h WireHeader) BodyLen() int { return int(h.Size) - WireHeaderSize }

// AppendWireHeader appends the 24 bytes of h.
func AppendWireHeader(dst []byte, h WireHeader) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.CommitterID))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(h.Size))
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.CheckBytes))
	return binary.LittleEndian.AppendUint64(dst, uint64(h.Seq))
}

// ParseWireHeader decodes the header at the start of b. If b is shorter than
// WireHeaderSize the error wraps ErrTruncated; a Size smaller than the header
// or a sequence id below SeqCheckpointRecord wraps ErrMalformed. It does not
// check CheckBytes, which covers the body.
func ParseWireHeader(b []byte) (WireHeader, error) {
	if len(b) < WireHeaderSize {
		return WireHeader{}, fmt.Errorf("%w: wire record header needs %d bytes, input holds %d", ErrTruncated, WireHeaderSize, len(b))
	}
	h := WireHeader{
		CommitterID: int32(binary.LittleEndian.Uint32(b[0:])),
		Size:        int32(binary.LittleEndian.Uint32(b[4:])),
		CheckBytes:  int64(binary.LittleEndian.Uint64(b[8:])),
		Seq:         int64(binary.LittleEndian.Uint64(b[16:])),
	}
	if h.Size < WireHeaderSize {
		return WireHeader{}, fmt.Errorf("%w: wire record size %d is smaller than its header", ErrMalformed, h.Size)
	}
	if h.Seq < SeqCheckpointRecord {
		return WireHeader{}, fmt.Errorf("%w: wire record sequence id %d", ErrMalformed, h.Seq)
	}
	return h, nil
}

// CheckBytes returns the check bytes ambr's IC puts in the header of a record
// with the given body: the xxhash64 of the body, as an int64.
func CheckBytes(body []byte) int64 {
	return int64(xxhash.Sum64(body))
}

// AppendWireRecord appends a whole wire record: a header with the given
// committer id and sequence id, Size computed and CheckBytes(body), then
// body, which should be framed messages. If the body ends with a Checkpoint
// message, the caller writes the state bytes after the record. It panics if
// the record would exceed the 2 GiB that Size can describe.
func AppendWireRecord(dst []byte, committer int32, seq int64, body []byte) []byte {
	size := int64(WireHeaderSize) + int64(len(body))
	if size > math.MaxInt32 {
		panic(fmt.Sprintf("logfmt: wire record body of %d bytes exceeds the record size limit", len(body)))
	}
	dst = AppendWireHeader(dst, WireHeader{
		CommitterID: committer,
		Size:        int32(size),
		CheckBytes:  CheckBytes(body),
		Seq:         seq,
	})
	return append(dst, body...)
}
