package engine

import (
	"fmt"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// BenchmarkCoreOneWay drives two Cores the way the one-way throughput bench
// does, without the network, the disk or the app: the client's app sends
// batches of forks to the server; the client logs nothing (forks are output)
// and sends them; the server logs each batch as a record and delivers it.
// One op is one message through both Cores (issue 19: the per-message CPU).
//
// Its live heap is a few MiB, far below a coordinator's, so the collector
// runs much more often here than there and allocation weighs more: compare
// builds with GOGC=off too, to see the CPU of the Core alone.
func BenchmarkCoreOneWay(b *testing.B) {
	for _, size := range []int{16, 256} {
		for _, batch := range []int{64, 1024} {
			b.Run(fmt.Sprintf("%dB/batch%d", size, batch), func(b *testing.B) { benchCoreOneWay(b, size, batch) })
		}
	}
}

func benchLiveCore(b *testing.B, name string) *Core {
	c := NewCore(CoreConfig{Name: name, CommitterID: 1})
	c.StartFresh()
	_ = c.Ready()
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil); err != nil {
		b.Fatal(err)
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("0")); err != nil {
		b.Fatal(err)
	}
	_ = c.Ready()
	c.LogDurable(1)
	_ = c.Ready()
	c.CheckpointDurable(1)
	_ = c.Ready()
	return c
}

func benchCoreOneWay(b *testing.B, size, batch int) {
	client, server := benchLiveCore(b, "client"), benchLiveCore(b, "server")
	args := make([]byte, size)
	var rpcs []byte
	for range batch {
		rpcs = logfmt.AppendOutgoingRPC(rpcs, "server", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: args})
	}
	framed := logfmt.AppendRPCBatch(nil, rpcs, batch)
	m, _, err := logfmt.ParseMessage(framed)
	if err != nil {
		b.Fatal(err)
	}
	_ = client.Ready()
	if err := client.PeerConnected("server", 1); err != nil {
		b.Fatal(err)
	}
	_ = client.Ready()
	data := make([]byte, len(m.Data))
	seqs, ends := make([]int64, 0, batch), make([]int, 0, batch)
	var arena []byte
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += batch {
		// The coordinator reads each app message into a buffer the Core
		// then keeps; here one is reused, the copy standing for the read.
		copy(data, m.Data)
		if err := client.AppMessage(logfmt.Message{Type: m.Type, Data: data}, nil); err != nil {
			b.Fatal(err)
		}
		rd := client.Ready()
		seqs, ends, arena = seqs[:0], ends[:0], arena[:0]
		var last int64
		for _, s := range rd.PeerSends {
			seqs = append(seqs, s.Seq)
			arena = append(arena, s.Msg...)
			ends = append(ends, len(arena))
			last = s.Seq
		}
		if err := server.PeerMessages("client", seqs, ends, arena); err != nil {
			b.Fatal(err)
		}
		rd = server.Ready()
		for _, w := range rd.Log {
			server.LogDurable(w.Record.Seq)
		}
		rd = server.Ready()
		for _, a := range rd.PeerAcks {
			client.PeerAcked("server", a.Seq)
		}
		if last == 0 {
			b.Fatal("nothing sent")
		}
	}
}
