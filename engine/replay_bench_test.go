package engine

import (
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// BenchmarkReplayWire: the Core's cost of one replayed record (an impulse
// to itself, as the recovery bench logs), while the replay is open (as
// recovery feeds it: self-calls are kept in step, as a follower's) and with
// that bookkeeping left out.
func BenchmarkReplayWire(b *testing.B) {
	msg := logfmt.AppendMessage(nil, logfmt.TypeRPC, make([]byte, 16))
	for _, open := range []bool{true, false} {
		name := "open"
		if !open {
			name = "closed"
		}
		b.Run(name, func(b *testing.B) {
			c := NewCore(CoreConfig{Name: "rec", CommitterID: 7})
			c.StartRecovery(&logfmt.Checkpoint{Number: 1, NextSeq: 1}, 2)
			c.replayOpen = open
			_ = c.Ready()
			rec := logfmt.Record{Sources: []logfmt.Source{{Peer: "rec", FirstSeq: 0, Count: 1}}, Messages: msg}
			wire := logfmt.AppendWireRecord(nil, 7, 1, msg)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rec.Seq = int64(i + 1)
				logfmt.AppendWireRecord(wire[:0], 7, rec.Seq, msg)
				if err := c.ReplayWire(&rec, wire); err != nil {
					b.Fatal(err)
				}
				if i%1024 == 1023 {
					_ = c.Ready()
					c.nondet = nondeterminismWatch{}
				}
			}
		})
	}
}
