package immortal

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// copiedSend is what runtime.send sent before payloads went by reference:
// the whole envelope copied into the framed RPC.
func copiedSend(o *output, dest string, env Envelope) {
	o.rpc(dest, logfmt.RPC{Reserved: ReservedRequest, MethodID: MethodID(env.Method), Kind: logfmt.RPCFork, Args: env.Append(nil)}, nil)
}

// TestOutputByReference checks that an output with payloads held by
// reference sends the bytes of the copied output, alone and in batches,
// for payloads around refPayload, and that it lets go of them once taken.
func TestOutputByReference(t *testing.T) {
	payload := func(n int, seed byte) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = seed + byte(i*7)
		}
		return p
	}
	for _, sizes := range [][]int{
		{refPayload - 1}, {refPayload}, {refPayload + 1}, {3 * refPayload},
		{10, refPayload, 20}, {refPayload, refPayload + 1}, {refPayload - 1, refPayload, 5, refPayload + 2, 0},
		{maxBatchBytes, refPayload, maxBatchBytes + 1, 1, refPayload}, // several batches
	} {
		var rt runtime
		var want output
		for i, n := range sizes {
			dest := "srv"
			if i%2 == 1 {
				dest = ""
			}
			env := Envelope{Method: "data", Time: int64(i), Payload: payload(n, byte(i))}
			rt.send(dest, ReservedRequest, "data", logfmt.RPCFork, env)
			copiedSend(&want, dest, Envelope{Method: "data", Time: int64(i), Payload: payload(n, byte(i))})
		}
		want.flush()
		rt.out.flush()
		rt.out.out = logfmt.AppendAttachTo(rt.out.out, "tail") // bytes after the refs
		want.out = logfmt.AppendAttachTo(want.out, "tail")
		wantBytes := want.take().Bytes()
		got := rt.out.take()
		refs := 0
		for _, n := range sizes {
			if n >= refPayload {
				refs++
			}
		}
		if len(got.refs) != refs {
			t.Errorf("sizes %v: %d payloads by reference, want %d", sizes, len(got.refs), refs)
		}
		if got.Len() != len(wantBytes) {
			t.Errorf("sizes %v: Len %d, want %d", sizes, got.Len(), len(wantBytes))
		}
		if !bytes.Equal(got.Bytes(), wantBytes) {
			t.Fatalf("sizes %v: the bytes differ from the copied output's", sizes)
		}
		var buf bytes.Buffer
		if err := got.writeTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), wantBytes) {
			t.Fatalf("sizes %v: writeTo wrote other bytes (%v)", sizes, err)
		}
		// The output holds no payload once taken.
		if rt.out.refs != nil || len(rt.out.rpcRefs) != 0 {
			t.Errorf("sizes %v: output still refers to payloads after take", sizes)
		}
		for _, r := range rt.out.rpcRefs[:cap(rt.out.rpcRefs)] {
			if r.b != nil {
				t.Errorf("sizes %v: rpcRefs keeps a payload alive", sizes)
			}
		}
	}
}

// TestOutputByReferenceSocket writes an output with a payload by reference
// through a socket (writev) and checks the bytes read.
func TestOutputByReferenceSocket(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var rt runtime
	p := bytes.Repeat([]byte("0123456789abcdef"), 3*refPayload/16+3)
	rt.send("srv", ReservedRequest, "data", logfmt.RPCFork, Envelope{Method: "data", Payload: p})
	rt.send("srv", ReservedRequest, "data", logfmt.RPCFork, Envelope{Method: "data", Payload: p[:10]})
	rt.out.flush()
	out := rt.out.take()
	want := out.Bytes()
	got := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		b := make([]byte, len(want))
		n, _ := io.ReadFull(c, b)
		got <- b[:n]
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := out.writeTo(c); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("read %d bytes that differ from the %d written", len(b), len(want))
	}
}

// TestWireOutConcat checks concat's offsets.
func TestWireOutConcat(t *testing.T) {
	a := wireOut{b: []byte("ab"), refs: []outRef{{at: 1, b: []byte("XY")}}}
	b := wireOut{b: []byte("cd"), refs: []outRef{{at: 0, b: []byte("Z")}, {at: 2, b: []byte("W")}}}
	if got := string(a.concat(b).Bytes()); got != "aXYbZcdW" {
		t.Fatalf("concat: %q", got)
	}
	if got := string(wireOut{}.concat(b).Bytes()); got != "ZcdW" {
		t.Fatalf("concat to empty: %q", got)
	}
}
