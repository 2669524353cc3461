package engine

import (
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// selfCall is a self-call as the app sends it.
func selfCall(arg string) logfmt.Message {
	m, _, _ := logfmt.ParseMessage(logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(arg)}))
	return logfmt.Message{Type: m.Type, Data: append([]byte(nil), m.Data...)}
}

// TestFollowingCoreNeverLogsAndPromotes: a standby's Core feeds records,
// drops the self-calls the log holds, holds back the one it does not, logs
// nothing and refuses impulses; promoted, it logs the held self-call in the
// new segment and sends BecomingPrimary, no checkpoint request.
func TestFollowingCoreNeverLogsAndPromotes(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFollowing(&logfmt.Checkpoint{Number: 1, NextSeq: 1, State: []byte("s")}, 2)
	// Record 1 holds the app's first self-call (sender seq 1).
	r := &logfmt.Record{Seq: 1, Sources: []logfmt.Source{{Peer: "server", FirstSeq: 1, Count: 1}}, Messages: peerFork("a"), MessageCount: 1}
	if err := c.ReplayRecord(r); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if len(rd.ToApp) != 2 || len(rd.Log) != 0 {
		t.Fatalf("to app %d chunks (want the checkpoint and record 1), log %d", len(rd.ToApp), len(rd.Log))
	}
	// The app replays: self-call 1 (logged) and 2 (not yet in any record).
	for _, a := range []string{"a", "b"} {
		if err := c.AppMessage(selfCall(a), nil); err != nil {
			t.Fatal(err)
		}
	}
	impulse, _, _ := logfmt.ParseMessage(logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 2, Kind: logfmt.RPCImpulse}))
	if err := c.AppMessage(logfmt.Message{Type: impulse.Type, Data: append([]byte(nil), impulse.Data...)}, nil); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	if len(rd.Log) != 0 || len(rd.Warnings) != 1 {
		t.Fatalf("a follower logged %d records, warned %v (want the impulse refused)", len(rd.Log), rd.Warnings)
	}
	if err := c.Promote(7); err != nil {
		t.Fatal(err)
	}
	rd = c.Ready()
	if len(rd.Log) != 1 || rd.Log[0].Segment != 7 || rd.Log[0].Record.Seq != 2 || rd.Log[0].Record.Sources[0].FirstSeq != 2 {
		t.Fatalf("after promotion: log %+v, want record 2 in segment 7 holding self-call 2", rd.Log)
	}
	var control []logfmt.MessageType
	for _, b := range rd.ToApp {
		h, _ := logfmt.ParseWireHeader(b)
		if h.Seq == logfmt.SeqControl {
			m, _, _ := logfmt.ParseMessage(b[logfmt.WireHeaderSize:])
			control = append(control, m.Type)
		}
	}
	if len(control) != 1 || control[0] != logfmt.TypeBecomingPrimary || c.CheckpointBusy() {
		t.Fatalf("control to the app %v, checkpoint busy %v; want BecomingPrimary alone", control, c.CheckpointBusy())
	}
	// Regenerated output still arriving after promotion is deduplicated.
	if err := c.AppMessage(selfCall("a"), nil); err == nil {
		if rd := c.Ready(); len(rd.Log) != 1 || rd.Log[0].Record.Sources[0].FirstSeq != 3 {
			t.Fatalf("a new self-call after promotion: %+v", rd.Log)
		}
	}
}

// TestCheckpointerCore: a follower asked for a checkpoint at a segment
// boundary gets the state as a Checkpoint to write, numbered for the
// segment, and stays a follower.
func TestCheckpointerCore(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFollowing(&logfmt.Checkpoint{Number: 1, NextSeq: 1, State: []byte("s")}, 2)
	r := &logfmt.Record{Seq: 1, Sources: []logfmt.Source{{Peer: "client", FirstSeq: 1, Count: 1}}, Messages: peerFork("a"), MessageCount: 1}
	if err := c.ReplayRecord(r); err != nil {
		t.Fatal(err)
	}
	if !c.FollowerCheckpoint(2) || c.FollowerCheckpoint(3) {
		t.Fatal("FollowerCheckpoint: want one checkpoint at a time")
	}
	_ = c.Ready()
	if err := c.AppMessage(logfmt.Message{Type: logfmt.TypeCheckpoint}, []byte("state")); err != nil {
		t.Fatal(err)
	}
	rd := c.Ready()
	if ck := rd.Checkpoint; ck == nil || ck.Number != 2 || ck.NextSeq != 2 || string(ck.State) != "state" || !c.Following() {
		t.Fatalf("checkpoint %+v, following %v", rd.Checkpoint, c.Following())
	}
	if len(rd.Log) != 0 {
		t.Fatal("a checkpointer logged")
	}
}

// TestFollowerOfASinkKeepsNothing: records the app answers with nothing
// are matched as they are fed, so a long-following standby holds none of
// them for the nondeterminism report.
func TestFollowerOfASinkKeepsNothing(t *testing.T) {
	c := NewCore(CoreConfig{Name: "server", CommitterID: 1})
	c.StartFollowing(&logfmt.Checkpoint{Number: 1, NextSeq: 1, State: []byte("s")}, 2)
	for i := int64(1); i <= 1000; i++ {
		r := &logfmt.Record{Seq: i, Sources: []logfmt.Source{{Peer: "client", FirstSeq: i, Count: 1}}, Messages: peerFork("x"), MessageCount: 1}
		if err := c.ReplayRecord(r); err != nil {
			t.Fatal(err)
		}
		_ = c.Ready()
	}
	if len(c.expects) != 0 || len(c.nondet.recent) > 2 {
		t.Fatalf("after 1000 records with no output: %d expectations, %d records kept", len(c.expects), len(c.nondet.recent))
	}
}
