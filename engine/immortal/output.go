package immortal

import "github.com/ambr-dev/ambr/logfmt"

// maxBatchBytes bounds the framed RPCs grouped in one RPCBatch; more output
// for one record goes into several batches. Not part of the format.
const maxBatchBytes = 4 << 20

// output collects what the app sends to its coordinator while it processes
// one record: bare messages, with the RPCs held back so that those of one
// record can travel in one RPCBatch.
type output struct {
	out      []byte          // messages ready to send, in order
	rpcs     []byte          // framed outgoing RPCs not yet in out
	nrpcs    int             // number of messages in rpcs
	attached map[string]bool // destinations sent AttachTo on this connection
	lastDest string          // in attached: saves a lookup for a run of RPCs to one destination
	wantCkpt bool            // send TakeCheckpoint after the record's RPCs
}

// rpc adds an outgoing RPC. dest is "" for a self-call. The first RPC to any
// other destination is preceded by AttachTo(dest).
func (o *output) rpc(dest string, r logfmt.RPC) {
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
	if o.nrpcs > 0 && len(o.rpcs) > maxBatchBytes {
		o.flushRPCs()
	}
	o.rpcs = logfmt.AppendOutgoingRPC(o.rpcs, dest, r)
	o.nrpcs++
}

// flushRPCs moves the held RPCs to out: one alone as it is, more in an
// RPCBatch.
func (o *output) flushRPCs() {
	switch o.nrpcs {
	case 0:
	case 1:
		o.out = append(o.out, o.rpcs...)
	default:
		o.out = logfmt.AppendRPCBatch(o.out, o.rpcs, o.nrpcs)
	}
	o.rpcs, o.nrpcs = o.rpcs[:0], 0
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

// take returns the bytes ready to send and empties out. The returned slice
// is valid until the next call to take.
func (o *output) take() []byte {
	b := o.out
	o.out = o.out[:0]
	return b
}
