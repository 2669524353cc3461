package logfmt

import (
	"fmt"
	"math"
	"strconv"
)

// MessageType is the type byte of a framed message.
type MessageType byte

// Message types. Part of the format: the values are AMBROSIA's and every
// binding depends on them.
const (
	// TypeRPC carries one RPC: IncomingRPC data from the IC, OutgoingRPC data
	// from the app.
	TypeRPC MessageType = 0
	// TypeAttachTo (app → IC) names a destination instance, UTF-8, before the
	// first RPC the app sends to it.
	TypeAttachTo MessageType = 1
	// TypeTakeCheckpoint has no data. From the IC: send a checkpoint. From
	// the app: checkpoint now, without waiting for the log size trigger.
	TypeTakeCheckpoint MessageType = 2
	// TypeRPCBatch carries a count (ZigZagInt), then that many framed RPC
	// messages.
	TypeRPCBatch MessageType = 5
	// TypeCheckpoint carries the state length N (ZigZagLong); the N state
	// bytes follow the message directly on the stream, outside its frame.
	TypeCheckpoint MessageType = 8
	// TypeInitialMessage carries any bytes; the IC echoes them back as the
	// first input so that the app can bootstrap.
	TypeInitialMessage MessageType = 9
	// TypeUpgradeTakeCheckpoint (IC → app, no data): switch state and code to
	// the new version, then send a checkpoint.
	TypeUpgradeTakeCheckpoint MessageType = 10
	// TypeTakeBecomingPrimaryCheckpoint (IC → app, no data): you are primary;
	// send a checkpoint.
	TypeTakeBecomingPrimaryCheckpoint MessageType = 11
	// TypeUpgradeService (IC → app, no data): switch to the new version now
	// (upgrade test).
	TypeUpgradeService MessageType = 12
	// TypeCountReplayableRPCBatch (IC → app) is an RPCBatch with a second
	// count after the first: how many of the RPCs are not impulses.
	TypeCountReplayableRPCBatch MessageType = 13
	// TypeTrimTo is exchanged between ICs only and never sent to an app. Its
	// data is opaque to this package.
	TypeTrimTo MessageType = 14
	// TypeBecomingPrimary (IC → app, no data): you are primary; no checkpoint
	// wanted.
	TypeBecomingPrimary MessageType = 15
)

var messageTypeNames = [...]string{
	TypeRPC:                           "RPC",
	TypeAttachTo:                      "AttachTo",
	TypeTakeCheckpoint:                "TakeCheckpoint",
	TypeRPCBatch:                      "RPCBatch",
	TypeCheckpoint:                    "Checkpoint",
	TypeInitialMessage:                "InitialMessage",
	TypeUpgradeTakeCheckpoint:         "UpgradeTakeCheckpoint",
	TypeTakeBecomingPrimaryCheckpoint: "TakeBecomingPrimaryCheckpoint",
	TypeUpgradeService:                "UpgradeService",
	TypeCountReplayableRPCBatch:       "CountReplayableRPCBatch",
	TypeTrimTo:                        "TrimTo",
	TypeBecomingPrimary:               "BecomingPrimary",
}

// String returns the protocol's name of t ("RPC", "AttachTo", ...), or
// "Type(n)" for a value that is not in the protocol.
func (t MessageType) String() string {
	if t.IsKnown() {
		return messageTypeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// IsKnown reports whether t is one of the message types of the protocol.
// Framing does not depend on it: decoders return messages of unknown types
// and leave the decision to the caller.
func (t MessageType) IsKnown() bool {
	return int(t) < len(messageTypeNames) && messageTypeNames[t] != ""
}

// Message is one framed message:
//
//	[size ZigZagInt = 1 + len(Data)][type byte][Data]
//
// Data aliases the buffer the message was decoded from. For TypeCheckpoint,
// Data holds only the ZigZagLong state length; the state bytes follow the
// frame (see CheckpointStateLen).
type Message struct {
	Type MessageType
	Data []byte
}

// maxFrameSize is the largest size field a frame can have: the field is a
// ZigZagInt.
const maxFrameSize = math.MaxInt32

// EncodedLen returns the number of bytes AppendMessage writes for m.
func (m Message) EncodedLen() int {
	size := 1 + len(m.Data)
	return ZigZagLen(int64(size)) + size
}

// AppendMessage appends the frame of a message of type t with the given data.
// It panics if 1+len(data) does not fit a ZigZagInt.
func AppendMessage(dst []byte, t MessageType, data []byte) []byte {
	dst = appendFrameHeader(dst, t, len(data))
	return append(dst, data...)
}

// appendFrameHeader appends the size and type of a frame whose data is
// dataLen bytes long.
func appendFrameHeader(dst []byte, t MessageType, dataLen int) []byte {
	size := 1 + int64(dataLen)
	if size > maxFrameSize {
		panic(fmt.Sprintf("logfmt: %v message data of %d bytes exceeds the frame limit", t, dataLen))
	}
	dst = AppendZigZag(dst, size)
	return append(dst, byte(t))
}

// ParseMessage decodes the message framed at the start of b and returns it
// and n, the length of its frame. It does not allocate; m.Data aliases b. If b
// ends inside the frame the error wraps ErrTruncated (a stream reader needs
// more bytes); a size below 1 or above a ZigZagInt wraps ErrMalformed.
// ParseMessage does not look at the type, and for a Checkpoint message n does
// not include the state bytes that follow the frame.
func ParseMessage(b []byte) (m Message, n int, err error) {
	return parseMessage(b, 0)
}

// parseMessage is ParseMessage for a b that starts at offset base of the
// caller's buffer; errors report offsets in that buffer.
func parseMessage(b []byte, base int) (Message, int, error) {
	size, n, err := readZigZagAt(b, base, "message size")
	if err != nil {
		return Message{}, 0, err
	}
	if size < 1 || size > maxFrameSize {
		return Message{}, 0, fmt.Errorf("%w: message size %d at offset %d (want 1 to %d)", ErrMalformed, size, base, maxFrameSize)
	}
	if size > int64(len(b)-n) {
		return Message{}, 0, fmt.Errorf("%w: message at offset %d has size %d, input holds %d more bytes", ErrTruncated, base, size, len(b)-n)
	}
	end := n + int(size)
	return Message{Type: MessageType(b[n]), Data: b[n+1 : end : end]}, end, nil
}

// CheckpointStateLen returns N, the number of state bytes that follow a
// Checkpoint message on the stream. The error wraps ErrMalformed if m is not
// a Checkpoint message, if its data is not exactly one ZigZagLong, or if N
// is negative.
func (m Message) CheckpointStateLen() (int64, error) {
	if m.Type != TypeCheckpoint {
		return 0, fmt.Errorf("%w: %v message has no checkpoint state length", ErrMalformed, m.Type)
	}
	n, k, err := readZigZagAt(m.Data, 0, "checkpoint state length")
	if err != nil {
		return 0, err
	}
	if k != len(m.Data) {
		return 0, fmt.Errorf("%w: checkpoint message has %d bytes after its state length", ErrMalformed, len(m.Data)-k)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: negative checkpoint state length %d", ErrMalformed, n)
	}
	return n, nil
}

// AppendCheckpointMessage appends the frame of a Checkpoint message that
// announces stateLen state bytes. It writes the frame only: the caller writes
// the state bytes right after it. A 804-byte state gives 06 08 c8 0c. It
// panics if stateLen is negative.
func AppendCheckpointMessage(dst []byte, stateLen int64) []byte {
	if stateLen < 0 {
		panic(fmt.Sprintf("logfmt: negative checkpoint state length %d", stateLen))
	}
	dst = appendFrameHeader(dst, TypeCheckpoint, ZigZagLen(stateLen))
	return AppendZigZag(dst, stateLen)
}

// AppendAttachTo appends an AttachTo message for the destination instance
// dest, which should be UTF-8.
func AppendAttachTo(dst []byte, dest string) []byte {
	dst = appendFrameHeader(dst, TypeAttachTo, len(dest))
	return append(dst, dest...)
}

// AppendInitialMessage appends an InitialMessage carrying payload. Bindings
// usually put a framed incoming RPC there, which the IC hands back as the
// first input.
func AppendInitialMessage(dst, payload []byte) []byte {
	return AppendMessage(dst, TypeInitialMessage, payload)
}

// AppendControl appends a message without data: TakeCheckpoint,
// TakeBecomingPrimaryCheckpoint, UpgradeTakeCheckpoint, UpgradeService or
// BecomingPrimary. Its frame is two bytes: 02 and t.
func AppendControl(dst []byte, t MessageType) []byte {
	return appendFrameHeader(dst, t, 0)
}

// MessageIter walks framed messages packed back to back, as in a record body
// or the contents of a batch, without allocating:
//
//	it := logfmt.NewMessageIter(body)
//	for m, ok := it.Next(); ok; m, ok = it.Next() {
//		...
//	}
//	if err := it.Err(); err != nil {
//		...
//	}
//
// A Checkpoint message's state bytes are never inline in such a sequence, so
// the iterator treats it like any other frame.
type MessageIter struct {
	b    []byte
	off  int
	base int // offset of b in the caller's buffer, for errors
	err  error
}

// NewMessageIter returns an iterator over the messages framed in b.
func NewMessageIter(b []byte) MessageIter {
	return MessageIter{b: b}
}

// Next returns the next message and true, or false at the end of the input or
// at the first message that does not decode (see Err). The message's Data
// aliases the iterated buffer.
func (it *MessageIter) Next() (Message, bool) {
	if it.err != nil || it.off >= len(it.b) {
		return Message{}, false
	}
	m, n, err := parseMessage(it.b[it.off:], it.base+it.off)
	if err != nil {
		it.err = err
		return Message{}, false
	}
	it.off += n
	return m, true
}

// Err returns the error that stopped the iteration, or nil if it reached the
// end of the input cleanly. An input that ends inside a frame gives an error
// that wraps ErrTruncated.
func (it *MessageIter) Err() error { return it.err }

// Offset returns the number of bytes of the input consumed so far: the offset
// of the next message, or of the one that failed to decode.
func (it *MessageIter) Offset() int { return it.off }
