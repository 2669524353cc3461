package logfmt

import "testing"

// protoBody1000RPCs returns a record body of 1000 small RPC messages, each
// with 16 bytes of arguments.
func protoBody1000RPCs() []byte {
	var body []byte
	args := []byte("0123456789abcdef")
	for i := range 1000 {
		body = AppendRPC(body, RPC{MethodID: int32(i % 40), Kind: RPCKind(i % 3), Args: args})
	}
	return body
}

// protoDecodeBody walks a body of RPC messages and returns a sum over their
// fields, so that nothing is optimised away. It panics on a decode error.
func protoDecodeBody(body []byte) int64 {
	var sum int64
	it := NewMessageIter(body)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		r, err := ParseRPC(m.Data)
		if err != nil {
			panic(err)
		}
		sum += int64(r.MethodID) + int64(r.Kind) + int64(len(r.Args))
	}
	if err := it.Err(); err != nil {
		panic(err)
	}
	return sum
}

func BenchmarkDecodeRecord1000RPCs(b *testing.B) {
	body := protoBody1000RPCs()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var sum int64
	for b.Loop() {
		sum += protoDecodeBody(body)
	}
	if sum == 0 {
		b.Fatal("nothing decoded")
	}
}

func BenchmarkAppendRPC1000(b *testing.B) {
	args := []byte("0123456789abcdef")
	buf := make([]byte, 0, 32<<10)
	b.ReportAllocs()
	for b.Loop() {
		buf = buf[:0]
		for i := range 1000 {
			buf = AppendRPC(buf, RPC{MethodID: int32(i % 40), Kind: RPCFork, Args: args})
		}
	}
	b.SetBytes(int64(len(buf)))
}

// protoRepeatReader returns b over and over.
type protoRepeatReader struct {
	b   []byte
	off int
}

func (r *protoRepeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.b[r.off:])
	r.off = (r.off + n) % len(r.b)
	return n, nil
}

func BenchmarkRecordReader(b *testing.B) {
	rec := AppendWireRecord(nil, 1, 0, protoBody1000RPCs())
	b.SetBytes(int64(len(rec)))
	b.ReportAllocs()
	rr := NewRecordReader(&protoRepeatReader{b: rec})
	for b.Loop() {
		_, body, err := rr.Next()
		if err != nil {
			b.Fatal(err)
		}
		protoDecodeBody(body)
	}
}

func BenchmarkMessageReader(b *testing.B) {
	msg := AppendOutgoingRPC(nil, "server", RPC{MethodID: 3, Kind: RPCFork, Args: []byte("0123456789abcdef")})
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	mr := NewMessageReader(&protoRepeatReader{b: msg})
	for b.Loop() {
		m, err := mr.Next()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ParseOutgoingRPC(m.Data); err != nil {
			b.Fatal(err)
		}
	}
}
