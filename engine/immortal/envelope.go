package immortal

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/ambr-dev/ambr/logfmt"
)

// EnvelopeVersion is the first byte of every envelope this package writes.
// Part of the format: a binding that reads an envelope with another version
// refuses it.
const EnvelopeVersion = 1

// FlagError is bit 0 of an envelope's flags: the envelope is the result of a
// call that failed, and its payload is the error text (UTF-8), not a
// codec-encoded value. Part of the format; the other bits are zero.
const FlagError byte = 1 << 0

// Values of the reserved byte of an RPC (logfmt.RPC.Reserved) sent by this
// package. Part of the format.
const (
	// ReservedRequest marks a request: a call, fork or impulse of a method.
	ReservedRequest byte = 0
	// ReservedResult marks the result of a call, sent back to the caller.
	ReservedResult byte = 1
)

// ErrBadEnvelope is wrapped by the errors of ParseEnvelope.
var ErrBadEnvelope = errors.New("immortal: malformed envelope")

// Envelope is what this package puts in the argument bytes of an RPC, and in
// the data of the InitialMessage. The coordinator never reads it. See the
// package doc for the byte layout.
type Envelope struct {
	// Flags holds FlagError; other bits are zero.
	Flags byte
	// Method is the name of the method to run; empty in results and in the
	// InitialMessage.
	Method string
	// CallID numbers a call with a result at the caller; 0 for forks,
	// impulses and the InitialMessage. A result carries the id of its call.
	CallID int64
	// Time is the sender's logical time in Unix nanoseconds. It becomes
	// Ctx.Now of the handler that processes the message.
	Time int64
	// ReplyTo is the instance that wants the result of a call; empty
	// otherwise.
	ReplyTo string
	// Payload is codec bytes: arguments, a result, or (with FlagError) the
	// error text. ParseEnvelope makes it alias its input.
	Payload []byte
}

// Append appends the encoding of e to dst.
func (e Envelope) Append(dst []byte) []byte {
	dst = append(dst, EnvelopeVersion, e.Flags)
	dst = appendString(dst, e.Method)
	dst = logfmt.AppendZigZag(dst, e.CallID)
	dst = logfmt.AppendZigZag(dst, e.Time)
	dst = appendString(dst, e.ReplyTo)
	return append(dst, e.Payload...)
}

// ParseEnvelope decodes an envelope. The Payload of the result aliases b.
// Errors wrap ErrBadEnvelope.
func ParseEnvelope(b []byte) (Envelope, error) {
	r, err := parseEnvelope(b)
	if err != nil {
		return Envelope{}, err
	}
	return Envelope{Flags: r.flags, Method: string(r.method), CallID: r.callID, Time: r.time, ReplyTo: string(r.replyTo), Payload: r.payload}, nil
}

// rawEnvelope is a decoded envelope whose method name and reply-to instance
// alias the input, as bytes: the session turns them into strings only where
// a string is kept, so that reading a message does not allocate.
type rawEnvelope struct {
	flags   byte
	method  []byte
	callID  int64
	time    int64
	replyTo []byte
	payload []byte
}

// parseEnvelope is ParseEnvelope without allocation: everything in the
// result aliases b. The strings are checked to be UTF-8 all the same.
func parseEnvelope(b []byte) (rawEnvelope, error) {
	if len(b) < 2 {
		return rawEnvelope{}, fmt.Errorf("%w: %d bytes, want at least 2", ErrBadEnvelope, len(b))
	}
	if b[0] != EnvelopeVersion {
		return rawEnvelope{}, fmt.Errorf("%w: version %d, want %d", ErrBadEnvelope, b[0], EnvelopeVersion)
	}
	e := rawEnvelope{flags: b[1]}
	off := 2
	var err error
	if e.method, off, err = readString(b, off, "method name"); err != nil {
		return rawEnvelope{}, err
	}
	if e.callID, off, err = readInt(b, off, "call id", ""); err != nil {
		return rawEnvelope{}, err
	}
	if e.callID < 0 {
		return rawEnvelope{}, fmt.Errorf("%w: negative call id %d", ErrBadEnvelope, e.callID)
	}
	if e.time, off, err = readInt(b, off, "time", ""); err != nil {
		return rawEnvelope{}, err
	}
	if e.replyTo, off, err = readString(b, off, "reply-to instance"); err != nil {
		return rawEnvelope{}, err
	}
	e.payload = b[off:]
	return e, nil
}

// MethodID returns the method id that goes in the RPC for the method name:
// the 32-bit FNV-1a hash of the name with the sign bit cleared, since
// negative ids are reserved for the system. Part of the format.
func MethodID(name string) int32 { return methodID(name) }

// methodID is MethodID for a name held as a string or as bytes. It computes
// FNV-1a itself (TestMethodID pins it to hash/fnv's values) because that is
// cheaper than going through hash.Hash32, which copies a string name into a
// []byte, and as cheap as looking a cached id up in a map.
func methodID[T string | []byte](name T) int32 {
	const (
		offset32 = 2166136261
		prime32  = 16777619
	)
	h := uint32(offset32)
	for i := 0; i < len(name); i++ {
		h ^= uint32(name[i])
		h *= prime32
	}
	return int32(h & math.MaxInt32)
}

func appendString(dst []byte, s string) []byte {
	dst = logfmt.AppendZigZag(dst, int64(len(s)))
	return append(dst, s...)
}

// readInt reads a ZigZag integer at off. The field is named what+suffix in
// errors; the two are joined only then, so that a successful read does not
// allocate.
func readInt(b []byte, off int, what, suffix string) (int64, int, error) {
	v, n, err := logfmt.ReadZigZag(b[off:])
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s%s at offset %d: %v", ErrBadEnvelope, what, suffix, off, err)
	}
	return v, off + n, nil
}

// readString reads a length-prefixed UTF-8 string at off. The result aliases
// b.
func readString(b []byte, off int, what string) ([]byte, int, error) {
	n, off, err := readInt(b, off, what, " length")
	if err != nil {
		return nil, 0, err
	}
	if n < 0 || n > int64(len(b)-off) {
		return nil, 0, fmt.Errorf("%w: %s of %d bytes at offset %d, %d bytes left", ErrBadEnvelope, what, n, off, len(b)-off)
	}
	s := b[off : off+int(n)]
	if !utf8.Valid(s) {
		return nil, 0, fmt.Errorf("%w: %s at offset %d is not UTF-8", ErrBadEnvelope, what, off)
	}
	return s, off + int(n), nil
}

// DecodeArgs recognises this binding's envelope in an RPC's arguments, for
// tools that show logs: the method name, whether the RPC is a call's result,
// and the payload (codec bytes). ok is false for arguments of another
// binding.
func DecodeArgs(args []byte, reserved byte) (method string, result bool, payload []byte, ok bool) {
	e, err := ParseEnvelope(args)
	if err != nil {
		return "", false, nil, false
	}
	return e.Method, reserved == ReservedResult, e.Payload, true
}
