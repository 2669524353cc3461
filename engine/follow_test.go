package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// followFixture is an instance directory a test writes as its primary
// would, and a follower of it.
type followFixture struct {
	t           *testing.T
	dir, logDir string
}

func newFollowFixture(t *testing.T) *followFixture {
	dir := filepath.Join(t.TempDir(), "x")
	f := &followFixture{t: t, dir: dir, logDir: filepath.Join(dir, layout.VersionDir(0))}
	if err := os.MkdirAll(f.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeCheckpointFile(vfs.Default(), f.logDir, &logfmt.Checkpoint{Number: 1, NextSeq: 1, State: []byte("s")}, nil); err != nil {
		t.Fatal(err)
	}
	f.manifest(1, nil)
	return f
}

func (f *followFixture) manifest(epoch uint64, seals map[uint64]int64) *logfmt.Manifest {
	m := &logfmt.Manifest{Instance: "x", Checkpoint: 1, FirstSegment: 1, Epoch: epoch, Seals: seals}
	if err := writeManifest(vfs.Default(), f.dir, m); err != nil {
		f.t.Fatal(err)
	}
	return m
}

// write logs records seqs to segment seg, synced.
func (f *followFixture) write(seg uint64, msg string, seqs ...int64) {
	f.t.Helper()
	w, p := newWriterProbe(f.t, f.logDir, nil)
	if seg > 1 {
		// The writer rolls (creates the segment) when told to.
		w.seg = seg - 1
	}
	if _, err := os.Stat(filepath.Join(f.logDir, layout.SegmentName(seg))); err == nil {
		af, err := vfs.Default().OpenAppend(filepath.Join(f.logDir, layout.SegmentName(seg)))
		if err != nil {
			f.t.Fatal(err)
		}
		st, err := af.Stat()
		if err != nil {
			f.t.Fatal(err)
		}
		// An appending file takes no preallocation (its writes would
		// land past the zeros): alloc far ahead, so the writer adds none.
		w.f, w.seg = af, seg
		w.end, w.alloc = st.Size(), 1<<62
	}
	for _, s := range seqs {
		r := testRecord(s)
		r.Messages = logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: []byte(msg)})
		w.Submit([]LogWrite{{Segment: seg, Record: r}})
		if _, err := p.wait(s); err != nil {
			f.t.Fatal(err)
		}
	}
	w.Close()
}

func (f *followFixture) commit(epoch uint64, seq int64) {
	if err := os.WriteFile(filepath.Join(f.dir, CommittedFile), encodeCommitted(epoch, seq), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *followFixture) follower() *logFollower {
	m, ck, _, err := followStart(vfs.Default(), f.dir)
	if err != nil || ck == nil {
		f.t.Fatalf("followStart: %v, checkpoint %v", err, ck)
	}
	lf := newLogFollower(vfs.Default(), f.dir, m, ck)
	f.t.Cleanup(lf.close)
	return lf
}

// step feeds what is committed; it returns the records fed and their args.
func step(t *testing.T, lf *logFollower) (seqs []int64, args []string) {
	t.Helper()
	limit, err := lf.committedLimit()
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = lf.read(limit, followBatch, func(r *logfmt.Record, seg uint64) error {
		seqs = append(seqs, r.Seq)
		m, _, err := logfmt.ParseMessage(r.Messages)
		if err != nil {
			t.Fatal(err)
		}
		rpc, err := logfmt.ParseRPC(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		args = append(args, string(rpc.Args))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs, args
}

func TestFollowerFeedsOnlyCommittedRecords(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	f.write(1, "a", 1, 2, 3, 4, 5)
	if got, _ := step(t, lf); len(got) != 0 {
		t.Fatalf("fed %v with nothing committed", got)
	}
	f.commit(1, 3) // 4 and 5 are written, not yet confirmed by the primary
	if got, _ := step(t, lf); len(got) != 3 || got[2] != 3 {
		t.Fatalf("fed %v, want 1..3", got)
	}
	// A torn record at the tail: never fed, whatever COMMITTED says.
	af, err := vfs.Default().OpenAppend(filepath.Join(f.logDir, layout.SegmentName(1)))
	if err != nil {
		t.Fatal(err)
	}
	whole, _ := logfmt.AppendRecord(nil, testRecord(6))
	if _, err := af.Write(whole[:len(whole)/2]); err != nil {
		t.Fatal(err)
	}
	af.Close()
	f.commit(1, 6)
	if got, _ := step(t, lf); len(got) != 2 || got[1] != 5 {
		t.Fatalf("fed %v, want 4, 5 (6 is torn)", got)
	}
}

func TestFollowerFollowsRollsAndSkipsADeposedPrimarysAppends(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	f.write(1, "old", 1, 2, 3)
	f.commit(1, 3)
	if got, _ := step(t, lf); len(got) != 3 {
		t.Fatalf("fed %v, want 1..3", got)
	}
	st, _ := os.Stat(filepath.Join(f.logDir, layout.SegmentName(1)))
	seal := st.Size()
	// A new primary (epoch 2) seals segment 1 after record 3 and logs 4, 5
	// in segment 2; the deposed one, not knowing, appends its own 4, 5 to
	// segment 1. The follower still holds the epoch-1 MANIFEST.
	f.manifest(2, map[uint64]int64{1: seal})
	f.write(1, "deposed", 4, 5)
	f.write(2, "new", 4, 5)
	f.commit(2, 5)
	got, args := step(t, lf)
	if len(got) != 2 || got[0] != 4 || args[0] != "new" || args[1] != "new" {
		t.Fatalf("fed %v %v, want 4, 5 of the new primary", got, args)
	}
	// COMMITTED of a newer epoch whose seal is not in the MANIFEST yet:
	// nothing is fed until it is.
	f.write(2, "new", 6)
	f.commit(3, 6)
	if got, _ := step(t, lf); len(got) != 0 {
		t.Fatalf("fed %v before the MANIFEST of epoch 3", got)
	}
	f.manifest(3, map[uint64]int64{1: seal})
	if got, _ := step(t, lf); len(got) != 1 || got[0] != 6 {
		t.Fatalf("fed %v, want 6", got)
	}
}

func TestFollowerStartsOverWhenASealCutsWhatItFed(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	f.write(1, "a", 1, 2, 3)
	f.commit(1, 3)
	step(t, lf)
	// A seal below what was fed (a damaged or hand-edited directory):
	f.manifest(2, map[uint64]int64{1: logfmt.SegmentHeaderSize})
	f.commit(2, 4)
	if _, err := lf.committedLimit(); !errors.Is(err, errFollowAgain) {
		t.Fatalf("committedLimit: %v, want errFollowAgain", err)
	}
}

func TestFollowerFallsBehindRetention(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	f.write(1, "a", 1, 2)
	f.commit(1, 2)
	step(t, lf)
	f.write(2, "a", 3)
	if err := os.Remove(filepath.Join(f.logDir, layout.SegmentName(1))); err != nil {
		t.Fatal(err)
	}
	f.commit(1, 3)
	limit, _ := lf.committedLimit()
	if _, _, err := lf.read(limit, followBatch, func(*logfmt.Record, uint64) error { return nil }); !errors.Is(err, errFollowAgain) {
		t.Fatalf("read: %v, want errFollowAgain", err)
	}
}

// TestPrimaryAndCheckpointerShareCheckpoints: a checkpoint file the
// checkpointer made is not rewritten by a primary that reaches the same
// number, and a primary's MANIFEST write under the lock takes in the
// checkpointer's newer checkpoint and retention, so it never names a
// checkpoint retention deleted.
func TestPrimaryAndCheckpointerShareCheckpoints(t *testing.T) {
	f := newFollowFixture(t)
	ck := &logfmt.Checkpoint{Number: 4, NextSeq: 9, State: []byte("checkpointer's")}
	if err := writeCheckpointFile(vfs.Default(), f.logDir, ck, nil); err != nil {
		t.Fatal(err)
	}
	fence := &switchFence{}
	mine := &logfmt.Checkpoint{Number: 4, NextSeq: 9, State: []byte("primary's")}
	if err := writeCheckpointFile(vfs.Default(), f.logDir, mine, fence); !errors.Is(err, errCheckpointExists) {
		t.Fatalf("writeCheckpointFile over the checkpointer's: %v, want errCheckpointExists", err)
	}
	got, err := layout.ReadCheckpointFile(vfs.Default(), filepath.Join(f.logDir, layout.CheckpointName(4)))
	if err != nil || string(got.State) != "checkpointer's" {
		t.Fatalf("checkpoint 4 now %v (%v)", got, err)
	}
	// The checkpointer moved the MANIFEST to checkpoint 6, first segment 5;
	// a promoted primary read it before that, at checkpoint 1.
	disk := &logfmt.Manifest{Instance: "x", Checkpoint: 6, FirstSegment: 5, Epoch: 1}
	if err := writeManifest(vfs.Default(), f.dir, disk); err != nil {
		t.Fatal(err)
	}
	stale := &logfmt.Manifest{Instance: "x", Checkpoint: 1, FirstSegment: 1, Epoch: 2, Seals: map[uint64]int64{2: 10, 7: 99}}
	mergeCheckpointer(vfs.Default(), f.dir, stale)
	if stale.Checkpoint != 6 || stale.FirstSegment != 5 || len(stale.Seals) != 1 || stale.Seals[7] != 99 || stale.Epoch != 2 {
		t.Fatalf("merged MANIFEST %+v", stale)
	}
}

// TestTakeOverBehindRetention: a standby elected while it lags behind
// retention (the checkpointer's, which runs while the standby catches up)
// cannot feed the rest of the log; it must not stop the replica for good
// (ErrFatal) but fall back to a cold recovery as the primary: an
// errFollowAgain, which restarts the app, and the next conversation
// recovers it from the newest checkpoint.
func TestTakeOverBehindRetention(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	f.write(1, "a", 1, 2)
	f.commit(1, 2)
	step(t, lf)
	f.write(2, "a", 3)
	if err := os.Remove(filepath.Join(f.logDir, layout.SegmentName(1))); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Dir: f.dir, Name: "x", Listener: NewPipeListener(), Registry: FileRegistry{Dir: t.TempDir()}, PeerAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.rs.ctx, c.rs.cancel = ctx, cancel
	defer c.stopPeers()
	defer c.resign()
	v := &conversation{c: c, fw: &followState{f: lf}}
	err = v.takeOver(fixedPrimacy{epoch: 2})
	if !errors.Is(err, errFollowAgain) || errors.Is(err, ErrFatal) {
		t.Fatalf("takeOver behind retention: %v; want an errFollowAgain (a cold recovery as the primary), not ErrFatal", err)
	}
}

// checkpointerRace is an FS on which the checkpointer, at the first
// open of file at (default segment 1), names its checkpoint 2 and
// retention (retain 1) deletes segment 1 and checkpoint 1.
type checkpointerRace struct {
	vfs.FS
	t           *testing.T
	dir, logDir string
	at          string
	done        bool
}

func (r *checkpointerRace) Open(name string) (vfs.File, error) {
	if r.at == "" {
		r.at = layout.SegmentName(1)
	}
	if !r.done && filepath.Base(name) == r.at {
		r.done = true
		if err := writeCheckpointFile(r.FS, r.logDir, &logfmt.Checkpoint{Number: 2, NextSeq: 3, State: []byte("s2")}, nil); err != nil {
			r.t.Fatal(err)
		}
		if err := writeManifest(r.FS, r.dir, &logfmt.Manifest{Instance: "x", Checkpoint: 2, FirstSegment: 2, Epoch: 1}); err != nil {
			r.t.Fatal(err)
		}
		for _, n := range []string{layout.SegmentName(1), layout.CheckpointName(1)} {
			if err := r.FS.Remove(filepath.Join(r.logDir, n)); err != nil {
				r.t.Fatal(err)
			}
		}
	}
	return r.FS.Open(name)
}

// TestRecoveryUnderCheckpointerRetention: a replica recovering as the new
// primary while the checkpointer (catching up) names a newer checkpoint
// and its retention deletes the files the recovery was reading recovers
// from the newer checkpoint, instead of stopping on a damaged log.
func TestRecoveryUnderCheckpointerRetention(t *testing.T) {
	f := newFollowFixture(t)
	f.write(1, "a", 1, 2)
	f.write(2, "b", 3, 4)
	fsys := &checkpointerRace{FS: vfs.Default(), t: t, dir: f.dir, logDir: f.logDir}
	rec, err := recoverUnderCheckpointer(fsys, f.dir)
	if err != nil {
		t.Fatalf("recovery: %v", err)
	}
	if !fsys.done {
		t.Fatal("the race did not happen")
	}
	if rec.checkpoint.Number != 2 || len(rec.records) != 2 || rec.records[0].Seq != 3 {
		t.Fatalf("recovered from checkpoint %d, %d records; want checkpoint 2 and records 3, 4", rec.checkpoint.Number, len(rec.records))
	}
	// A failure with nothing moved is the failure.
	want := errors.New("damaged")
	if _, err := recoverRetrying(vfs.Default(), f.dir, func(vfs.FS, string) (*recovered, error) { return nil, want }); err != want {
		t.Fatalf("recovery that fails with nothing moved: %v, want its error", err)
	}
}

// TestFollowStartUnderRetention: a follower starting while retention
// deletes the checkpoint the MANIFEST it read names (a newer one was named
// meanwhile) starts from the newer one instead of stopping the replica on
// a damaged log.
func TestFollowStartUnderRetention(t *testing.T) {
	f := newFollowFixture(t)
	f.write(1, "a", 1, 2)
	f.write(2, "b", 3, 4)
	fsys := &checkpointerRace{FS: vfs.Default(), t: t, dir: f.dir, logDir: f.logDir, at: layout.CheckpointName(1)}
	_, ck, _, err := followStart(fsys, f.dir)
	if err != nil || !fsys.done || ck == nil || ck.Number != 2 {
		t.Fatalf("followStart: checkpoint %+v, %v (race done: %v); want checkpoint 2", ck, err, fsys.done)
	}
}

// lockWatch is an FS that records whether MANIFEST.lock was held while a
// checkpoint file was opened for reading.
type lockWatch struct {
	vfs.FS
	dir        string
	heldReads  int
	checkReads int
}

func (l *lockWatch) Open(name string) (vfs.File, error) {
	if _, ok := layout.ParseCheckpointName(filepath.Base(name)); ok {
		l.checkReads++
		fl := flock.New(filepath.Join(l.dir, ManifestLockFile))
		if ok, err := fl.TryLock(); err == nil && ok {
			_ = fl.Unlock()
		} else {
			l.heldReads++
		}
	}
	return l.FS.Open(name)
}

// TestCheckpointerRetentionOutsideTheLock: the checkpointer names its
// checkpoint and applies retention, but verifies the checkpoints retention
// keeps (reading each whole) without holding MANIFEST.lock, which the
// primary's segment rolls and checkpoint files wait for.
func TestCheckpointerRetentionOutsideTheLock(t *testing.T) {
	f := newFollowFixture(t)
	f.write(1, "a", 1, 2)
	f.write(2, "b", 3, 4)
	f.write(3, "c", 5)
	if err := writeCheckpointFile(vfs.Default(), f.logDir, &logfmt.Checkpoint{Number: 2, NextSeq: 3, State: []byte("s2")}, nil); err != nil {
		t.Fatal(err)
	}
	fsys := &lockWatch{FS: vfs.Default(), dir: f.dir}
	v := &conversation{c: &Coordinator{opts: Options{FS: fsys, Dir: f.dir, Retain: 2, Now: time.Now}, log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		events: make(chan event, 8), done: make(chan struct{})}
	v.writeFollowerCheckpoint(&logfmt.Checkpoint{Number: 3, NextSeq: 5, State: []byte("s3")})
	v.ckptWG.Wait()
	select {
	case e := <-v.events:
		if e.ckptDone != 3 {
			t.Fatalf("event %+v, want checkpoint 3 done", e)
		}
	default:
		t.Fatal("no event")
	}
	m, err := layout.ReadManifest(vfs.Default(), f.dir)
	if err != nil || m.Checkpoint != 3 || m.FirstSegment != 2 {
		t.Fatalf("MANIFEST %+v, %v; want checkpoint 3, first segment 2", m, err)
	}
	if _, err := os.Stat(filepath.Join(f.logDir, layout.SegmentName(1))); !os.IsNotExist(err) {
		t.Fatalf("segment 1 after retention: %v, want it removed", err)
	}
	if fsys.checkReads == 0 || fsys.heldReads != 0 {
		t.Fatalf("retention read %d checkpoint files, %d of them under MANIFEST.lock; want none under it", fsys.checkReads, fsys.heldReads)
	}
}
