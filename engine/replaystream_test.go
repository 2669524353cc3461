package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/google/go-cmp/cmp"
)

// snapshotFiles returns every file under dir and its bytes.
func snapshotFiles(t *testing.T, fsys vfs.FS, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p := filepath.Join(dir, n)
		st, err := fsys.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.IsDir() {
			for k, v := range snapshotFiles(t, fsys, p) {
				out[k] = v
			}
			continue
		}
		out[p] = readAll(t, fsys, p)
	}
	return out
}

// segmentRecordOffsets returns where each record of a segment starts.
func segmentRecordOffsets(t *testing.T, b []byte) []int64 {
	t.Helper()
	sr, err := logfmt.NewSegmentReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for {
		off := sr.Offset()
		if _, err := sr.Next(); err != nil {
			if err != io.EOF {
				t.Fatal(err)
			}
			return offs
		}
		offs = append(offs, off)
	}
}

// TestRecoverStreamedLogDamagedInTheMiddle: a record damaged in the middle
// of the log (valid records after it) still fails recovery with the error it
// gave when the whole log was read before the app got anything, although the
// app now got the checkpoint and the records before it; nothing on disk
// changes, and no record after the damage reaches the app.
func TestRecoverStreamedLogDamagedInTheMiddle(t *testing.T) {
	const target = 12
	mem, in, last := ranInstance(t, target)
	b := readAll(t, mem, last)
	offs := segmentRecordOffsets(t, b)
	if len(offs) < 6 {
		t.Fatalf("the last segment holds %d records; want more to damage one in the middle", len(offs))
	}
	bad := offs[len(offs)/2]
	b[bad+int64(logfmt.RecordFixedSize)+2] ^= 0x40
	writeAll(t, mem, last, b)
	ck, err := in.ReadCheckpoint(in.Manifest.Checkpoint)
	if err != nil {
		t.Fatal(err)
	}

	_, want := recoverInstance(mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll}), testDir)
	if !errors.Is(want, ErrDamagedLog) || !errors.Is(want, logfmt.ErrCorrupt) {
		t.Fatalf("reading the whole log: %v; want a damaged log", want)
	}
	before := snapshotFiles(t, mem, testDir)
	app := newRawApp(target)
	err = runRaw(t, mem, app, 1<<20)
	if !errors.Is(err, ErrFatal) || !errors.Is(err, ErrDamagedLog) || !strings.Contains(err.Error(), want.Error()) {
		t.Fatalf("recovery: %v; want ErrFatal with %q", err, want)
	}
	if diff := cmp.Diff(before, snapshotFiles(t, mem, testDir)); diff != "" {
		t.Fatalf("a failed recovery changed the instance (-before +after):\n%s", diff)
	}
	app.mu.Lock()
	defer app.mu.Unlock()
	if app.lastSeq >= ck.NextSeq+int64(len(offs)/2) {
		t.Fatalf("the app got record %d; the damaged one is record %d", app.lastSeq, ck.NextSeq+int64(len(offs)/2))
	}
}

// streamed runs streamLog over the instance in dir to the end, never
// holding it back, and returns its records.
func streamed(t *testing.T, fsys vfs.FS, batchBytes int) (*recovered, []replayItem, []replayBatch) {
	t.Helper()
	rec, err := recoverCheckpoint(fsys, testDir)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	finished := make(chan struct{})
	ch := streamLog(rec, rec.manifest.CommitterID, batchBytes, func() bool { return true }, stop, func() { close(finished) })
	var items []replayItem
	var batches []replayBatch
	for b := range ch {
		batches = append(batches, b)
		items = append(items, b.items...)
		if b.err != nil {
			t.Fatal(b.err)
		}
		if b.end {
			break
		}
	}
	<-finished
	return rec, items, batches
}

// The records streamed are those recoverInstance reads, in order, each with
// the wire record ReplayRecord built, byte for byte, and the same notes and
// tail; the torn tail is cut as before.
func TestStreamLogSameAsRecoverInstance(t *testing.T) {
	mem, last, clone := tornInstance(t, 20, 5)
	want, err := recoverInstance(clone, testDir)
	if err != nil {
		t.Fatal(err)
	}
	got, items, batches := streamed(t, mem, 100)
	if len(batches) < 3 {
		t.Fatalf("%d batches of 100 bytes; want the log in several", len(batches))
	}
	if len(items) != len(want.records) || len(items) == 0 {
		t.Fatalf("streamed %d records, recoverInstance read %d", len(items), len(want.records))
	}
	for i, it := range items {
		w := want.records[i]
		if diff := cmp.Diff(*w, it.rec); diff != "" {
			t.Fatalf("record %d differs (-recoverInstance +streamed):\n%s", i, diff)
		}
		if wire := logfmt.AppendWireRecord(nil, want.manifest.CommitterID, w.Seq, w.Messages); !bytes.Equal(wire, it.wire) {
			t.Fatalf("record %d: wire %x, want %x", w.Seq, it.wire, wire)
		}
		if &it.rec.Messages[0] != &it.wire[logfmt.WireHeaderSize] {
			t.Fatalf("record %d: its messages are not the body of its wire record", w.Seq)
		}
	}
	if diff := cmp.Diff(want.notes, got.notes); diff != "" || len(got.notes) == 0 {
		t.Fatalf("notes (-recoverInstance +streamed):\n%s", diff)
	}
	if want.tailSeg != got.tailSeg || want.tailEnd != got.tailEnd || want.hasTail != got.hasTail {
		t.Fatalf("tail %d/%d/%v, recoverInstance's %d/%d/%v", got.tailSeg, got.tailEnd, got.hasTail, want.tailSeg, want.tailEnd, want.hasTail)
	}
	if !bytes.Equal(readAll(t, mem, last), readAll(t, clone, last)) || !bytes.Equal(readAll(t, mem, last+layout.BrokenSuffix), readAll(t, clone, last+layout.BrokenSuffix)) {
		t.Fatal("the torn tail was not cut as recoverInstance cuts it")
	}

	// The Core sends the app the same bytes either way.
	wire := func(feed func(c *Core, i int) error) [][]byte {
		c := NewCore(CoreConfig{Name: "counter", CommitterID: want.manifest.CommitterID})
		c.StartRecovery(want.checkpoint, want.newSegment)
		for i := range items {
			if err := feed(c, i); err != nil {
				t.Fatal(err)
			}
		}
		var out [][]byte
		for _, b := range c.Ready().ToApp {
			out = append(out, append([]byte(nil), b...))
		}
		return out
	}
	a := wire(func(c *Core, i int) error { return c.ReplayRecord(want.records[i]) })
	b := wire(func(c *Core, i int) error { return c.ReplayWire(&items[i].rec, items[i].wire) })
	if len(a) != len(items)+1 || !cmp.Equal(a, b) {
		t.Fatalf("ReplayWire sends %d wire records, ReplayRecord %d; or they differ", len(b), len(a))
	}
}

// The reader reads ahead only as far as wait lets it: one batch per wait
// that returned, plus the channel's worth it may not hand over yet; and it
// ends when stopped, wherever it waits.
func TestStreamLogReadAheadIsBounded(t *testing.T) {
	const target = 30
	mem := vfs.NewMem()
	if err := runRaw(t, mem, newRawApp(target), 1<<20); err != nil {
		t.Fatal(err)
	}
	_, all, _ := streamed(t, mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll}), 1)
	if len(all) < 10 {
		t.Fatalf("%d records; want more", len(all))
	}
	rec, err := recoverCheckpoint(mem, testDir)
	if err != nil {
		t.Fatal(err)
	}
	const allowed = 3
	waits := 0
	gate := make(chan struct{})
	stop := make(chan struct{})
	finished := make(chan struct{})
	ch := streamLog(rec, rec.manifest.CommitterID, 1, func() bool {
		waits++
		if waits > allowed {
			select {
			case <-gate:
			case <-stop:
				return false
			}
		}
		return true
	}, stop, func() { close(finished) })
	var got []replayBatch
	timeout := time.After(200 * time.Millisecond)
	for done := false; !done; {
		select {
		case b := <-ch:
			got = append(got, b)
		case <-timeout:
			done = true
		}
	}
	if len(got) != allowed {
		t.Fatalf("the reader handed %d batches while wait let %d through", len(got), allowed)
	}
	for _, b := range got {
		if len(b.items) != 1 || b.end || b.err != nil {
			t.Fatalf("a batch of 1 byte holds %d records (end %v, err %v); want one", len(b.items), b.end, b.err)
		}
	}
	close(stop)
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not stop")
	}
}

// The flow's toApp gate opens once the bytes waiting for the app fall below
// the limit, or the conversation ends.
func TestFlowWaitToAppBelow(t *testing.T) {
	f := newFlow(1 << 20)
	f.addToApp(100)
	done := make(chan struct{})
	passed := make(chan struct{})
	go func() { f.waitToAppBelow(done, 100); close(passed) }()
	select {
	case <-passed:
		t.Fatal("passed at 100 bytes waiting, limit 100")
	case <-time.After(20 * time.Millisecond):
	}
	f.addToApp(-1)
	select {
	case <-passed:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting at 99 bytes")
	}
	f.addToApp(1)
	passed = make(chan struct{})
	go func() { f.waitToAppBelow(done, 100); close(passed) }()
	close(done)
	select {
	case <-passed:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after done")
	}
}

// readCheckpointState returns what io.ReadAll did, for states of the
// announced length, shorter, longer, and a read error.
func TestReadCheckpointState(t *testing.T) {
	msg := func(n int64) logfmt.Message {
		m, _, err := logfmt.ParseMessage(logfmt.AppendCheckpointMessage(nil, n))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, tc := range []struct {
		in string
		n  int64
	}{{"abc", 3}, {"", 0}, {"ab", 3}, {"abcd", 3}, {"abcd", maxStatePrealloc + 1}} {
		want, werr := io.ReadAll(strings.NewReader(tc.in))
		got, gerr := readCheckpointState(strings.NewReader(tc.in), msg(tc.n), 0, nil)
		if !bytes.Equal(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
			t.Fatalf("%q announced %d: %q, %v; io.ReadAll %q, %v", tc.in, tc.n, got, gerr, want, werr)
		}
	}
	boom := errors.New("boom")
	if _, err := readCheckpointState(io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(boom)), msg(3), 0, nil); !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
	// A state larger than the first read, arriving in pieces: the buffer
	// grows to it.
	big := bytes.Repeat([]byte("0123456789abcdef"), (stateFirstRead*5/2)/16+3)
	got, err := readCheckpointState(iotest.HalfReader(bytes.NewReader(big)), msg(int64(len(big))), 0, nil)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("a state of %d bytes in pieces: %d bytes back, %v", len(big), len(got), err)
	}
	// A gigabyte announced and nothing sent costs no gigabyte (found in
	// review: the buffer was allocated whole before anything arrived).
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if got, err := readCheckpointState(strings.NewReader(""), msg(maxStatePrealloc), 0, nil); err != nil || len(got) != 0 {
		t.Fatalf("nothing sent: %d bytes, %v", len(got), err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 2*stateFirstRead {
		t.Fatalf("a gigabyte announced, nothing sent: %d MiB allocated", alloc>>20)
	}
	// A state as large as the instance's last one is read into one buffer
	// (no doubling); a gigabyte announced after it costs a quarter more
	// than it, and no more.
	known := int64(len(big))
	runtime.ReadMemStats(&before)
	got, err = readCheckpointState(iotest.HalfReader(bytes.NewReader(big)), msg(known), known, nil)
	runtime.ReadMemStats(&after)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("a state of the known size: %d bytes back, %v", len(got), err)
	}
	// Doublings from stateFirstRead would allocate more than twice it.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(known+known/2) {
		t.Fatalf("a state of the known size %d: %d bytes allocated, want one buffer", known, alloc)
	}
	runtime.ReadMemStats(&before)
	if got, err := readCheckpointState(strings.NewReader(""), msg(maxStatePrealloc), known, nil); err != nil || len(got) != 0 {
		t.Fatalf("nothing sent: %d bytes, %v", len(got), err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > uint64(known+known/4+1<<20) {
		t.Fatalf("a gigabyte announced after a state of %d, nothing sent: %d bytes allocated", known, alloc)
	}
	// A spare buffer takes a state it holds that is at least half its
	// size; a smaller one, or one too large for it, gets a buffer of its
	// own.
	spare := make([]byte, 3, len(big))
	got, err = readCheckpointState(bytes.NewReader(big), msg(known), 0, spare)
	if err != nil || !bytes.Equal(got, big) || &got[0] != &spare[:1][0] {
		t.Fatalf("a state the spare holds: %d bytes back, %v, in the spare %v", len(got), err, err == nil && &got[0] == &spare[:1][0])
	}
	for _, n := range []int{len(big)/2 - 1, len(big) + 1} {
		in := bytes.Repeat([]byte("x"), n)
		got, err = readCheckpointState(bytes.NewReader(in), msg(int64(n)), 0, spare)
		if err != nil || !bytes.Equal(got, in) || &got[0] == &spare[:1][0] {
			t.Fatalf("a state of %d bytes, spare of %d: %d bytes back, %v, in the spare %v", n, cap(spare), len(got), err, err == nil && &got[0] == &spare[:1][0])
		}
	}
}

// The app sender hands back the buffer it was asked to once the chunk
// queued from it (ending where it ends) is written, and not before.
func TestAppSenderRecycles(t *testing.T) {
	r, w := io.Pipe()
	s := newAppSender(w, newFlow(0), func(error) {})
	defer s.close()
	defer r.Close() // first: the sender may be blocked writing
	// Larger than the sender's buffer, so written, not copied into it.
	buf := bytes.Repeat([]byte("b"), 1<<20)
	s.recycleAfter(buf)
	s.send([][]byte{[]byte("first"), buf[40:]}, nil)
	got := make([]byte, 5+1000)
	if _, err := io.ReadFull(r, got); err != nil || string(got[:5]) != "first" {
		t.Fatalf("%q, %v", got[:5], err)
	}
	time.Sleep(20 * time.Millisecond)
	if b := s.takeSpare(); b != nil {
		t.Fatal("spare handed back before its chunk was written")
	}
	if _, err := io.ReadFull(r, make([]byte, len(buf)-40-1000)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	var b []byte
	for b == nil && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
		b = s.takeSpare()
	}
	if b == nil || &b[0] != &buf[0] || len(b) != len(buf) {
		t.Fatalf("spare %d bytes, want the buffer of %d back", len(b), len(buf))
	}
	if s.takeSpare() != nil {
		t.Fatal("spare handed back twice")
	}
}

// The reader runs as far ahead as the checkpoint is large, within bounds.
func TestReplayAhead(t *testing.T) {
	for _, tc := range []struct {
		state int
		want  int64
	}{{0, replayAheadMin}, {1 << 20, replayAheadMin}, {64 << 20, 64 << 20}, {1 << 30, replayAheadMax}} {
		if got := replayAhead(tc.state); got != tc.want {
			t.Fatalf("replayAhead(%d) = %d, want %d", tc.state, got, tc.want)
		}
	}
}

// An app that goes away while the log is streamed to it ends the
// conversation as an app gone: the reader stops, and the app that connects
// next is recovered from the start. The run then completes exactly, with
// the torn tail cut once.
func TestRecoverAppGoneWhileStreaming(t *testing.T) {
	const target = 30
	mem, last, clone := tornInstance(t, target, 3)
	if _, err := recoverInstance(clone, testDir); err != nil {
		t.Fatal(err)
	}
	wantCut := readAll(t, clone, last+layout.BrokenSuffix)

	// One record a batch, and the reader waits until the app has taken
	// everything handed to it: it is mid-log when the app goes.
	ahead, batch := replayAheadMin, replayBatchBytes
	replayAheadMin, replayBatchBytes = 1, 1
	t.Cleanup(func() { replayAheadMin, replayBatchBytes = ahead, batch })

	var gone atomic.Int32
	pc := startPipeCoordinator(t, mem, func(AppGone) { gone.Add(1) })
	pl, status, ctx, cancel, errc := pc.pl, &pc.status, pc.ctx, pc.cancel, pc.errc

	// The first app reads the checkpoint's wire header and a little, then
	// goes.
	toIC, fromIC, err := pl.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(fromIC, make([]byte, logfmt.WireHeaderSize+4)); err != nil {
		t.Fatal(err)
	}
	toIC.Close()
	fromIC.Close()

	app := newRawApp(target)
	toIC, fromIC, err = pl.Dial(ctx)
	if err != nil {
		t.Fatalf("the coordinator did not take a second app: %v (%v)", err, status.Load())
	}
	appDone := make(chan error, 1)
	go func() { appDone <- app.run(ctx, toIC, fromIC) }()
	pc.waitReached(t, app)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if st, ok := status.Load().(Status); ok && st.Phase == "live" && !st.CheckpointBusy {
			break
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	<-appDone
	pl.Close()
	if gone.Load() != 1 {
		t.Fatalf("OnAppGone called %d times, want once", gone.Load())
	}
	s, err := summarize(t, mem)
	if err != nil {
		t.Fatal(err)
	}
	checkExactLog(t, s, target, 0)
	if b := readAll(t, mem, last+layout.BrokenSuffix); !bytes.Equal(b, wantCut) {
		t.Fatalf("%s holds %d bytes, want the %d recoverInstance cuts", filepath.Base(last)+layout.BrokenSuffix, len(b), len(wantCut))
	}
	if _, err := mem.Stat(last + layout.BrokenSuffix + ".2"); err == nil {
		t.Fatal("the torn tail was cut twice")
	}
}

// Found in review: the sender handed the spare back and then still read the
// chunk's wire header (its sequence number, for AppGone.Delivered), which
// an app's Checkpoint read into the spare at that moment writes over (a
// data race under -race; a delivered record made of the app's bytes).
func TestAppSenderSpareNotReadAfterHandBack(t *testing.T) {
	state := make([]byte, 1<<20)
	framed := make([]byte, checkpointRoom+len(state))
	copy(framed[checkpointRoom:], state)
	hdr := logfmt.AppendCheckpointMessage(nil, int64(len(state)))
	at := checkpointRoom - logfmt.WireHeaderSize - len(hdr)
	wire := framed[at:]
	logfmt.AppendWireRecord(wire[:0], 7, logfmt.SeqCheckpointRecord, hdr)

	icSide, appSide := net.Pipe()
	go io.Copy(io.Discard, appSide)
	s := newAppSender(icSide, newFlow(0), func(error) {})
	defer s.close()
	defer appSide.Close()
	s.recycleAfter(framed)
	done := make(chan struct{})
	go func() { // readApp's part: the app's state read into the spare
		defer close(done)
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			if b := s.takeSpare(); b != nil {
				for i := range b[:checkpointRoom+8] {
					b[i] = 0x7f // an attacker's state bytes
				}
				return
			}
		}
	}()
	s.send([][]byte{wire}, nil)
	<-done
	time.Sleep(50 * time.Millisecond)
	if d := s.delivered.Load(); d != 0 {
		t.Fatalf("delivered %d: the sender read the handed-back buffer", d)
	}
}

// Once the app has read the checkpoint, the reader hands the app sender
// about replayAhead of log while the app reads nothing more, however large
// the checkpoint (found in review: a limit of the state's size plus
// replayAhead let it run a whole checkpoint's size further ahead).
func TestReplayReadAheadAfterCheckpointWritten(t *testing.T) {
	const target = 2500
	mem, in, _ := ranInstanceSeg(t, target, 64<<20)
	k := in.Manifest.Checkpoint
	ck, err := in.ReadCheckpoint(k)
	if err != nil {
		t.Fatal(err)
	}
	const S = 64 << 10
	ck.State = make([]byte, S)
	var buf bytes.Buffer
	if err := logfmt.WriteCheckpoint(&buf, ck); err != nil {
		t.Fatal(err)
	}
	writeAll(t, mem, in.CheckpointPath(k), buf.Bytes())
	rec, err := recoverInstance(mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll}), testDir)
	if err != nil {
		t.Fatal(err)
	}
	var wireBytes int
	for _, r := range rec.records {
		wireBytes += logfmt.WireHeaderSize + len(r.Messages)
	}
	perRecord := float64(wireBytes) / float64(len(rec.records))
	t.Logf("%d records after the checkpoint, %d wire bytes", len(rec.records), wireBytes)

	mn, mx, bb := replayAheadMin, replayAheadMax, replayBatchBytes
	replayAheadMin, replayAheadMax, replayBatchBytes = 1, 4<<10, 1
	t.Cleanup(func() { replayAheadMin, replayAheadMax, replayBatchBytes = mn, mx, bb })

	pc := startPipeCoordinator(t, mem, nil)
	pl, status, ctx, cancel, errc := pc.pl, &pc.status, pc.ctx, pc.cancel, pc.errc
	toIC, fromIC, err := pl.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr := logfmt.AppendCheckpointMessage(nil, S)
	if _, err := io.ReadFull(fromIC, make([]byte, logfmt.WireHeaderSize+len(hdr)+S)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the app reads nothing more
	st, _ := status.Load().(Status)
	replayed := st.NextSeq - ck.NextSeq
	held := int64(float64(replayed) * perRecord)
	t.Logf("state %d, replayAheadMax %d: %d records (~%d bytes of log) handed over while the app reads nothing", S, replayAheadMax, replayed, held)
	cancel()
	toIC.Close()
	fromIC.Close()
	<-errc
	pl.Close()
	if held > 4*replayAheadMax+int64(64<<10)/4 {
		t.Fatalf("the reader ran ~%d bytes of log ahead of a stalled app; replayAheadMax is %d", held, replayAheadMax)
	}
}

// pipeCoordinator is a coordinator of the instance testDir whose apps
// connect through pl, run until the test ends or cancel is called; status
// holds its last report and errc gets what Run returned.
type pipeCoordinator struct {
	pl     *PipeListener
	status atomic.Value
	ctx    context.Context
	cancel context.CancelFunc
	errc   chan error
}

func startPipeCoordinator(t *testing.T, fsys vfs.FS, onGone func(AppGone)) *pipeCoordinator {
	t.Helper()
	pc := &pipeCoordinator{pl: NewPipeListener(), errc: make(chan error, 1)}
	c, err := New(Options{Dir: testDir, Name: "counter", FS: fsys, Listener: pc.pl, Logger: quietLogger(),
		Registry: FileRegistry{Dir: t.TempDir()}, OnStatus: func(s Status) { pc.status.Store(s) }, OnAppGone: onGone,
		Now: (&testClock{t: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}).Now})
	if err != nil {
		t.Fatal(err)
	}
	pc.ctx, pc.cancel = context.WithCancel(context.Background())
	t.Cleanup(pc.cancel)
	go func() { pc.errc <- c.Run(pc.ctx) }()
	return pc
}

// waitReached waits until app has done all its work as a primary.
func (pc *pipeCoordinator) waitReached(t *testing.T, app *rawApp) {
	t.Helper()
	select {
	case <-app.reachedCh:
	case err := <-pc.errc:
		t.Fatalf("the coordinator stopped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out; coordinator %+v", pc.status.Load())
	}
}

// tornInstance runs a raw app to target in memory and cuts the last cut
// bytes off its last segment (a torn tail), returning the instance, that
// segment's path, and a crash clone of it to recover once for comparison.
func tornInstance(t *testing.T, target int64, cut int) (mem *vfs.MemFS, last string, clone *vfs.MemFS) {
	t.Helper()
	mem, _, last = ranInstance(t, target)
	full := readAll(t, mem, last)
	writeAll(t, mem, last, full[:len(full)-cut])
	return mem, last, mem.CrashClone(vfs.CrashOptions{KeepUnsynced: vfs.KeepAll, KeepUnsyncedDirs: vfs.KeepAll})
}

// ranInstance runs a raw app to target in memory and returns the instance
// and the path of its last segment.
func ranInstance(t *testing.T, target int64) (*vfs.MemFS, *layout.Instance, string) {
	t.Helper()
	return ranInstanceSeg(t, target, 1<<20)
}

// ranInstanceSeg is ranInstance with segments of segSize (a checkpoint
// each): 64<<20 leaves checkpoint 1 only.
func ranInstanceSeg(t *testing.T, target, segSize int64) (*vfs.MemFS, *layout.Instance, string) {
	t.Helper()
	mem := vfs.NewMem()
	if err := runRaw(t, mem, newRawApp(target), segSize); err != nil {
		t.Fatal(err)
	}
	in, err := layout.Open(mem, testDir)
	if err != nil {
		t.Fatal(err)
	}
	segs, _ := in.Segments()
	return mem, in, in.SegmentPath(segs[len(segs)-1])
}

// TestStreamedRecoveryRefusesAnEarlyCheckpoint (found in review): an app
// that sends a Checkpoint before it was asked for one is a protocol error,
// while the log is still replayed to it (held until the log's end, it was
// taken as the becoming-primary checkpoint: a checkpoint past every
// replayed record holding the state from before them) and once the log was
// read but before the request was on its way to it. The instance recovers
// with the next app as if the first had not been.
func TestStreamedRecoveryRefusesAnEarlyCheckpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target int64
		slow   bool          // one record a batch, the reader a record ahead
		pause  time.Duration // before the app answers
	}{
		{"during the replay", 300, true, 0},
		// More log than the app sender buffers (4 KiB here): the request
		// waits behind records the app does not read.
		{"after the log was read", 1000, false, 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			mem, in, _ := ranInstanceSeg(t, target, 64<<20)
			ck0 := in.Manifest.Checkpoint
			sendBuf := appSendBuffer
			appSendBuffer = 4 << 10
			t.Cleanup(func() { appSendBuffer = sendBuf })
			if tc.slow {
				ahead, batch := replayAheadMin, replayBatchBytes
				replayAheadMin, replayBatchBytes = 1, 1
				t.Cleanup(func() { replayAheadMin, replayBatchBytes = ahead, batch })
			}
			goneErr := make(chan error, 4)
			pc := startPipeCoordinator(t, mem, func(g AppGone) { goneErr <- g.Err })
			pl, status, ctx, cancel, errc := pc.pl, &pc.status, pc.ctx, pc.cancel, pc.errc
			toIC, fromIC, err := pl.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ck, err := in.ReadCheckpoint(ck0)
			if err != nil {
				t.Fatal(err)
			}
			// The app reads the checkpoint record and nothing more, then
			// answers with the state as it was.
			hdr := logfmt.AppendCheckpointMessage(nil, int64(len(ck.State)))
			if _, err := io.ReadFull(fromIC, make([]byte, logfmt.WireHeaderSize+len(hdr)+len(ck.State))); err != nil {
				t.Fatal(err)
			}
			time.Sleep(tc.pause)
			if _, err := toIC.Write(append(hdr, ck.State...)); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-goneErr:
				if err == nil || !strings.Contains(err.Error(), "Checkpoint") || !strings.Contains(err.Error(), "asked for") {
					t.Fatalf("the app went with %v; want the unasked-for Checkpoint named", err)
				}
				t.Logf("refused: %v", err)
			case err := <-errc:
				t.Fatalf("the coordinator stopped: %v", err)
			case <-time.After(20 * time.Second):
				t.Fatalf("the early Checkpoint was not refused; coordinator %+v", status.Load())
			}
			toIC.Close()
			fromIC.Close()
			if m, err := layout.ReadManifest(mem, testDir); err != nil || m.Checkpoint != ck0 {
				t.Fatalf("MANIFEST after the refused Checkpoint: %+v (%v); want checkpoint %d still", m, err, ck0)
			}

			app := newRawApp(target)
			toIC, fromIC, err = pl.Dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			go app.run(ctx, toIC, fromIC)
			pc.waitReached(t, app)
			app.mu.Lock()
			count, aerr := app.count, app.err
			app.mu.Unlock()
			if count != target || aerr != nil {
				t.Fatalf("the next app recovered count %d (%v); want %d", count, aerr, target)
			}
			cancel()
			<-errc
		})
	}
}
