package logfmt

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"
)

// ChainDigest extends the running digest of an instance's output stream by
// one outgoing RPC. dest is the destination instance name (empty for a
// self-call) and rpc is the RPC in delivery form: the data of a TypeRPC
// message, [reserved][method id][rpc kind][args]. Batching is not part of
// the digest, because an app may batch differently when it replays.
//
// The digest is part of the format: d' = xxhash64(le64(d) ‖ le32(len(dest)) ‖ dest ‖ rpc).
// Chaining, rather than hashing the whole stream, lets a reader resume from
// any stored value.
func ChainDigest(d uint64, dest, rpc []byte) uint64 {
	if n := 12 + len(dest) + len(rpc); n <= 512 {
		// Small messages, most of them: one-shot hashing of a copy on the
		// stack is about twice as fast as streaming the three parts.
		var buf [512]byte
		b := binary.LittleEndian.AppendUint64(buf[:0], d)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(dest)))
		b = append(append(b, dest...), rpc...)
		return xxhash.Sum64(b)
	}
	var h xxhash.Digest
	h.Reset()
	var pre [12]byte
	binary.LittleEndian.PutUint64(pre[:8], d)
	binary.LittleEndian.PutUint32(pre[8:], uint32(len(dest)))
	_, _ = h.Write(pre[:])
	_, _ = h.Write(dest)
	_, _ = h.Write(rpc)
	return h.Sum64()
}
