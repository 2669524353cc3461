package immortal

import (
	"io"
	"net"

	"github.com/ambr-dev/ambr/logfmt"
)

// maxBatchBytes bounds the framed RPCs grouped in one RPCBatch; more output
// for one record goes into several batches. Not part of the format.
const maxBatchBytes = 4 << 20

// refPayload is the payload size from which an outgoing RPC's payload is not
// copied into the output but sent by reference: the output holds the bytes
// in front of it (frame header, destination, RPC fields, envelope header)
// and the payload goes after them in the same write (writev on a socket).
// The bytes sent are the same either way. Not part of the format.
//
// Why: a giant payload was copied three times on its way out (into the
// envelope, into the framed RPC, into the bytes sent), so the sending app of
// a 256 MiB message peaked at 4.1× its size (ambr bench giant,
// BENCHMARKS.md). Below the threshold copying is cheaper than a reference.
const refPayload = 64 << 10

// outRef is bytes of the output held by reference: b goes in front of the
// byte at offset at of the copied bytes.
type outRef struct {
	at int
	b  []byte
}

// wireOut is bytes to send to the coordinator: b, with refs inserted at
// their offsets (in increasing order). The bytes referred to must not change
// until they are written.
type wireOut struct {
	b    []byte
	refs []outRef
}

// Len returns the number of bytes of o.
func (o wireOut) Len() int {
	n := len(o.b)
	for _, r := range o.refs {
		n += len(r.b)
	}
	return n
}

// Bytes returns the bytes of o in one slice, which aliases o.b if o has no
// refs and is new otherwise.
func (o wireOut) Bytes() []byte {
	if len(o.refs) == 0 {
		return o.b
	}
	b := make([]byte, 0, o.Len())
	at := 0
	for _, r := range o.refs {
		b = append(b, o.b[at:r.at]...)
		b = append(b, r.b...)
		at = r.at
	}
	return append(b, o.b[at:]...)
}

// buffers returns o as net.Buffers, for one vectored write.
func (o wireOut) buffers() net.Buffers {
	bufs := make(net.Buffers, 0, 2*len(o.refs)+1)
	at := 0
	for _, r := range o.refs {
		if r.at > at {
			bufs = append(bufs, o.b[at:r.at])
		}
		bufs = append(bufs, r.b)
		at = r.at
	}
	if len(o.b) > at {
		bufs = append(bufs, o.b[at:])
	}
	return bufs
}

// writeTo writes o to w: in one Write if it has no refs, else as
// net.Buffers (one writev on a socket, Write after Write otherwise).
func (o wireOut) writeTo(w io.Writer) error {
	if len(o.refs) == 0 {
		_, err := w.Write(o.b)
		return err
	}
	bufs := o.buffers()
	_, err := bufs.WriteTo(w)
	return err
}

// concat returns o followed by x. It may append to o.b and o.refs.
func (o wireOut) concat(x wireOut) wireOut {
	base := len(o.b)
	o.b = append(o.b, x.b...)
	for _, r := range x.refs {
		o.refs = append(o.refs, outRef{at: base + r.at, b: r.b})
	}
	return o
}

// output collects what the app sends to its coordinator while it processes
// one record: bare messages, with the RPCs held back so that those of one
// record can travel in one RPCBatch. Large payloads are held by reference,
// see refPayload.
type output struct {
	out      []byte          // messages ready to send, in order
	refs     []outRef        // the by-reference parts of out
	rpcs     []byte          // framed outgoing RPCs not yet in out
	rpcRefs  []outRef        // the by-reference parts of rpcs
	rpcsLen  int             // bytes of rpcs with rpcRefs
	nrpcs    int             // number of messages in rpcs
	attached map[string]bool // destinations sent AttachTo on this connection
	lastDest string          // in attached: saves a lookup for a run of RPCs to one destination
	wantCkpt bool            // send TakeCheckpoint after the record's RPCs
}

// rpc adds an outgoing RPC. dest is "" for a self-call. The first RPC to any
// other destination is preceded by AttachTo(dest). tail, if not empty, is
// more argument bytes after r.Args, held by reference until sent.
func (o *output) rpc(dest string, r logfmt.RPC, tail []byte) {
	if dest != "" && dest != o.lastDest {
		if !o.attached[dest] {
			if o.attached == nil {
				o.attached = map[string]bool{}
			}
			o.attached[dest] = true
			o.out = logfmt.AppendAttachTo(o.out, dest)
		}
		o.lastDest = dest
	}
	if o.nrpcs > 0 && o.rpcsLen > maxBatchBytes {
		o.flushRPCs()
	}
	n := len(o.rpcs)
	if len(tail) == 0 {
		o.rpcs = logfmt.AppendOutgoingRPC(o.rpcs, dest, r)
	} else {
		o.rpcs = logfmt.AppendOutgoingRPCHead(o.rpcs, dest, r, len(tail))
		o.rpcRefs = append(o.rpcRefs, outRef{at: len(o.rpcs), b: tail})
	}
	o.rpcsLen += len(o.rpcs) - n + len(tail)
	o.nrpcs++
}

// flushRPCs moves the held RPCs to out: one alone as it is, more in an
// RPCBatch.
func (o *output) flushRPCs() {
	switch o.nrpcs {
	case 0:
		return
	case 1:
	default:
		o.out = logfmt.AppendRPCBatchHead(o.out, o.rpcsLen, o.nrpcs)
	}
	base := len(o.out)
	o.out = append(o.out, o.rpcs...)
	for _, r := range o.rpcRefs {
		o.refs = append(o.refs, outRef{at: base + r.at, b: r.b})
	}
	clear(o.rpcRefs) // keep no payload alive
	o.rpcs, o.rpcRefs, o.rpcsLen, o.nrpcs = o.rpcs[:0], o.rpcRefs[:0], 0, 0
}

// flush moves everything held to out: the RPCs, then a TakeCheckpoint if a
// handler asked for one.
func (o *output) flush() {
	o.flushRPCs()
	if o.wantCkpt {
		o.out = logfmt.AppendControl(o.out, logfmt.TypeTakeCheckpoint)
		o.wantCkpt = false
	}
}

// take returns what is ready to send and empties out. The returned bytes
// are valid until the next call to take; the payloads it refers to are no
// longer referred to by o, so that they are garbage once sent.
func (o *output) take() wireOut {
	w := wireOut{b: o.out, refs: o.refs}
	o.out = o.out[:0]
	if o.refs != nil {
		o.refs = nil
	}
	return w
}
