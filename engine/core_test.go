package engine

import (
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

func peerFork(args string) []byte {
	framed := logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(args)})
	m, _, _ := logfmt.ParseMessage(framed)
	return logfmt.AppendMessage(nil, logfmt.TypeRPC, m.Data[logfmt.ZigZagLen(0):])
}

// TestFirstStartRefusesPeers (found in review): a peer message during the
// first start must not be logged or acknowledged — it could become record 1
// ahead of the InitialMessage, and a crash before checkpoint 1 is durable
// makes the instance start over and lose it. The sender keeps it and retries.
func TestFirstStartRefusesPeers(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFresh()
	_ = c.Ready()
	if c.AcceptingPeers() {
		t.Fatal("accepting peers during the first start")
	}
	if err := c.PeerMessage("client", 1, peerFork("Inc-1")); err == nil {
		t.Fatal("a peer message during the first start was accepted")
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeInitialMessage, Data: []byte("init")}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("0")); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.Log) != 1 || rd.Log[0].Record.Seq != 1 || rd.Log[0].Record.Sources[0].Peer != "server" {
		t.Fatalf("record 1 is not the InitialMessage alone: %+v", rd.Log)
	}
	c.LogDurable(1)
	rd = c.Ready()
	if rd.Checkpoint == nil || len(rd.PeerAcks) != 0 {
		t.Fatalf("after record 1 is durable: checkpoint %v, acks %v", rd.Checkpoint, rd.PeerAcks)
	}
	if c.AcceptingPeers() {
		t.Fatal("accepting peers before checkpoint 1 is durable")
	}
	c.CheckpointDurable(1)
	if !c.AcceptingPeers() {
		t.Fatal("not accepting peers once the first start is complete")
	}
	if err := c.PeerMessage("client", 1, peerFork("Inc-1")); err != nil {
		t.Fatal(err)
	}
}
