package logfmt

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestPeerFramesRoundTrip(t *testing.T) {
	rpc := AppendRPC(nil, RPC{MethodID: 3, Kind: RPCCall, Args: []byte("x")})
	var b []byte
	b = AppendPeerHello(b, "client", "server")
	b = AppendPeerSeq(b, PeerWelcome, 42)
	b = AppendPeerMessage(b, 42, rpc)
	b = AppendPeerSeq(b, PeerAck, 42)
	b = AppendPeerReject(b, "wrong instance")
	r := NewPeerReader(bytes.NewReader(b))
	want := []PeerFrame{
		{Kind: PeerHello, From: "client", To: "server"},
		{Kind: PeerWelcome, Seq: 42},
		{Kind: PeerMessage, Seq: 42, Msg: rpc},
		{Kind: PeerAck, Seq: 42},
		{Kind: PeerReject, Reason: "wrong instance"},
	}
	for i, w := range want {
		f, err := r.Next()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if f.Kind != w.Kind || f.From != w.From || f.To != w.To || f.Seq != w.Seq || !bytes.Equal(f.Msg, w.Msg) || f.Reason != w.Reason {
			t.Fatalf("frame %d: got %+v want %+v", i, f, w)
		}
	}
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestPeerGarbage(t *testing.T) {
	for _, in := range [][]byte{
		[]byte("GET / HTTP/1.1\r\n\r\n"),
		{0xff, 0xff, 0xff, 0x7f, 1},
		AppendPeerMessage(nil, 1, []byte{0x02, 0x02}), // not an RPC
		{9, 0, 0, 0, 1, 'a', 'm', 'b', 'r', 'p', 'e', 'e', 'r'},
	} {
		_, err := NewPeerReader(bytes.NewReader(in)).Next()
		if err == nil || !(errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated)) {
			t.Fatalf("input %q: err %v, want malformed or truncated", in, err)
		}
	}
}
