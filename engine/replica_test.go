package engine

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// switchFence is a Fence whose epoch moves when the test says: checks
// number n and later fail.
type switchFence struct {
	checks  atomic.Int64
	failAt  atomic.Int64 // 0: never
	lockOps atomic.Int64
}

func (f *switchFence) Epoch() uint64 { return 3 }
func (f *switchFence) Check() error {
	n := f.checks.Add(1)
	if at := f.failAt.Load(); at != 0 && n >= at {
		return &DeposedError{Replica: 0, Epoch: 3, Newer: 4}
	}
	return nil
}
func (f *switchFence) Do(op func() error) error {
	f.lockOps.Add(1)
	if err := f.Check(); err != nil {
		return err
	}
	return op()
}

type writerProbe struct {
	mu      sync.Mutex
	cond    *sync.Cond
	durable int64
	err     error
}

func newWriterProbe(t *testing.T, dir string, fence Fence) (*LogWriter, *writerProbe) {
	p := &writerProbe{}
	p.cond = sync.NewCond(&p.mu)
	w := NewFencedLogWriter(vfs.Default(), dir, fence,
		func(seq int64) { p.mu.Lock(); p.durable = seq; p.mu.Unlock(); p.cond.Broadcast() },
		func(err error) { p.mu.Lock(); p.err = err; p.mu.Unlock(); p.cond.Broadcast() })
	t.Cleanup(func() { w.Close() })
	return w, p
}

// wait returns once seq is durable or the writer failed.
func (p *writerProbe) wait(seq int64) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.durable < seq && p.err == nil {
		p.cond.Wait()
	}
	return p.durable, p.err
}

func testRecord(seq int64) *logfmt.Record {
	msg := logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte("x")})
	return &logfmt.Record{Seq: seq, Time: seq, Sources: []logfmt.Source{{Peer: "t", FirstSeq: seq, Count: 1}}, Messages: msg, MessageCount: 1}
}

func TestFencedWriterRefusesToWriteWhenDeposed(t *testing.T) {
	dir := t.TempDir()
	f := &switchFence{}
	w, p := newWriterProbe(t, dir, f)
	w.Submit([]LogWrite{{Segment: 1, Record: testRecord(1)}, {Segment: 1, Record: testRecord(2)}})
	if d, err := p.wait(2); err != nil || d != 2 {
		t.Fatalf("durable %d, err %v; want 2, nil", d, err)
	}
	if f.lockOps.Load() != 1 {
		t.Fatalf("segment creations under the fence: %d, want 1", f.lockOps.Load())
	}
	path := filepath.Join(dir, layout.SegmentName(1))
	before, _ := os.Stat(path)
	f.failAt.Store(f.checks.Load() + 1) // the next check: before the write
	w.Submit([]LogWrite{{Segment: 1, Record: testRecord(3)}})
	d, err := p.wait(3)
	var dep *DeposedError
	if !errors.As(err, &dep) || d != 2 {
		t.Fatalf("durable %d, err %v; want 2 and a DeposedError", d, err)
	}
	if want := "replica 0: deposed at epoch 3 by a newer primary (epoch 4); stopping without writing"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	after, _ := os.Stat(path)
	if after.Size() != before.Size() {
		t.Fatalf("a deposed writer wrote %d bytes", after.Size()-before.Size())
	}
}

func TestFencedWriterReportsNothingSyncedAfterADeposition(t *testing.T) {
	dir := t.TempDir()
	f := &switchFence{}
	// Checks: 1 create, 2 before the write, 3 after the sync.
	f.failAt.Store(3)
	w, p := newWriterProbe(t, dir, f)
	w.Submit([]LogWrite{{Segment: 1, Record: testRecord(1)}})
	d, err := p.wait(1)
	var dep *DeposedError
	if !errors.As(err, &dep) || d != 0 {
		t.Fatalf("durable %d, err %v; want nothing durable and a DeposedError", d, err)
	}
}

func TestFencedWriterCreatesNoSegmentWhenDeposed(t *testing.T) {
	dir := t.TempDir()
	f := &switchFence{}
	w, p := newWriterProbe(t, dir, f)
	w.Submit([]LogWrite{{Segment: 1, Record: testRecord(1)}})
	if _, err := p.wait(1); err != nil {
		t.Fatal(err)
	}
	f.failAt.Store(f.checks.Load() + 1)
	w.Submit([]LogWrite{{Segment: 2, Record: testRecord(2)}})
	if _, err := p.wait(2); err == nil {
		t.Fatal("a deposed writer rolled to a new segment")
	}
	if _, err := os.Stat(filepath.Join(dir, layout.SegmentName(2))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log-2 exists after a deposed roll: %v", err)
	}
}

// TestSealStopsReaders: records past a segment's seal are not read, though
// they are whole and valid; End reports the seal.
func TestSealStopsReaders(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "x")
	logDir := filepath.Join(dir, layout.VersionDir(0))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, p := newWriterProbe(t, logDir, nil)
	for i := int64(1); i <= 5; i++ {
		w.Submit([]LogWrite{{Segment: 1, Record: testRecord(i)}})
		if _, err := p.wait(i); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	// The seal: after record 3.
	in := &layout.Instance{FS: vfs.Default(), Dir: dir, Manifest: &logfmt.Manifest{}}
	lr, err := in.NewLogReader(0)
	if err != nil {
		t.Fatal(err)
	}
	var seal int64
	for {
		r, err := lr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if r.Seq == 3 {
			break
		}
	}
	if _, err := lr.Next(); err != nil { // record 4 starts where 3 ends
		t.Fatal(err)
	}
	_, seal = lr.Position()
	lr.Close()

	in.Manifest.Seals = map[uint64]int64{1: seal}
	for _, name := range []string{"from the start", "at an index position"} {
		var lr *layout.LogReader
		if name == "from the start" {
			lr, err = in.NewLogReader(0)
		} else {
			_, off := firstRecordOffset(t, in)
			lr, err = in.NewLogReaderAt(1, off, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for {
			r, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got = append(got, r.Seq)
		}
		if len(got) != 3 || got[2] != 3 || lr.TornTail() != nil {
			t.Fatalf("%s: read %v (torn %v), want 1..3 and a clean end at the seal", name, got, lr.TornTail())
		}
		if seg, end := lr.End(); name == "from the start" && (seg != 1 || end != seal) {
			t.Fatalf("End = %d/%d, want 1/%d", seg, end, seal)
		}
		lr.Close()
	}
}

func firstRecordOffset(t *testing.T, in *layout.Instance) (uint64, int64) {
	lr, err := in.NewLogReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	if _, err := lr.Next(); err != nil {
		t.Fatal(err)
	}
	return lr.Position()
}

func TestElectionFirstReplicaWinsAndSecondWaits(t *testing.T) {
	dir := t.TempDir()
	a := &FileElection{Dir: dir, Replica: 0}
	pa, err := a.Campaign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if pa.Epoch() != 1 {
		t.Fatalf("first primary's epoch %d, want 1", pa.Epoch())
	}
	var waited []string
	b := &FileElection{Dir: dir, Replica: 1, TTL: 100 * time.Millisecond, OnWait: func(r string) { waited = append(waited, r) }}
	type result struct {
		p   Primacy
		err error
	}
	won := make(chan result, 1)
	go func() { p, err := b.Campaign(context.Background()); won <- result{p, err} }()
	// b cannot win while a holds the lock and renews its lease; it wins at
	// once when a resigns (its lock is released).
	time.Sleep(300 * time.Millisecond)
	select {
	case r := <-won:
		t.Fatalf("the second replica became primary (epoch %d, %v) while the first held the lock and lease", r.p.Epoch(), r.err)
	default:
	}
	pa.Resign()
	r := <-won
	if r.err != nil || r.p.Epoch() != 2 {
		t.Fatalf("second campaign: epoch %v, %v; want 2", r.p, r.err)
	}
	defer r.p.Resign()
	if e, _ := ReadEpoch(dir); e != 2 {
		t.Fatalf("EPOCH holds %d, want 2", e)
	}
	if len(waited) != 1 || waited[0] != "standby: the primary (epoch 1) holds PRIMARY.lock" {
		t.Fatalf("standby said %q", waited)
	}
}

// TestElectionStalledPrimaryIsDeposed: a primary that stops renewing its
// lease while it keeps its lock (SIGSTOP) is replaced after the TTL, and
// finds itself deposed.
func TestElectionStalledPrimaryIsDeposed(t *testing.T) {
	dir := t.TempDir()
	a := &FileElection{Dir: dir, Replica: 0}
	pa, err := a.Campaign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fp := pa.(*filePrimacy)
	close(fp.stop) // the renewing stops; the lock stays held
	<-fp.done
	// TTLs of 500 ms: the live primary must renew within them while the
	// third replica campaigns; on a loaded machine 100 ms was missed.
	b := &FileElection{Dir: dir, Replica: 1, TTL: 500 * time.Millisecond}
	pb, err := b.Campaign(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Resign()
	if pb.Epoch() != 2 {
		t.Fatalf("epoch %d, want 2", pb.Epoch())
	}
	err = pa.Check()
	var dep *DeposedError
	if !errors.As(err, &dep) || dep.Epoch != 1 || dep.Newer != 2 {
		t.Fatalf("the stalled primary's check: %v, want deposed at 1 by 2", err)
	}
	select {
	case <-pa.Deposed():
	default:
		t.Fatal("Deposed not closed after a failed check")
	}
	if err := pa.Do(func() error { t.Fatal("a deposed primary ran a fenced operation"); return nil }); !errors.As(err, &dep) {
		t.Fatalf("Do: %v", err)
	}
	// The new primary took the lease, not the lock; a third replica that
	// gets the lock once the stalled one is gone must not take over from
	// the live primary, and the live primary takes the lock.
	fp.primaryLock.Unlock()
	c := &FileElection{Dir: dir, Replica: 2, TTL: 500 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if p, err := c.Campaign(ctx); err == nil {
		t.Fatalf("a third replica took over from a live primary (epoch %d)", p.Epoch())
	}
	if e, _ := ReadEpoch(dir); e != 2 {
		t.Fatalf("EPOCH holds %d, want 2", e)
	}
	if !pb.(*filePrimacy).hasFlockNow() {
		t.Fatal("the primary promoted by lease did not take PRIMARY.lock once it was free")
	}
}

// TestElectionRaceOneWinner: standbys that all see a dead primary bump the
// epoch once between them.
func TestElectionRaceOneWinner(t *testing.T) {
	dir := t.TempDir()
	const n = 4
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	wins := make(chan Primacy, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			// A TTL well above the wait below: the race is decided by the
			// lock, not by a lease a loaded machine failed to renew.
			e := &FileElection{Dir: dir, Replica: i, TTL: time.Second}
			if p, err := e.Campaign(ctx); err == nil {
				wins <- p
			}
		}(i)
	}
	first := <-wins
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	close(wins)
	if extra := len(wins); extra != 0 {
		t.Fatalf("%d more replicas became primary while the first lived", extra)
	}
	if e, _ := ReadEpoch(dir); e != 1 || first.Epoch() != 1 {
		t.Fatalf("EPOCH %d, primary's %d, want 1", e, first.Epoch())
	}
	first.Resign()
}

// fixedPrimacy is a Primacy that is never deposed.
type fixedPrimacy struct{ epoch uint64 }

func (p fixedPrimacy) Epoch() uint64            { return p.epoch }
func (p fixedPrimacy) Check() error             { return nil }
func (p fixedPrimacy) Do(op func() error) error { return op() }
func (p fixedPrimacy) Deposed() <-chan struct{} { return nil }
func (p fixedPrimacy) Resign()                  {}

// appendRecord appends record seq to segment n (creating it), as a
// primary's log writer would.
func appendRecord(t *testing.T, fsys vfs.FS, in *layout.Instance, n uint64, seq int64) {
	t.Helper()
	path := in.SegmentPath(n)
	var b []byte
	if _, err := fsys.Stat(path); err != nil {
		b = logfmt.AppendSegmentHeader(nil, uint32(n))
		f, err := fsys.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	rec := testRecord(seq)
	rec.Flags |= logfmt.FlagWriteStart
	b, err := logfmt.AppendRecord(b, rec)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fsys.OpenAppend(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestPromotionSealsTheLog: a promotion records its epoch and seals the
// segment its predecessor wrote at the end recovery read to; a record a
// deposed primary appends afterwards is read neither by the tools nor by
// the next recovery, and a seal, once set, stays.
func TestPromotionSealsTheLog(t *testing.T) {
	mem := vfs.NewMem()
	if err := runRawOpts(t, mem, newRawApp(25), Options{SegmentSize: 300}); err != nil {
		t.Fatal(err)
	}
	s, _ := summarize(t, mem)
	last := s.seqs[len(s.seqs)-1]
	rec, err := recoverInstance(mem, testDir)
	if err != nil {
		t.Fatal(err)
	}
	in := &layout.Instance{FS: mem, Dir: testDir, Manifest: rec.manifest}
	tail := rec.newSegment
	// The old primary's last record, logged before the takeover.
	appendRecord(t, mem, in, tail, last+1)

	c := &Coordinator{opts: Options{FS: mem, Dir: testDir, Now: time.Now}, primacy: fixedPrimacy{epoch: 2}}
	if rec, err = recoverInstance(mem, testDir); err != nil {
		t.Fatal(err)
	}
	if err := c.sealRecovered(rec); err != nil {
		t.Fatal(err)
	}
	st, _ := mem.Stat(in.SegmentPath(tail))
	m, _ := layout.ReadManifest(mem, testDir)
	if m.Epoch != 2 || len(m.Seals) != 1 || m.Seals[tail] != st.Size() {
		t.Fatalf("MANIFEST after the promotion: epoch %d, seals %v; want 2 and log-%d sealed at %d", m.Epoch, m.Seals, tail, st.Size())
	}
	// The deposed primary wakes up and appends one more whole record.
	appendRecord(t, mem, in, tail, last+2)
	s, err = summarize(t, mem)
	if err != nil {
		t.Fatalf("reading a log with a record after a seal: %v", err)
	}
	if got := s.seqs[len(s.seqs)-1]; got != last+1 || s.incs != 26 {
		t.Fatalf("tools read up to record %d with %d Incs; want the seal's %d and 26", got, s.incs, last+1)
	}
	if rec, err = recoverInstance(mem, testDir); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.records); n == 0 || rec.records[n-1].Seq != last+1 || rec.tailSeg != tail || rec.tailEnd != st.Size() {
		t.Fatalf("recovery read to %d/%d, want log-%d up to the seal %d and record %d last", rec.tailSeg, rec.tailEnd, tail, st.Size(), last+1)
	}
	// The next promotion keeps the seal.
	c.primacy = fixedPrimacy{epoch: 3}
	if err := c.sealRecovered(rec); err != nil {
		t.Fatal(err)
	}
	m, _ = layout.ReadManifest(mem, testDir)
	if m.Epoch != 3 || m.Seals[tail] != st.Size() {
		t.Fatalf("after a second promotion: epoch %d, seals %v", m.Epoch, m.Seals)
	}
}
