package logfmt

import (
	"fmt"
	"strconv"
)

// RPCKind is the rpc type byte of an RPC: how the caller waits for it.
type RPCKind byte

// RPC kinds. Part of the format.
const (
	// RPCCall is a call with a result (async/await).
	RPCCall RPCKind = 0
	// RPCFork is fire-and-forget.
	RPCFork RPCKind = 1
	// RPCImpulse is fire-and-forget from outside the deterministic world
	// (for example user input): it is logged but not replayed as output.
	// An app must not send one before it is primary.
	RPCImpulse RPCKind = 2
)

// String returns "Call", "Fork" or "Impulse", or "RPCKind(n)" for a value
// that is not in the protocol.
func (k RPCKind) String() string {
	switch k {
	case RPCCall:
		return "Call"
	case RPCFork:
		return "Fork"
	case RPCImpulse:
		return "Impulse"
	}
	return "RPCKind(" + strconv.Itoa(int(k)) + ")"
}

// RPC is the data of a TypeRPC message as the IC delivers it to the app:
//
//	[reserved byte][method id ZigZagInt][rpc kind byte][args...]
//
// The reserved byte and the argument bytes belong to the binding; the IC only
// reads Kind. Negative method ids are reserved for the system.
type RPC struct {
	Reserved byte
	MethodID int32
	Kind     RPCKind
	Args     []byte // aliases the decoded buffer
}

// ParseRPC decodes the data of an incoming RPC message. It does not allocate;
// Args aliases data. If data ends before the rpc kind byte the error wraps
// ErrTruncated; a method id beyond 32 bits or an unknown rpc kind wraps
// ErrMalformed.
func ParseRPC(data []byte) (RPC, error) {
	return parseRPC(data, 0)
}

// parseRPC is ParseRPC for data that starts at offset base of the caller's
// buffer.
func parseRPC(data []byte, base int) (RPC, error) {
	if len(data) == 0 {
		return RPC{}, fmt.Errorf("%w: rpc reserved byte at offset %d: no data", ErrTruncated, base)
	}
	id, n, err := readZigZagInt(data[1:], base+1, "rpc method id")
	if err != nil {
		return RPC{}, err
	}
	k := 1 + n
	if k >= len(data) {
		return RPC{}, fmt.Errorf("%w: rpc kind byte at offset %d: no data", ErrTruncated, base+k)
	}
	kind := RPCKind(data[k])
	if kind > RPCImpulse {
		return RPC{}, fmt.Errorf("%w: unknown rpc kind %d at offset %d", ErrMalformed, kind, base+k)
	}
	return RPC{Reserved: data[0], MethodID: id, Kind: kind, Args: data[k+1:]}, nil
}

// rpcDataLen returns the length of the data of r in its incoming form.
func rpcDataLen(r RPC) int {
	return 1 + ZigZagLen(int64(r.MethodID)) + 1 + len(r.Args)
}

// appendRPCFields appends the four fields of r, without a frame.
func appendRPCFields(dst []byte, r RPC) []byte {
	dst = append(dst, r.Reserved)
	dst = AppendZigZag(dst, int64(r.MethodID))
	dst = append(dst, byte(r.Kind))
	return append(dst, r.Args...)
}

// AppendRPC appends r as a whole framed TypeRPC message in its incoming form
// (IC → app): size, type, then the four fields.
func AppendRPC(dst []byte, r RPC) []byte {
	dst = appendFrameHeader(dst, TypeRPC, rpcDataLen(r))
	return appendRPCFields(dst, r)
}

// OutgoingRPC is the data of a TypeRPC message as the app sends it: the
// destination, then the fields of an incoming RPC.
//
//	[dest len ZigZagInt][dest UTF-8][reserved byte][method id ZigZagInt][rpc kind byte][args...]
//
// An empty destination (length 0, no name) is a self-call. ParseOutgoingRPC
// does not check that Dest is UTF-8 nor that it names a known instance; that
// is the coordinator's business.
type OutgoingRPC struct {
	Dest []byte // aliases the decoded buffer; empty for a self-call
	RPC
	// BodyAt is where the RPC in delivery form starts in the decoded data:
	// after the destination and its length, however long that length's
	// encoding was. Set by ParseOutgoingRPC; not encoded.
	BodyAt int
}

// IsSelf reports whether o is a self-call: its destination is empty.
func (o OutgoingRPC) IsSelf() bool { return len(o.Dest) == 0 }

// ParseOutgoingRPC decodes the data of an outgoing RPC message. It does not
// allocate; Dest and Args alias data. Errors are as for ParseRPC, and a
// negative destination length wraps ErrMalformed.
func ParseOutgoingRPC(data []byte) (OutgoingRPC, error) {
	destLen, n, err := readLength(data, 0, "rpc destination length")
	if err != nil {
		return OutgoingRPC{}, err
	}
	if destLen > len(data)-n {
		return OutgoingRPC{}, fmt.Errorf("%w: rpc destination of %d bytes at offset %d, data holds %d more bytes", ErrTruncated, destLen, n, len(data)-n)
	}
	end := n + destLen
	r, err := parseRPC(data[end:], end)
	if err != nil {
		return OutgoingRPC{}, err
	}
	return OutgoingRPC{Dest: data[n:end:end], RPC: r, BodyAt: end}, nil
}

// DeliveryFormInPlace turns data, the data of an outgoing RPC whose first
// prefix bytes are its destination (length and name), into a framed TypeRPC
// message in delivery form, by writing the frame header over the end of the
// destination. It returns the message, which aliases data, or nil when the
// destination is too short to make room for the header: the caller then
// builds it with AppendMessage(nil, TypeRPC, data[prefix:]). It saves a
// copy per message where the coordinator owns data; the destination bytes
// are gone afterwards.
func DeliveryFormInPlace(data []byte, prefix int) []byte {
	body := len(data) - prefix
	hdr := ZigZagLen(1+int64(body)) + 1
	if hdr > prefix {
		return nil
	}
	appendFrameHeader(data[prefix-hdr:prefix-hdr], TypeRPC, body)
	return data[prefix-hdr : len(data) : len(data)]
}

// AppendOutgoingRPC appends a whole framed TypeRPC message in its outgoing
// form (app → IC): size, type, destination, then the four fields of r. An
// empty dest makes a self-call.
func AppendOutgoingRPC(dst []byte, dest string, r RPC) []byte {
	return AppendOutgoingRPCHead(dst, dest, r, 0)
}

// AppendOutgoingRPCHead appends what AppendOutgoingRPC appends for r with
// tailLen more argument bytes after r.Args, save those bytes: the frame's
// length counts them, and the caller sends them right after the result (a
// large payload written by reference, without copying it into the frame).
// With tailLen 0 it is AppendOutgoingRPC.
func AppendOutgoingRPCHead(dst []byte, dest string, r RPC, tailLen int) []byte {
	dataLen := ZigZagLen(int64(len(dest))) + len(dest) + rpcDataLen(r) + tailLen
	dst = appendFrameHeader(dst, TypeRPC, dataLen)
	dst = AppendZigZag(dst, int64(len(dest)))
	dst = append(dst, dest...)
	return appendRPCFields(dst, r)
}

// AppendRPCBatch appends an RPCBatch message: count (ZigZagInt), then
// framedRPCs, which must hold count framed TypeRPC messages (built with
// AppendRPC or AppendOutgoingRPC).
func AppendRPCBatch(dst []byte, framedRPCs []byte, count int) []byte {
	return append(AppendRPCBatchHead(dst, len(framedRPCs), count), framedRPCs...)
}

// AppendRPCBatchHead appends what AppendRPCBatch appends for count framed
// RPCs of framedLen bytes in all, save those bytes: the caller sends them
// right after the result.
func AppendRPCBatchHead(dst []byte, framedLen, count int) []byte {
	dst = appendFrameHeader(dst, TypeRPCBatch, ZigZagLen(int64(count))+framedLen)
	return AppendZigZag(dst, int64(count))
}

// AppendCountReplayableRPCBatch appends a CountReplayableRPCBatch message:
// count, then replayable, the number of those RPCs that are not impulses
// (both ZigZagInt), then framedRPCs, which must hold count framed TypeRPC
// messages.
func AppendCountReplayableRPCBatch(dst []byte, framedRPCs []byte, count, replayable int) []byte {
	dataLen := ZigZagLen(int64(count)) + ZigZagLen(int64(replayable)) + len(framedRPCs)
	dst = appendFrameHeader(dst, TypeCountReplayableRPCBatch, dataLen)
	dst = AppendZigZag(dst, int64(count))
	dst = AppendZigZag(dst, int64(replayable))
	return append(dst, framedRPCs...)
}

// Batch is the decoded data of an RPCBatch or CountReplayableRPCBatch message.
type Batch struct {
	// Count is the number of RPC messages in the batch.
	Count int
	// Replayable is the number of them that are not impulses, or -1 for an
	// RPCBatch, which does not say.
	Replayable int
	// Messages holds the Count framed RPC messages back to back; it aliases
	// the message's data. Walk it with NewMessageIter, and decode each with
	// ParseRPC (IC → app) or ParseOutgoingRPC (app → IC).
	Messages []byte
}

// Iter returns an iterator over the batch's messages.
func (b Batch) Iter() MessageIter { return NewMessageIter(b.Messages) }

// ParseBatch decodes the data of an RPCBatch or CountReplayableRPCBatch
// message. It checks that the data holds exactly Count framed messages, all of
// TypeRPC, and that 0 ≤ Replayable ≤ Count, but does not decode the RPCs
// themselves (their form depends on the direction) nor count the impulses.
// It does not allocate. Errors wrap ErrTruncated if the data ends inside a
// count or a frame, ErrMalformed otherwise.
func ParseBatch(m Message) (Batch, error) {
	if m.Type != TypeRPCBatch && m.Type != TypeCountReplayableRPCBatch {
		return Batch{}, fmt.Errorf("%w: %v message is not a batch", ErrMalformed, m.Type)
	}
	count, off, err := readLength(m.Data, 0, "batch count")
	if err != nil {
		return Batch{}, err
	}
	b := Batch{Count: count, Replayable: -1}
	if m.Type == TypeCountReplayableRPCBatch {
		replayable, n, err := readLength(m.Data[off:], off, "batch replayable count")
		if err != nil {
			return Batch{}, err
		}
		if replayable > count {
			return Batch{}, fmt.Errorf("%w: batch of %d RPCs claims %d replayable", ErrMalformed, count, replayable)
		}
		b.Replayable = replayable
		off += n
	}
	b.Messages = m.Data[off:]
	it := MessageIter{b: b.Messages, base: off}
	seen := 0
	for {
		start := it.Offset()
		msg, ok := it.Next()
		if !ok {
			break
		}
		if msg.Type != TypeRPC {
			return Batch{}, fmt.Errorf("%w: batch holds a %v message at offset %d", ErrMalformed, msg.Type, off+start)
		}
		seen++
	}
	if err := it.Err(); err != nil {
		return Batch{}, err
	}
	if seen != count {
		return Batch{}, fmt.Errorf("%w: batch announces %d RPCs and holds %d", ErrMalformed, count, seen)
	}
	return b, nil
}
