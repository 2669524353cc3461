package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// TestLogWriterPipelinedCrashes drives the LogWriter with writes issued
// while the previous sync runs (records are submitted once a sync has
// begun, and each sync is held back until the writer has written again),
// takes the disk after a crash at every filesystem
// operation (nothing, everything, a prefix and scattered sectors of the
// unsynced data kept), and reads it as recovery does: every segment but the
// last reads to a clean end, the last to a clean end or a torn tail, never
// corruption; every record reported durable is there, byte for byte.
//
// It runs with the writer's preallocation as it is (one extension per
// segment here) and with extensions smaller than a record (one at nearly
// every write), so that crashes land between extending a segment and
// writing over its zeros; after Close no segment keeps zeros.
func TestLogWriterPipelinedCrashes(t *testing.T) {
	for _, pre := range []int64{preallocBytes, 700} {
		t.Run(fmt.Sprintf("prealloc=%d", pre), func(t *testing.T) {
			saved := preallocBytes
			preallocBytes = pre
			defer func() { preallocBytes = saved }()
			testLogWriterPipelinedCrashes(t)
		})
	}
}

func testLogWriterPipelinedCrashes(t *testing.T) {
	const (
		dir     = "/log"
		records = 60
		perSeg  = 25
	)
	mem := vfs.NewMem()
	if err := mem.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mem.SyncDir("/"); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		writes  int
		syncs   int
		wrote   = sync.NewCond(&mu)
		acked   int64
		crashes []struct {
			fs    *vfs.MemFS
			acked int64
			op    vfs.Op
		}
	)
	// Hold each sync until the writer has written once more (or a moment
	// has passed, for the last one): writes overlap syncs in every run.
	efs := vfs.NewErrorFS(mem, vfs.InjectorFunc(func(op vfs.Op) error {
		mu.Lock()
		defer mu.Unlock()
		switch op.Kind {
		case vfs.OpWrite:
			writes++
			wrote.Broadcast()
		case vfs.OpSync:
			syncs++
			wrote.Broadcast()
			seen := writes
			deadline := time.Now().Add(20 * time.Millisecond)
			for writes == seen && time.Now().Before(deadline) {
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				mu.Lock()
			}
		}
		return nil
	}))
	rng := rand.New(rand.NewPCG(3, 4))
	mem.SetHook(func(op vfs.Op) {
		mu.Lock()
		a := acked
		mu.Unlock()
		for _, keep := range []vfs.Keep{vfs.KeepNone, vfs.KeepAll, vfs.KeepRandom, vfs.KeepScattered, vfs.KeepScattered} {
			crashes = append(crashes, struct {
				fs    *vfs.MemFS
				acked int64
				op    vfs.Op
			}{mem.CrashClone(vfs.CrashOptions{KeepUnsynced: keep, KeepUnsyncedDirs: vfs.KeepNone, Rand: rng}), a, op})
		}
	})
	saved := pipelineBytes
	pipelineBytes = 0 // write whatever has come while a sync runs
	defer func() { pipelineBytes = saved }()
	done := make(chan struct{})
	w := NewLogWriter(efs, dir, func(seq int64) {
		mu.Lock()
		acked = max(acked, seq)
		mu.Unlock()
		if seq == records {
			close(done)
		}
	}, func(err error) { t.Errorf("writer: %v", err) })
	want := map[int64][]byte{}
	for seq := int64(1); seq <= records; seq++ {
		msg := bytes.Repeat([]byte{byte(seq)}, 100+int(seq%7)*300)
		r := &logfmt.Record{Seq: seq, Time: seq, Sources: []logfmt.Source{{Peer: "p", FirstSeq: seq, Count: 1}}, Messages: msg, MessageCount: 1}
		want[seq] = msg
		w.Submit([]LogWrite{{Segment: uint64(1 + (seq-1)/perSeg), Record: r}})
		if seq%3 == 0 {
			// The next records come while a sync runs.
			mu.Lock()
			seen, deadline := syncs, time.Now().Add(50*time.Millisecond)
			for syncs == seen && time.Now().Before(deadline) {
				mu.Unlock()
				time.Sleep(100 * time.Microsecond)
				mu.Lock()
			}
			mu.Unlock()
		}
	}
	<-done
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	mem.SetHook(nil)
	st := w.Stats()
	pipelined := 0
	for _, c := range crashes {
		recs, err := readLogDir(c.fs, dir)
		if err != nil {
			t.Fatalf("crash after op %d (%v): %v", c.op.Index, c.op, err)
		}
		if int64(len(recs)) < c.acked {
			t.Fatalf("crash after op %d (%v): %d records, %d were reported durable\n%s", c.op.Index, c.op, len(recs), c.acked, c.fs)
		}
		for i, r := range recs {
			if r.Seq != int64(i+1) || !bytes.Equal(r.Messages, want[r.Seq]) {
				t.Fatalf("crash after op %d (%v): record %d is not what was written", c.op.Index, c.op, i+1)
			}
		}
	}
	final, err := readLogDir(mem, dir)
	if err != nil || len(final) != records {
		t.Fatalf("after Close: %d records, %v", len(final), err)
	}
	// A closed writer leaves each segment ending at its last record.
	for n := uint64(1); n <= (records+perSeg-1)/perSeg; n++ {
		path := filepath.Join(dir, layout.SegmentName(n))
		f, err := mem.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(f)
		f.Close()
		sr, err := logfmt.NewSegmentReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := sr.Next(); err != nil {
				break
			}
		}
		if sr.Offset() != int64(len(b)) {
			t.Fatalf("after Close, %s is %d bytes, its records end at %d", path, len(b), sr.Offset())
		}
	}
	// Some crash left a segment extended past its records: the zeros were
	// read as its end above.
	zeroTails := 0
	for _, c := range crashes {
		for n := uint64(1); ; n++ {
			f, err := c.fs.Open(filepath.Join(dir, layout.SegmentName(n)))
			if err != nil {
				break
			}
			b, _ := io.ReadAll(f)
			f.Close()
			if len(b) > 0 && b[len(b)-1] == 0 {
				zeroTails++
			}
		}
	}
	if zeroTails == 0 {
		t.Fatal("no crash state has a segment ending in zeros: the test does not test preallocation")
	}
	t.Logf("%d segments of crash states end in zeros", zeroTails)
	for _, r := range final {
		if r.Flags&logfmt.FlagWriteStart != 0 && r.UnsyncedFrom != 0 {
			pipelined++
		}
	}
	t.Logf("%d crash states; %d writes, %d syncs, %d writes issued during a sync", len(crashes), st.Writes, st.Flushes, pipelined)
	if pipelined == 0 {
		t.Fatal("no write was issued while a sync ran: the test does not test the pipeline")
	}
}

// readLogDir reads the segments log-1, log-2, … of dir in order, as
// recovery does: a torn tail ends the log only in the last segment.
func readLogDir(fsys vfs.FS, dir string) ([]logfmt.Record, error) {
	var out []logfmt.Record
	for n := uint64(1); ; n++ {
		f, err := fsys.Open(filepath.Join(dir, layout.SegmentName(n)))
		if err != nil {
			return out, nil
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		_, nextErr := fsys.Stat(filepath.Join(dir, layout.SegmentName(n+1)))
		last := nextErr != nil
		sr, err := logfmt.NewSegmentReader(bytes.NewReader(b))
		if err != nil {
			if logfmt.IsTornTail(err) && last {
				return out, nil
			}
			return nil, fmt.Errorf("segment %d: %w", n, err)
		}
		for {
			r, err := sr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				if logfmt.IsTornTail(err) && last {
					return out, nil
				}
				return nil, fmt.Errorf("segment %d: %w", n, err)
			}
			c := *r
			c.Messages = bytes.Clone(r.Messages)
			out = append(out, c)
		}
	}
}

// slowSyncFS makes every Sync of the files it creates take 30 ms.
type slowSyncFS struct{ vfs.FS }

func (f slowSyncFS) Create(name string) (vfs.File, error) {
	file, err := f.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{file}, nil
}

type slowSyncFile struct{ vfs.File }

func (f slowSyncFile) Sync() error { time.Sleep(30 * time.Millisecond); return f.File.Sync() }

// TestLogWriterRollWaitingForASyncWakes (found in review): a batch of
// pipelineBytes or more that crosses into a new segment while a sync runs
// makes the writer's roll wait for that sync; with nothing submitted
// after it, the end of the sync must wake it (wakeOther, a write under
// way), or the records of the batch are never reported durable.
func TestLogWriterRollWaitingForASyncWakes(t *testing.T) {
	mem := vfs.NewMem()
	if err := mem.MkdirAll("/log", 0o755); err != nil {
		t.Fatal(err)
	}
	var durable atomic.Int64
	w := NewLogWriter(slowSyncFS{mem}, "/log", func(s int64) { durable.Store(s) }, func(err error) { t.Error(err) })
	defer w.Close()
	big := make([]byte, 64<<10)
	rec := func(seq int64) *logfmt.Record {
		return &logfmt.Record{Seq: seq, Time: seq, Sources: []logfmt.Source{{Peer: "t", FirstSeq: seq, Count: 1}}, Messages: logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: big}), MessageCount: 1}
	}
	w.Submit([]LogWrite{{Segment: 1, Record: rec(1)}})
	for durable.Load() < 1 {
		time.Sleep(time.Millisecond)
	}
	w.Submit([]LogWrite{{Segment: 1, Record: rec(2)}})
	time.Sleep(5 * time.Millisecond) // its sync is under way
	var batch []LogWrite
	for s := int64(3); s <= 7; s++ { // more than pipelineBytes in all
		batch = append(batch, LogWrite{Segment: 1, Record: rec(s)})
	}
	batch = append(batch, LogWrite{Segment: 2, Record: rec(8)})
	w.Submit(batch)
	deadline := time.Now().Add(10 * time.Second)
	for durable.Load() < 8 {
		if time.Now().After(deadline) {
			t.Fatalf("durable %d after 10 s, want 8: the roll waits for a wake-up that never comes", durable.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPreallocatedSegmentOnDisk: on the real disk, a segment being written
// is longer than its records (zeros ahead of them), reads to a clean end,
// and `ambr ls` (supervise.Describe) counts the log to where its records
// end; after Close the file ends there.
func TestPreallocatedSegmentOnDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "x")
	logDir := filepath.Join(dir, layout.VersionDir(0))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeManifest(vfs.Default(), dir, &logfmt.Manifest{Instance: "x", FirstSegment: 1}); err != nil {
		t.Fatal(err)
	}
	w, p := newWriterProbe(t, logDir, nil)
	var want int64 = logfmt.SegmentHeaderSize
	for seq := int64(1); seq <= 3; seq++ {
		r := testRecord(seq)
		want += int64(r.EncodedSize())
		w.Submit([]LogWrite{{Segment: 1, Record: r}})
		if _, err := p.wait(seq); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(logDir, layout.SegmentName(1))
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= want {
		t.Fatalf("segment of %d bytes while written, its records %d: not extended ahead", st.Size(), want)
	}
	d := supervise.Describe("x", dir)
	if d.Error != "" || d.LastSeq != 3 || d.LogBytes != want {
		t.Fatalf("Describe: last record %d, log %d bytes, error %q; want 3, %d bytes, none", d.LastSeq, d.LogBytes, d.Error, want)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err = os.Stat(path); err != nil || st.Size() != want {
		t.Fatalf("after Close the segment is %d bytes (%v), want %d", st.Size(), err, want)
	}
}
