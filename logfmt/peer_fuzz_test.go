package logfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// FuzzPeerReader feeds a coordinator connection's reader arbitrary bytes,
// as a hostile peer would send them: a hello first (under the hello limit),
// then, once Open, any frames. It must never panic, must refuse what is not
// well formed with ErrMalformed or ErrTruncated, and every frame it returns
// must encode back to the bytes it was read from.
func FuzzPeerReader(f *testing.F) {
	rpc := AppendRPC(nil, RPC{MethodID: 3, Kind: RPCCall, Args: []byte("x")})
	hello := AppendPeerHello(nil, "client", "server")
	f.Add(hello)
	f.Add(append(append([]byte(nil), hello...), AppendPeerMessage(nil, 7, rpc)...))
	f.Add(append(append([]byte(nil), hello...), append(AppendPeerMessagesHeader(nil, 1, 2, 2*len(rpc)), append(rpc, rpc...)...)...))
	f.Add(append(AppendPeerSeq(nil, PeerWelcome, 3), AppendPeerLost(nil, 15, 14)...))
	f.Add(binary.LittleEndian.AppendUint32(nil, 1<<30))
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewPeerReader(bytes.NewReader(b))
		for i := 0; ; i++ {
			f, err := r.Next()
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTruncated) {
					t.Fatalf("frame %d: unexpected error %v", i, err)
				}
				return
			}
			var enc []byte
			switch f.Kind {
			case PeerHello:
				enc = AppendPeerHelloAt(nil, f.From, f.To, f.Epoch)
				r.Open()
			case PeerWelcome, PeerAck:
				enc = AppendPeerSeq(nil, f.Kind, f.Seq)
			case PeerReject:
				enc = AppendPeerReject(nil, f.Reason)
			case PeerLost:
				enc = AppendPeerLost(nil, f.Acked, f.Seq)
			case PeerMessage:
				enc = AppendPeerMessage(nil, f.Seq, f.Msg)
			case PeerMessages:
				enc = append(AppendPeerMessagesHeader(nil, f.Seq, f.Count, len(f.Msg)), f.Msg...)
			default:
				t.Fatalf("frame %d: kind %d returned without an error", i, f.Kind)
			}
			if !bytes.Contains(b, enc) {
				t.Fatalf("frame %d (%+v) re-encodes to bytes not in the input: %x", i, f, enc)
			}
			if i == 1 {
				_ = r.Grow()
			}
		}
	})
}
