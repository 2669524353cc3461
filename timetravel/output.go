package timetravel

import (
	"fmt"
	"maps"

	"github.com/ambr-dev/ambr/logfmt"
)

// OutputCheck checks an app's regenerated messages against the points of
// the output stream the log recorded: a record's count and
// chained digest say what the app had sent when the record was logged. It
// keeps every message since the oldest unchecked point (with its digest,
// the record that sent it and its place in its destination's stream), so
// points recorded while the app lagged behind are checked too, and a
// mismatch can be explained message by message.
type OutputCheck struct {
	self    string
	count   uint64
	digest  uint64
	base    uint64 // the count checked last: hist holds base+1..count
	hist    []SentAt
	destSeq map[string]int64 // the last sequence number sent to each destination
	expects []*logfmt.Record
	// fed is the record being handled: what add is given came from it.
	fed int64
	// bad is the point that failed, once one did.
	bad *logfmt.Record
}

// SentAt is one message of the regenerated output stream.
type SentAt struct {
	digest uint64
	// Seq is the record whose handling sent it; Dest its destination (the
	// instance's own name for a self-call) and DestSeq its sequence number
	// in the stream to Dest.
	Seq     int64
	Dest    string
	DestSeq int64
	Sent    Sent
}

// NewOutputCheck starts checking the output of instance self after the
// checkpoint ck.
func NewOutputCheck(ck *logfmt.Checkpoint, self string) *OutputCheck {
	o := &OutputCheck{self: self, count: ck.OutCount, digest: ck.OutDigest, base: ck.OutCount, destSeq: map[string]int64{}}
	for _, out := range ck.Outputs {
		o.destSeq[out.Peer] = out.LastSeq
	}
	return o
}

// NewOutputCheckAt starts checking the output of instance self after count
// messages whose chained digest is digest (a snapshot's point).
func NewOutputCheckAt(count, digest uint64, self string) *OutputCheck {
	return &OutputCheck{self: self, count: count, digest: digest, base: count, destSeq: map[string]int64{}}
}

// Digest returns the number of messages so far and their chained digest.
func (o *OutputCheck) Digest() (count, digest uint64) { return o.count, o.digest }

// Explain is a failed check for people: the point that failed, and the
// first message since the last point that matched, decoded.
func (o *OutputCheck) Explain(err error) string {
	if len(o.hist) == 0 {
		return err.Error()
	}
	first := o.hist[0]
	d := first.Sent.Describe()
	payload, ok := PayloadText(d.Payload)
	if !ok {
		payload = fmt.Sprintf("(%d bytes)", len(d.Payload))
	}
	what := d.Method
	if d.Result {
		what = "result"
	}
	return fmt.Sprintf("%v; the first message since the last point that matched is message %d, sent handling record %d: → %s %s %s %s", err, o.base+1, first.Seq, d.Dest, d.Kind, what, payload)
}

// Clone returns a copy that goes on independently.
func (o *OutputCheck) Clone() *OutputCheck {
	c := *o
	c.hist = append([]SentAt(nil), o.hist...)
	c.destSeq = maps.Clone(o.destSeq)
	c.expects = append([]*logfmt.Record(nil), o.expects...)
	return &c
}

// expect notes rec's point, to be checked once the output reaches it.
func (o *OutputCheck) Expect(rec *logfmt.Record) {
	c := *rec
	c.Messages, c.Sources = nil, nil
	o.expects = append(o.expects, &c)
	o.fed = rec.Seq
}

func (o *OutputCheck) check() error {
	for len(o.expects) > 0 {
		e := o.expects[0]
		if e.OutCount > o.count {
			return nil
		}
		o.expects = o.expects[1:]
		if e.OutCount < o.base {
			continue // a point before the start checkpoint's output
		}
		if e.OutCount == o.base {
			continue // nothing new since the last point
		}
		d := o.digest
		if e.OutCount < o.count {
			d = o.hist[e.OutCount-o.base-1].digest
		}
		if e.OutDigest != d {
			o.bad = e
			return fmt.Errorf("at record %d, after %d messages, the log recorded output digest %016x but the recorded build's messages give %016x", e.Seq, e.OutCount, e.OutDigest, d)
		}
		o.hist = o.hist[e.OutCount-o.base:]
		o.base = e.OutCount
	}
	return nil
}

func (o *OutputCheck) Add(sent []Sent) error {
	for _, s := range sent {
		if s.RPC.Kind == logfmt.RPCImpulse {
			continue
		}
		dest, data := s.Canonical()
		o.count++
		o.digest = logfmt.ChainDigest(o.digest, dest, data)
		to := s.Dest
		if to == "" {
			to = o.self
		}
		o.destSeq[to]++
		o.hist = append(o.hist, SentAt{digest: o.digest, Seq: o.fed, Dest: to, DestSeq: o.destSeq[to], Sent: s})
	}
	return o.check()
}

// finish checks that the output reached every point the log recorded.
func (o *OutputCheck) Finish() error {
	if err := o.check(); err != nil {
		return err
	}
	if len(o.expects) > 0 {
		e := o.expects[len(o.expects)-1]
		o.bad = e
		return fmt.Errorf("the recorded build sent %d messages, but the log recorded %d by record %d", o.count, e.OutCount, e.Seq)
	}
	return nil
}

// Failed is the point that did not match (nil while all did).
func (o *OutputCheck) Failed() *logfmt.Record { return o.bad }

// Unchecked returns the messages since the last point that matched: the
// first is message Base()+1 of the output stream.
func (o *OutputCheck) Unchecked() []SentAt { return o.hist }

// Base is the number of messages up to the last point that matched.
func (o *OutputCheck) Base() uint64 { return o.base }

// Count is the number of messages so far.
func (o *OutputCheck) Count() uint64 { return o.count }

// Fed is the last record given to Expect.
func (o *OutputCheck) Fed() int64 { return o.fed }

// Canonical is the message in the form the log's output digest covers: the
// destination (nil for a self-call) and the RPC's delivery bytes.
func (s Sent) Canonical() (dest, data []byte) {
	framed := logfmt.AppendRPC(nil, s.RPC)
	m, _, _ := logfmt.ParseMessage(framed)
	if s.Dest != "" {
		dest = []byte(s.Dest)
	}
	return dest, m.Data
}
