package tui

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/internal/testbin"
	"github.com/ambr-dev/ambr/logfmt"
)

// The instances the tests browse are written with logfmt's writers (as in
// timetravel's tests) and replayed by the real counter server.

// counterServer builds the counter sample's server once per test run.
func counterServer(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "../samples/counter/server")
}

// synthStart is when the synthetic history begins: record r is logged r
// milliseconds later.
var synthStart = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// writeCounterLog writes the instance directory of a counter server that
// received n-1 Inc() calls after its InitialMessage (record 1): records
// 2..n, one call each, in segments of perSeg records, with a checkpoint
// before record 1. Every 7th record comes from "client2", the others from
// "client"; record r's arguments are {"n":r}. The state after record r has
// count r-1. app is the recorded build ("" records none).
func writeCounterLog(t testing.TB, dir string, n, perSeg int, app string) {
	t.Helper()
	logDir := filepath.Join(dir, layout.VersionDir(0))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	state := []byte(`{"state":{"count":0},"binding":{"codec":"json","next_call_id":1,"pending":{}}}`)
	f, err := os.Create(filepath.Join(logDir, layout.CheckpointName(1)))
	if err != nil {
		t.Fatal(err)
	}
	if err := logfmt.WriteCheckpoint(f, &logfmt.Checkpoint{Number: 1, NextSeq: 1, Time: synthStart.UnixNano(), State: state}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	appendRecords(t, dir, 1, n, perSeg)
	m := &logfmt.Manifest{Instance: filepath.Base(dir), CommitterID: 1, Checkpoint: 1, FirstSegment: 1,
		App: logfmt.AppBuild{Source: "./samples/counter/server", Path: app}, Created: synthStart.UnixNano()}
	b, _ := logfmt.EncodeManifest(m)
	if err := os.WriteFile(filepath.Join(dir, layout.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// appendRecords writes records from..to as new segments of perSeg records,
// numbered after the segments present.
func appendRecords(t testing.TB, dir string, from, to, perSeg int) {
	t.Helper()
	logDir := filepath.Join(dir, layout.VersionDir(0))
	segs, _ := os.ReadDir(logDir)
	seg := uint32(0)
	for _, e := range segs {
		if n, ok := layout.ParseSegmentName(e.Name()); ok && uint32(n) > seg {
			seg = uint32(n)
		}
	}
	var w *logfmt.SegmentWriter
	var f *os.File
	var bw *bufio.Writer
	closeSeg := func() {
		if f == nil {
			return
		}
		if err := bw.Flush(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	var msg []byte
	for r := from; r <= to; r++ {
		if (r-from)%perSeg == 0 {
			closeSeg()
			seg++
			var err error
			if f, err = os.Create(filepath.Join(logDir, layout.SegmentName(uint64(seg)))); err != nil {
				t.Fatal(err)
			}
			bw = bufio.NewWriterSize(f, 1<<20)
			if w, err = logfmt.NewSegmentWriter(bw, seg); err != nil {
				t.Fatal(err)
			}
		}
		rec := &logfmt.Record{Seq: int64(r), Time: synthStart.Add(time.Duration(r) * time.Millisecond).UnixNano(), MessageCount: 1}
		if r == 1 {
			env := immortal.Envelope{Time: synthStart.UnixNano(), Payload: []byte("null")}
			msg = logfmt.AppendInitialMessage(msg[:0], env.Append(nil))
			rec.Sources = []logfmt.Source{{Peer: filepath.Base(dir), Count: 1}}
		} else {
			peer := "client"
			if r%7 == 0 {
				peer = "client2"
			}
			env := immortal.Envelope{Method: "Inc", CallID: int64(r - 1), Time: synthStart.UnixNano(), ReplyTo: peer, Payload: fmt.Appendf(nil, `{"n":%d}`, r)}
			msg = logfmt.AppendRPC(msg[:0], logfmt.RPC{Reserved: immortal.ReservedRequest, MethodID: immortal.MethodID("Inc"), Kind: logfmt.RPCCall, Args: env.Append(nil)})
			rec.Sources = []logfmt.Source{{Peer: peer, FirstSeq: int64(r - 1), Count: 1}}
		}
		rec.Messages = msg
		if err := w.Append(rec); err != nil {
			t.Fatal(err)
		}
	}
	closeSeg()
}
