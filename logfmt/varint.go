package logfmt

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
)

// MaxZigZagLen is the length of the longest ZigZagLong encoding. A ZigZagInt
// (a 32-bit value) takes at most 5 bytes. Part of the format.
const MaxZigZagLen = binary.MaxVarintLen64

// AppendZigZag appends v as a zig-zag varint: the bytes of protobuf's
// sint32/sint64 and of binary.PutVarint. The protocol calls a 32-bit value so
// encoded a ZigZagInt and a 64-bit one a ZigZagLong; both have the same bytes
// for the same value. AppendZigZag always writes the shortest encoding.
func AppendZigZag(dst []byte, v int64) []byte {
	ux := uint64(v<<1) ^ uint64(v>>63)
	for ux >= 0x80 {
		dst = append(dst, byte(ux)|0x80)
		ux >>= 7
	}
	return append(dst, byte(ux))
}

// ZigZagLen returns the number of bytes AppendZigZag writes for v.
func ZigZagLen(v int64) int {
	ux := uint64(v<<1) ^ uint64(v>>63)
	return (bits.Len64(ux|1) + 6) / 7
}

// ReadZigZag decodes a zig-zag varint from the start of b and returns it and
// the number of bytes it took. It accepts what binary.Varint accepts,
// including non-shortest encodings. If b ends inside the varint the error
// wraps ErrTruncated; if the varint is longer than MaxZigZagLen bytes or
// overflows 64 bits it wraps ErrMalformed.
func ReadZigZag(b []byte) (v int64, n int, err error) {
	if len(b) > 0 && b[0] < 0x80 { // Fast path: small lengths, counts, ids.
		ux := uint64(b[0])
		return int64(ux>>1) ^ -int64(ux&1), 1, nil
	}
	return readZigZagSlow(b, 0, "varint")
}

func readZigZagSlow(b []byte, off int, what string) (int64, int, error) {
	var ux uint64
	var s uint
	for i, c := range b {
		if i == MaxZigZagLen {
			return 0, 0, fmt.Errorf("%w: %s at offset %d is longer than %d bytes", ErrMalformed, what, off, MaxZigZagLen)
		}
		if c < 0x80 {
			if i == MaxZigZagLen-1 && c > 1 {
				return 0, 0, fmt.Errorf("%w: %s at offset %d overflows 64 bits", ErrMalformed, what, off)
			}
			ux |= uint64(c) << s
			return int64(ux>>1) ^ -int64(ux&1), i + 1, nil
		}
		ux |= uint64(c&0x7f) << s
		s += 7
	}
	if len(b) >= MaxZigZagLen {
		return 0, 0, fmt.Errorf("%w: %s at offset %d is longer than %d bytes", ErrMalformed, what, off, MaxZigZagLen)
	}
	return 0, 0, fmt.Errorf("%w: %s at offset %d: input ends after %d bytes", ErrTruncated, what, off, len(b))
}

// readZigZagAt is ReadZigZag with an error that names the field and its
// offset in the caller's buffer.
func readZigZagAt(b []byte, off int, what string) (int64, int, error) {
	if len(b) > 0 && b[0] < 0x80 {
		ux := uint64(b[0])
		return int64(ux>>1) ^ -int64(ux&1), 1, nil
	}
	return readZigZagSlow(b, off, what)
}

// readZigZagInt reads a ZigZagInt: a zig-zag varint whose value must fit in
// 32 bits.
func readZigZagInt(b []byte, off int, what string) (int32, int, error) {
	v, n, err := readZigZagAt(b, off, what)
	if err != nil {
		return 0, 0, err
	}
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, 0, fmt.Errorf("%w: %s at offset %d: %d does not fit a ZigZagInt", ErrMalformed, what, off, v)
	}
	return int32(v), n, nil
}

// readLength reads a ZigZagInt that must be a length or a count: at least
// zero.
func readLength(b []byte, off int, what string) (int, int, error) {
	v, n, err := readZigZagInt(b, off, what)
	if err != nil {
		return 0, 0, err
	}
	if v < 0 {
		return 0, 0, fmt.Errorf("%w: %s at offset %d is negative (%d)", ErrMalformed, what, off, v)
	}
	return int(v), n, nil
}
