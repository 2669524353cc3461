package engine

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

func readAll(t *testing.T, fsys vfs.FS, path string) []byte {
	t.Helper()
	f, err := fsys.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeAll(t *testing.T, fsys vfs.FS, path string, b []byte) {
	t.Helper()
	f, err := fsys.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestRecoverTornTailAtEveryOffset cuts the log's last record at every byte
// offset and recovers: every whole record is kept, the cut bytes are kept
// beside the segment, and the run completes exactly.
func TestRecoverTornTailAtEveryOffset(t *testing.T) {
	const target = 8
	mem, _, last := ranInstance(t, target)
	full := readAll(t, mem, last)
	base, _ := summarize(t, mem)
	lastLen := len(base.records[int64(len(base.seqs))]) + logfmt.RecordFixedSize + 2 + len("counter") + 12
	start := len(full) - lastLen
	for cut := start + 1; cut < len(full); cut++ {
		fs := mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll})
		writeAll(t, fs, last, full[:cut])
		if err := runRaw(t, fs, newRawApp(target), 1<<20); err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		after, err := summarize(t, fs)
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		checkExactLog(t, after, target, 0)
		for seq := int64(1); seq < int64(len(base.seqs)); seq++ {
			if after.records[seq] != base.records[seq] {
				t.Fatalf("cut at %d: whole record %d changed", cut, seq)
			}
		}
		broken := readAll(t, fs, last+layout.BrokenSuffix)
		if !bytes.Equal(broken, full[start:cut]) {
			t.Fatalf("cut at %d: %s holds %d bytes, want the %d cut off", cut, filepath.Base(last)+layout.BrokenSuffix, len(broken), cut-start)
		}
		if got := readAll(t, fs, last); !bytes.Equal(got, full[:start]) {
			t.Fatalf("cut at %d: segment is %d bytes after recovery, want %d", cut, len(got), start)
		}
	}
}

// TestRecoverSkipsDamagedCheckpoint corrupts the newest checkpoint: recovery
// uses the one before it, replays the longer log, and ends exactly.
func TestRecoverSkipsDamagedCheckpoint(t *testing.T) {
	const target = 30
	mem := vfs.NewMem()
	if err := runRaw(t, mem, newRawApp(target), 200); err != nil {
		t.Fatal(err)
	}
	in, _ := layout.Open(mem, testDir)
	newest := in.Manifest.Checkpoint
	if newest < 2 {
		t.Fatalf("need two checkpoints, MANIFEST names %d", newest)
	}
	path := in.CheckpointPath(newest)
	b := readAll(t, mem, path)
	b[len(b)/2] ^= 0xff
	writeAll(t, mem, path, b)

	var logs strings.Builder
	again := newRawApp(target)
	if err := runRawLogged(t, mem, again, 200, &logs); err != nil {
		t.Fatal(err)
	}
	if again.count != target {
		t.Fatalf("recovered count %d, want %d", again.count, target)
	}
	if !strings.Contains(logs.String(), "skipped checkpoint") {
		t.Fatalf("recovery did not say it skipped the damaged checkpoint:\n%s", logs.String())
	}
	s, _ := summarize(t, mem)
	checkExactLog(t, s, target, 0)
}

// TestRetention keeps the two newest checkpoints and the log from the older
// of them; recovery still ends exactly, also from the older one.
func TestRetention(t *testing.T) {
	const target = 40
	mem := vfs.NewMem()
	opts := Options{SegmentSize: 200, Retain: 2}
	if err := runRawOpts(t, mem, newRawApp(target), opts); err != nil {
		t.Fatal(err)
	}
	// Every recovery writes a checkpoint of its own (and waits for it): four
	// more runs make at least five checkpoints, whatever the timing.
	for i := 0; i < 4; i++ {
		if err := runRawOpts(t, mem, newRawApp(target), opts); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := layout.Open(mem, testDir)
	ckpts, _ := in.Checkpoints()
	segs, _ := in.Segments()
	if len(ckpts) != 2 || ckpts[1] != in.Manifest.Checkpoint || in.Manifest.Checkpoint < 5 {
		t.Fatalf("retain 2 left checkpoints %v (MANIFEST names %d)", ckpts, in.Manifest.Checkpoint)
	}
	if in.Manifest.FirstSegment != ckpts[0] || (len(segs) > 0 && segs[0] < ckpts[0]) {
		t.Fatalf("retain 2: MANIFEST first segment %d, segments %v, checkpoints %v", in.Manifest.FirstSegment, segs, ckpts)
	}
	// Damage the newest: recovery falls back to the older kept one.
	path := in.CheckpointPath(in.Manifest.Checkpoint)
	b := readAll(t, mem, path)
	b[len(b)-3] ^= 1
	writeAll(t, mem, path, b)
	again := newRawApp(target)
	if err := runRawOpts(t, mem, again, opts); err != nil {
		t.Fatal(err)
	}
	if again.count != target {
		t.Fatalf("recovered count %d", again.count)
	}
}

// TestCrashDuringRecovery crashes a run halfway, then takes the crash state
// after every filesystem operation of its recovery (which cuts a torn tail,
// writes a checkpoint and a new segment) and recovers each of those: the
// run always completes exactly.
func TestCrashDuringRecovery(t *testing.T) {
	const target = 10
	mem := vfs.NewMem()
	app := newRawApp(target)
	var mid *vfs.MemFS
	mem.SetHook(func(op vfs.Op) {
		if op.Index == 40 {
			mid = mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll})
		}
	})
	if err := runRaw(t, mem, app, 250); err != nil {
		t.Fatal(err)
	}
	if mid == nil {
		t.Fatalf("the run had only %d operations", mem.OpCount())
	}
	// Tear the crashed state's log as a crash in the middle of a write would.
	in, err := layout.Open(mid, testDir)
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := in.Segments()
	last := in.SegmentPath(segs[len(segs)-1])
	if b := readAll(t, mid, last); len(b) > 40 {
		writeAll(t, mid, last, append(b, b[16:40]...))
	}
	var states []*vfs.MemFS
	rec := newRawApp(target)
	mid.SetHook(func(op vfs.Op) {
		states = append(states, mid.CrashClone(vfs.CrashOptions{}), mid.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll}))
	})
	if err := runRaw(t, mid, rec, 250); err != nil {
		t.Fatal(err)
	}
	mid.SetHook(nil)
	t.Logf("%d crash states taken during the recovery run", len(states))
	for i, fs := range states {
		again := newRawApp(target)
		before := dumpInstance(fs.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll}))
		t.Cleanup(func() {
			if t.Failed() && os.Getenv("AMBR_DUMP") != "" {
				t.Logf("crash state %d before recovery:\n%s", i, before)
			}
		})
		if err := runRaw(t, fs, again, 250); err != nil {
			t.Fatalf("crash state %d: %v", i, err)
		}
		s, err := summarize(t, fs)
		if err != nil {
			t.Fatalf("crash state %d: %v", i, err)
		}
		checkExactLog(t, s, target, 0)
	}
}

// dumpInstance describes an instance's files for failure messages.
func dumpInstance(fsys vfs.FS) string {
	var b strings.Builder
	in, err := layout.Open(fsys, testDir)
	if err != nil {
		return err.Error()
	}
	fmt.Fprintf(&b, "MANIFEST: checkpoint %d\n", in.Manifest.Checkpoint)
	ckpts, _ := in.Checkpoints()
	for _, n := range ckpts {
		ck, err := in.ReadCheckpoint(n)
		if err != nil {
			fmt.Fprintf(&b, "chkpt-%d: %v\n", n, err)
			continue
		}
		fmt.Fprintf(&b, "chkpt-%d: next #%d inputs %v", n, ck.NextSeq, ck.Inputs)
		for _, o := range ck.Outputs {
			fmt.Fprintf(&b, " out %s last %d acked %d unacked %d", o.Peer, o.LastSeq, o.AckedSeq, len(o.Unacked))
		}
		fmt.Fprintf(&b, " state %x\n", ck.State)
	}
	segs, _ := in.Segments()
	for _, sg := range segs {
		lr, _ := in.NewLogReader(sg)
		fmt.Fprintf(&b, "log-%d:", sg)
		for {
			r, err := lr.Next()
			if err != nil {
				if err != io.EOF {
					fmt.Fprintf(&b, " [%v]", err)
				}
				break
			}
			if seg, _ := lr.Position(); seg != sg {
				break
			}
			fmt.Fprintf(&b, " #%d%v", r.Seq, r.Sources)
		}
		if tt := lr.TornTail(); tt != nil {
			fmt.Fprintf(&b, " [torn]")
		}
		lr.Close()
		b.WriteString("\n")
	}
	return b.String()
}

// TestRetentionSkipsTornCheckpoint (found in review): with Retain 2, a torn
// checkpoint left by a crash must not count as one of the two kept, or the
// last good fallback is deleted.
func TestRetentionSkipsTornCheckpoint(t *testing.T) {
	const target = 40
	mem := vfs.NewMem()
	opts := Options{SegmentSize: 200, Retain: 2}
	for i := 0; i < 3; i++ {
		if err := runRawOpts(t, mem, newRawApp(target), opts); err != nil {
			t.Fatal(err)
		}
	}
	in, _ := layout.Open(mem, testDir)
	ckpts, _ := in.Checkpoints()
	// A crash while the next checkpoint was being written leaves a torn file.
	good := readAll(t, mem, in.CheckpointPath(in.Manifest.Checkpoint))
	writeAll(t, mem, in.CheckpointPath(ckpts[len(ckpts)-1]+1), good[:len(good)/2])
	if err := runRawOpts(t, mem, newRawApp(target), opts); err != nil {
		t.Fatal(err)
	}
	in, _ = layout.Open(mem, testDir)
	path := in.CheckpointPath(in.Manifest.Checkpoint)
	b := readAll(t, mem, path)
	b[len(b)-3] ^= 1
	writeAll(t, mem, path, b)
	if err := runRawOpts(t, mem, newRawApp(target), opts); err != nil {
		t.Fatalf("newest checkpoint damaged, and no fallback was kept: %v", err)
	}
}

// TestRecoverVersion1Log recovers an instance written by the build before
// pipelined writes (testdata/v1-instance, from commit 47a838c: a counter
// run crashed half way, version 1 segments and a torn checkpoint): it
// recovers, continues in a version 2 segment, and completes exactly, the
// log read across both versions.
func TestRecoverVersion1Log(t *testing.T) {
	const target = 12
	mem := vfs.NewMem()
	src := filepath.Join("testdata", "v1-instance")
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		dst := filepath.Join(testDir, rel)
		if err := mem.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		writeAll(t, mem, dst, b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	before := readAll(t, mem, filepath.Join(testDir, "v0", "log-1"))
	if h, err := logfmt.ParseSegmentHeader(before); err != nil || h.Version != logfmt.SegmentFormatVersion1 {
		t.Fatalf("testdata is not a version 1 log: %+v, %v", h, err)
	}
	app := newRawApp(target)
	if err := runRaw(t, mem, app, 250); err != nil {
		t.Fatal(err)
	}
	s, err := summarize(t, mem)
	if err != nil {
		t.Fatal(err)
	}
	checkExactLog(t, s, target, 0)
	if app.count != target {
		t.Fatalf("count %d, want %d", app.count, target)
	}
	in, err := layout.Open(mem, testDir)
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := in.Segments()
	last := readAll(t, mem, in.SegmentPath(segs[len(segs)-1]))
	if h, _ := logfmt.ParseSegmentHeader(last); h.Version != logfmt.SegmentFormatVersion {
		t.Fatalf("the new segment is of version %d, want %d", h.Version, logfmt.SegmentFormatVersion)
	}
	if !bytes.Equal(readAll(t, mem, filepath.Join(testDir, "v0", "log-1")), before) {
		t.Fatal("recovery changed a version 1 segment")
	}
}
