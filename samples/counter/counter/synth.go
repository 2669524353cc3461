package counter

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// SynthStart is the logged time of record 0 in synthetic logs: record r is
// logged r milliseconds later.
var SynthStart = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// WriteServerLog writes, with logfmt's writers, the instance directory of a
// counter server that received n-1 Inc() calls from "client" after its
// InitialMessage (record 1): records 2..n, one call each, in segments of
// perSeg records, with a checkpoint before the first record and a MANIFEST
// naming app as the build. The real server binary replays it: the state
// after record r has count r-1. For benchmarks and tests of the tools.
func WriteServerLog(dir string, n, perSeg int, app string) error {
	logDir := filepath.Join(dir, layout.VersionDir(0))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return err
	}
	state := []byte(`{"state":{"count":0},"binding":{"codec":"json","next_call_id":1,"pending":{}}}`)
	f, err := os.Create(filepath.Join(logDir, layout.CheckpointName(1)))
	if err != nil {
		return err
	}
	if err := logfmt.WriteCheckpoint(f, &logfmt.Checkpoint{Number: 1, NextSeq: 1, Time: SynthStart.UnixNano(), State: state}); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := AppendServerRecords(dir, 1, n, perSeg); err != nil {
		return err
	}
	m := &logfmt.Manifest{Instance: "server", CommitterID: 1, Checkpoint: 1, FirstSegment: 1,
		App: logfmt.AppBuild{Source: "./samples/counter/server", Path: app}, Created: SynthStart.UnixNano()}
	b, err := logfmt.EncodeManifest(m)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, layout.ManifestFile), b, 0o644)
}

// AppendServerRecords writes records from..to of a synthetic server log as
// new segments of perSeg records, numbered after the segments present.
func AppendServerRecords(dir string, from, to, perSeg int) error {
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
	closeSeg := func() error {
		if f == nil {
			return nil
		}
		return f.Close()
	}
	var msg []byte
	for r := from; r <= to; r++ {
		if (r-from)%perSeg == 0 {
			if err := closeSeg(); err != nil {
				return err
			}
			seg++
			var err error
			if f, err = os.Create(filepath.Join(logDir, layout.SegmentName(uint64(seg)))); err != nil {
				return err
			}
			if w, err = logfmt.NewSegmentWriter(f, seg); err != nil {
				return err
			}
		}
		rec := &logfmt.Record{Seq: int64(r), Time: SynthStart.Add(time.Duration(r) * time.Millisecond).UnixNano(), MessageCount: 1}
		if r == 1 {
			env := immortal.Envelope{Time: SynthStart.UnixNano(), Payload: []byte("null")}
			msg = logfmt.AppendInitialMessage(msg[:0], env.Append(nil))
			rec.Sources = []logfmt.Source{{Peer: "server", Count: 1}}
		} else {
			env := immortal.Envelope{Method: "Inc", CallID: int64(r - 1), Time: SynthStart.UnixNano(), ReplyTo: "client", Payload: []byte("{}")}
			msg = logfmt.AppendRPC(msg[:0], logfmt.RPC{Reserved: immortal.ReservedRequest, MethodID: immortal.MethodID("Inc"), Kind: logfmt.RPCCall, Args: env.Append(nil)})
			rec.Sources = []logfmt.Source{{Peer: "client", FirstSeq: int64(r - 1), Count: 1}}
		}
		rec.Messages = msg
		if err := w.Append(rec); err != nil {
			return fmt.Errorf("write record %d: %w", r, err)
		}
	}
	return closeSeg()
}
