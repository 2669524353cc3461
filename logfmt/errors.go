package logfmt

import "errors"

// Errors returned by the decoders in this package. Decoders wrap them with the
// offset and the reason, so callers test with errors.Is and print the whole error.
var (
	// ErrTruncated: the input ends in the middle of an item (a varint, a
	// message, a header). On a stream it means "need more bytes".
	ErrTruncated = errors.New("logfmt: truncated input")
	// ErrMalformed: the bytes do not form a valid item of the protocol
	// (a negative length, an overflowing varint, an unknown type where one is
	// required, a count that does not match the bytes).
	ErrMalformed = errors.New("logfmt: malformed input")
	// ErrTornTail: a log segment ends with an incomplete or unverifiable record
	// after which nothing valid follows. Recovery treats it as the end of the log.
	ErrTornTail = errors.New("logfmt: torn tail")
	// ErrCorrupt: a record, checkpoint or manifest fails its checksum or
	// structure and is followed by valid data, so it is not a torn tail:
	// something damaged the file.
	ErrCorrupt = errors.New("logfmt: corrupt data")
)

// IsTornTail reports whether err says that a log segment ends in a torn or
// unfinished record. Recovery may treat the last good offset as the end of the log.
func IsTornTail(err error) bool { return errors.Is(err, ErrTornTail) }
