package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/gofrs/flock"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// Hot standbys and the checkpointer.
//
// A standby does not wait for the election with its app idle: it recovers
// its app from the newest checkpoint at once and then keeps feeding it the
// records the primary logs, as they are committed (the app's output is not
// sent, as in any recovery; impulses are refused). When it is elected it
// reads what is left up to the end of the log, seals it, and the app gets
// BecomingPrimary: a takeover replays only the last few milliseconds of
// the log, however long the log is. A checkpointer follows the same way but
// is never elected; at each new segment it asks its app for a checkpoint,
// so that the primary never pauses for one.
//
// What a follower may feed. A record complete in a segment is not yet part
// of the instance's history: the primary may not have synced it, and a
// deposed primary (stalled past its lease, then woken) appends records
// after the seal its successor set, which no reader ever counts. A follower
// that fed such a record to its app would hold a state no history
// explains. So a follower feeds only records that are committed: the
// primary publishes, in COMMITTED, the newest record it logged, synced and
// confirmed to be still primary after the sync (the fence check the log
// writer does before it reports records durable). A record so confirmed was
// written before any successor raised the epoch, so the successor, which
// reads the log only after raising it, sees it and seals after it: no seal
// ever cuts a committed record. A follower reads COMMITTED first and the
// MANIFEST after it (re-read when the committed epoch is newer than the
// MANIFEST it holds), so it knows every seal that precedes what it feeds.
// Should a seal ever lie below what a follower fed (it cannot, by the
// above, but a damaged or hand-edited directory could do it), the follower
// stops its app and recovers it from a checkpoint again (errFollowAgain).
//
// A promoted standby feeds, beyond COMMITTED, every complete record up to
// the end of the log: those the dead primary wrote but did not confirm.
// They become history by its choice: it syncs the segment, then seals it
// after them, before anything else. (Nothing in them was acknowledged; the
// senders resend, and the records' duplicates are dropped.)
//
// Following polls COMMITTED (a 24-byte pread) every FollowPoll rather than
// watching the files with inotify. What costs a standby CPU is the wakeups
// that find new records (each reads them, feeds the app, takes its
// output), not the looking: measured under a client's back-to-back calls
// (about 1,100 records/s), a standby's coordinator used 15% of a core
// polling every 2 ms and 5% every 10 ms (the primary's: 33%). A watch on
// COMMITTED would wake it at every group commit, more often than either
// (and segment rolls and deletions need watches on the directory too).
// What a standby lags behind by is only what it reads at promotion: 10 ms
// of log, a fraction of a millisecond to feed. See BENCHMARKS.md.

// CommittedFile is written by a replicated primary: 24 bytes, epoch and
// the newest committed record's sequence number (little endian), xxhash64
// of the 16 bytes before. pwritten, never synced: it is a hint for
// followers about records that are durable anyway.
const CommittedFile = "COMMITTED"

// CheckpointerLockFile is held (flock) by the instance's checkpointer for
// its whole life. While it is held, the primary leaves checkpoints to it.
const CheckpointerLockFile = "CHECKPOINTER.lock"

// AcksFile is written by a replicated primary: what each receiver has
// acknowledged of its output, for followers to trim their output buffers
// (they get no acknowledgements of their own). Length (4 bytes), the
// entries (name length 2, name, seq 8), xxhash64 of all before.
const AcksFile = "ACKS"

// FollowPoll is how often a follower looks for newly committed records.
const FollowPoll = 10 * time.Millisecond

// followBatch bounds the records one follow step feeds, so that a
// follower catching up on a long log stays responsive to its app.
const followBatch = 4096

// checkpointerProbe is how often a replicated primary looks whether a
// checkpointer is alive, and publishes its acknowledgements.
const checkpointerProbe = 100 * time.Millisecond

// maxCheckpointLag is how many segments a live checkpointer may fall
// behind before the primary checkpoints itself anyway: a checkpointer that
// cannot keep up must not let the log grow without bound.
const maxCheckpointLag = 4

var (
	// errServeAgain ends a standby's conversation that was elected
	// before its app got anything: serve it again as the primary.
	errServeAgain = errors.New("elected before the app got anything")
	// errFollowAgain ends a follower's conversation that cannot go on
	// following (it fell behind retention, the log was changed under
	// it): its app is recovered from the newest checkpoint again.
	errFollowAgain = errors.New("follower: starting over from the newest checkpoint")
)

// replicaState is a Coordinator's replica machinery.
type replicaState struct {
	cancel    func() // ends Run (a deposed primary)
	peersStop func()
	elected   chan electedResult
	pending   *AppConn // an app accepted as the election was won
	committed *os.File // COMMITTED, open while primary
	acks      *os.File // ACKS, open while primary
	ctx       context.Context
}

type electedResult struct {
	p   Primacy
	err error
}

func (c *Coordinator) role(r string, epoch uint64) {
	if c.opts.OnRole != nil {
		c.opts.OnRole(r, epoch)
	}
}

// startCampaign makes this replica a standby and campaigns in the
// background; the result arrives on c.rs.elected.
func (c *Coordinator) startCampaign(ctx context.Context) {
	c.rs.ctx = ctx
	c.rs.elected = make(chan electedResult, 1)
	c.role("standby", 0)
	c.log.Info(fmt.Sprintf("replica %d: standby", c.opts.Replica))
	go func() {
		p, err := c.opts.Election.Campaign(ctx)
		c.rs.elected <- electedResult{p, err}
	}()
}

// electedOr returns the primacy of an election result, or the error to
// stop with (nil when ctx ended).
func (c *Coordinator) electedOr(e electedResult) (Primacy, error) {
	if e.err != nil {
		if c.rs.ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %w", ErrFatal, e.err)
	}
	return e.p, nil
}

// acceptApp waits for the app, and while a standby also for the election:
// p is set when it was won (conn may be set too: then it is kept for the
// next call).
func (c *Coordinator) acceptApp(ctx context.Context) (conn AppConn, p Primacy, err error) {
	if c.rs.pending != nil {
		conn, c.rs.pending = *c.rs.pending, nil
		return conn, nil, nil
	}
	wrap := func(err error) error {
		if err != nil {
			return fmt.Errorf("%w: accept the app: %w", ErrFatal, err)
		}
		return nil
	}
	if c.rs.elected == nil || c.primacy != nil {
		conn, err := c.opts.Listener.Accept(ctx)
		return conn, nil, wrap(err)
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	type accepted struct {
		conn AppConn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		conn, err := c.opts.Listener.Accept(actx)
		ch <- accepted{conn, err}
	}()
	select {
	case a := <-ch:
		return a.conn, nil, wrap(a.err)
	case e := <-c.rs.elected:
		cancel()
		if a := <-ch; a.err == nil {
			c.rs.pending = &a.conn
		}
		p, err := c.electedOr(e)
		if p == nil && err == nil {
			err = ctx.Err()
		}
		return AppConn{}, p, err
	}
}

// promote makes this replica the primary: it writes under p from now on.
// A deposed primacy ends Run.
func (c *Coordinator) promote(p Primacy) error {
	c.primacy = p
	c.log.Info(fmt.Sprintf("replica %d: standby → primary (epoch %d)", c.opts.Replica, p.Epoch()))
	c.role("primary", p.Epoch())
	go func() {
		select {
		case <-p.Deposed():
			c.rs.cancel()
		case <-c.rs.ctx.Done():
		}
	}()
	var err error
	if c.rs.committed, err = os.OpenFile(filepath.Join(c.opts.Dir, CommittedFile), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("%w: replica %d: open %s: %w", ErrFatal, c.opts.Replica, CommittedFile, err)
	}
	if c.rs.acks, err = os.OpenFile(filepath.Join(c.opts.Dir, AcksFile), os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		return fmt.Errorf("%w: replica %d: open %s: %w", ErrFatal, c.opts.Replica, AcksFile, err)
	}
	return c.startPeers()
}

// resign gives up the primacy, if held.
func (c *Coordinator) resign() {
	if c.primacy != nil {
		c.primacy.Resign()
	}
	for _, f := range []*os.File{c.rs.committed, c.rs.acks} {
		if f != nil {
			f.Close()
		}
	}
}

// publishCommitted tells followers that every record up to seq is
// committed (see the comment at the top).
func (c *Coordinator) publishCommitted(seq int64) {
	if c.rs.committed == nil || c.primacy == nil {
		return
	}
	_, _ = c.rs.committed.WriteAt(encodeCommitted(c.primacy.Epoch(), seq), 0)
}

// encodeCommitted is COMMITTED's content.
func encodeCommitted(epoch uint64, seq int64) []byte {
	b := make([]byte, 0, 24)
	b = binary.LittleEndian.AppendUint64(b, epoch)
	b = binary.LittleEndian.AppendUint64(b, uint64(seq))
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
}

// readCommitted returns what COMMITTED says; ok is false if there is
// nothing valid (none yet, or caught mid-write).
func readCommitted(f *os.File) (epoch uint64, seq int64, ok bool) {
	var b [24]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return 0, 0, false
	}
	if binary.LittleEndian.Uint64(b[16:]) != xxhash.Sum64(b[:16]) {
		return 0, 0, false
	}
	return binary.LittleEndian.Uint64(b[0:]), int64(binary.LittleEndian.Uint64(b[8:])), true
}

// publishAcks writes ACKS from the primary's output streams.
func (c *Coordinator) publishAcks(acks map[string]int64) {
	if c.rs.acks == nil || len(acks) == 0 {
		return
	}
	b := make([]byte, 4, 64)
	for _, p := range sortedKeys(acks) {
		b = binary.LittleEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
		b = binary.LittleEndian.AppendUint64(b, uint64(acks[p]))
	}
	binary.LittleEndian.PutUint32(b, uint32(len(b)-4))
	b = binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
	_, _ = c.rs.acks.WriteAt(b, 0)
}

// readAcks returns what ACKS in dir says (nil if nothing valid).
func readAcks(dir string) map[string]int64 {
	b, err := os.ReadFile(filepath.Join(dir, AcksFile))
	if err != nil || len(b) < 12 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	if 4+n+8 > len(b) || binary.LittleEndian.Uint64(b[4+n:]) != xxhash.Sum64(b[:4+n]) {
		return nil
	}
	out := map[string]int64{}
	for p := b[4 : 4+n]; len(p) >= 2; {
		l := int(binary.LittleEndian.Uint16(p))
		if len(p) < 2+l+8 {
			return nil
		}
		out[string(p[2:2+l])] = int64(binary.LittleEndian.Uint64(p[2+l:]))
		p = p[2+l+8:]
	}
	return out
}

// AckedOutputs returns, per receiver, the newest sequence number it has
// acknowledged of this instance's output.
func (c *Core) AckedOutputs() map[string]int64 {
	out := map[string]int64{}
	for p, s := range c.outs {
		if p != c.cfg.Name && s.ackedSeq > 0 {
			out[p] = s.ackedSeq
		}
	}
	return out
}

// lockCheckpointer takes CHECKPOINTER.lock, waiting while another
// checkpointer holds it; nil release when ctx ended first.
func (c *Coordinator) lockCheckpointer(ctx context.Context) (release func(), err error) {
	c.rs.ctx = ctx
	if err := os.MkdirAll(c.opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFatal, err)
	}
	l := flock.New(filepath.Join(c.opts.Dir, CheckpointerLockFile))
	told := false
	for {
		ok, err := l.TryLock()
		if err != nil {
			return nil, fmt.Errorf("%w: replica %d: lock %s: %w", ErrFatal, c.opts.Replica, l.Path(), err)
		}
		if ok {
			break
		}
		if !told {
			c.log.Info(fmt.Sprintf("replica %d: waiting: another replica is the checkpointer (it holds %s)", c.opts.Replica, CheckpointerLockFile))
			c.role("waiting checkpointer", 0)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(DefaultLockPoll):
		}
	}
	c.role("checkpointer", 0)
	c.log.Info(fmt.Sprintf("replica %d: checkpointer", c.opts.Replica))
	return func() { _ = l.Unlock() }, nil
}

// checkpointerAlive reports whether a checkpointer holds its lock in dir.
func checkpointerAlive(dir string) bool {
	l := flock.New(filepath.Join(dir, CheckpointerLockFile))
	ok, err := l.TryLock()
	if err != nil {
		return false
	}
	if ok {
		_ = l.Unlock()
		return false
	}
	return true
}

// logFollower reads an instance's log as a follower: from a checkpoint
// on, record after record, across segment rolls, never past a seal.
type logFollower struct {
	in *layout.Instance
	// seg and off are where the next record starts; off 0: at the start
	// of seg, or of the first segment after it.
	seg  uint64
	off  int64
	last int64 // sequence number of the last record fed
	// lastSeg is the segment of the last record fed (0: none yet).
	lastSeg uint64
	// endSeg, endOff: the end of the log, as the last read to its end found.
	endSeg uint64
	endOff int64
	commit *os.File
	// cur is segment seg, open, for the fast path of read; curHdr its
	// header.
	cur    vfs.File
	curSeg uint64
	curHdr logfmt.SegmentHeader
}

func newLogFollower(fsys vfs.FS, dir string, m *logfmt.Manifest, ck *logfmt.Checkpoint) *logFollower {
	return &logFollower{in: &layout.Instance{FS: fsys, Dir: dir, Manifest: m}, seg: ck.Number, last: ck.NextSeq - 1}
}

// refresh re-reads the MANIFEST (its seals, its checkpoint).
func (f *logFollower) refresh() error {
	m, err := layout.ReadManifest(f.in.FS, f.in.Dir)
	if err != nil {
		return fmt.Errorf("%w: %w", errFollowAgain, err)
	}
	if seal, ok := m.Seal(f.seg); ok && f.off > seal {
		return fmt.Errorf("%w: %s is sealed at %d, but this replica's app was fed records up to offset %d", errFollowAgain, f.in.SegmentPath(f.seg), seal, f.off)
	}
	f.in.Manifest = m
	return nil
}

// committedLimit returns the newest committed record (see the top), after
// re-reading the MANIFEST if it is of an older epoch than the record's
// primary; -1 when nothing is known to be committed beyond what was fed.
func (f *logFollower) committedLimit() (int64, error) {
	if f.commit == nil {
		cf, err := os.Open(filepath.Join(f.in.Dir, CommittedFile))
		if err != nil {
			return f.last, nil
		}
		f.commit = cf
	}
	epoch, seq, ok := readCommitted(f.commit)
	if !ok || seq <= f.last {
		return f.last, nil
	}
	if f.in.Manifest.Epoch < epoch {
		if err := f.refresh(); err != nil {
			return 0, err
		}
		if f.in.Manifest.Epoch < epoch {
			return f.last, nil // its seal is not durable yet
		}
	}
	return seq, nil
}

// read feeds each record after the last one fed, up to limit (< 0: to the
// end of the log), at most max of them; eof says it reached the end.
func (f *logFollower) read(limit int64, max int, each func(r *logfmt.Record, seg uint64) error) (n int, eof bool, err error) {
	if limit >= 0 && f.off > 0 {
		// The fast path, every poll under load: the records appended to
		// the open segment since the last read, without listing the
		// directory or opening anything. Whatever else (a roll, a seal,
		// the end of the log at promotion) takes the LogReader below.
		if n, err = f.readCurrent(limit, max, each); err != nil || n > 0 {
			return n, false, err
		}
	}
	var lr *layout.LogReader
	if f.off == 0 {
		lr, err = f.in.NewLogReader(f.seg)
	} else {
		lr, err = f.in.NewLogReaderAt(f.seg, f.off, f.last)
	}
	if err != nil {
		return 0, false, fmt.Errorf("%w: %w", errFollowAgain, err)
	}
	defer lr.Close()
	for n < max {
		r, err := lr.Next()
		if err == io.EOF {
			if f.endSeg, f.endOff = lr.End(); f.endSeg == 0 && f.lastSeg != 0 {
				f.endSeg, f.endOff = f.seg, f.off
			}
			return n, true, nil
		}
		if err != nil {
			return n, false, fmt.Errorf("%w: %w", errFollowAgain, err)
		}
		if r.Seq != f.last+1 {
			seg, _ := lr.Position()
			return n, false, fmt.Errorf("%w: %s holds record %d after record %d (the log changed under this replica, or it fell behind retention)", errFollowAgain, f.in.SegmentPath(seg), r.Seq, f.last)
		}
		if limit >= 0 && r.Seq > limit {
			return n, false, nil
		}
		seg, off := lr.Position()
		c := *r
		c.Sources = append([]logfmt.Source(nil), r.Sources...)
		c.Messages = append([]byte(nil), r.Messages...)
		if err := each(&c, seg); err != nil {
			return n, false, err
		}
		f.last, f.seg, f.off, f.lastSeg = r.Seq, seg, off+int64(r.EncodedSize()), seg
		n++
	}
	return n, false, nil
}

// readCurrent feeds the complete records after off in segment seg, up to
// limit, short of the seal if there is one.
func (f *logFollower) readCurrent(limit int64, max int, each func(r *logfmt.Record, seg uint64) error) (int, error) {
	if f.cur == nil || f.curSeg != f.seg {
		f.closeCurrent()
		cur, err := f.in.FS.Open(f.in.SegmentPath(f.seg))
		if err != nil {
			return 0, nil // gone: the LogReader says what happened
		}
		var hdr [logfmt.SegmentHeaderSize]byte
		h, err := logfmt.SegmentHeader{}, error(nil)
		if _, err = cur.ReadAt(hdr[:], 0); err == nil {
			h, err = logfmt.ParseSegmentHeader(hdr[:])
		}
		if err != nil {
			cur.Close()
			return 0, nil
		}
		f.cur, f.curSeg, f.curHdr = cur, f.seg, h
	}
	st, err := f.cur.Stat()
	if err != nil {
		return 0, nil
	}
	size := st.Size()
	if seal, ok := f.in.Manifest.Seal(f.seg); ok {
		size = min(size, seal)
	}
	if size <= f.off {
		return 0, nil
	}
	sr := logfmt.ResumeSegmentReader(io.NewSectionReader(f.cur, f.off, size-f.off), f.curHdr, f.off, f.last)
	sr.SetLive(true) // the primary writes it
	n := 0
	for n < max {
		start := sr.Offset()
		r, err := sr.Next()
		if err != nil {
			// The end of what is complete (or a record being written):
			// later polls, or the LogReader, go on from here.
			return n, nil
		}
		if r.Seq != f.last+1 || limit >= 0 && r.Seq > limit {
			return n, nil
		}
		c := *r
		c.Sources = append([]logfmt.Source(nil), r.Sources...)
		c.Messages = append([]byte(nil), r.Messages...)
		if err := each(&c, f.seg); err != nil {
			return n, err
		}
		f.last, f.off, f.lastSeg = r.Seq, start+int64(r.EncodedSize()), f.seg
		n++
	}
	return n, nil
}

func (f *logFollower) closeCurrent() {
	if f.cur != nil {
		f.cur.Close()
		f.cur = nil
	}
}

func (f *logFollower) close() {
	f.closeCurrent()
	if f.commit != nil {
		f.commit.Close()
	}
}

// followStart is what a follower starts from: the newest valid checkpoint,
// read without changing anything (a live primary writes the log). A
// checkpoint retention deleted between the MANIFEST's read and the
// checkpoint's (a newer one was named meanwhile) is looked for again in
// the newer MANIFEST.
func followStart(fsys vfs.FS, dir string) (m *logfmt.Manifest, ck *logfmt.Checkpoint, notes []string, err error) {
	for {
		m, ck, notes, err = followStartOnce(fsys, dir)
		if err == nil || m == nil {
			return m, ck, notes, err
		}
		now, merr := layout.ReadManifest(fsys, dir)
		if merr != nil || now.Checkpoint == m.Checkpoint && now.FirstSegment == m.FirstSegment {
			return nil, nil, notes, err
		}
	}
}

func followStartOnce(fsys vfs.FS, dir string) (m *logfmt.Manifest, ck *logfmt.Checkpoint, notes []string, err error) {
	m, err = layout.ReadManifest(fsys, dir)
	if errors.Is(err, layout.ErrNoInstance) {
		return nil, nil, nil, nil
	}
	if err != nil {
		return nil, nil, nil, err
	}
	if m.Checkpoint == 0 {
		return nil, nil, nil, nil
	}
	in := &layout.Instance{FS: fsys, Dir: dir, Manifest: m}
	for k := m.Checkpoint; k >= max(m.FirstSegment, 1); k-- {
		ck, err := in.ReadCheckpoint(k)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				notes = append(notes, fmt.Sprintf("skipped checkpoint %d: %v", k, err))
			}
			continue
		}
		return m, ck, notes, nil
	}
	return m, nil, notes, fmt.Errorf("follow %s: no valid checkpoint among %d..%d: %w", dir, max(m.FirstSegment, 1), m.Checkpoint, ErrDamagedLog)
}

// followState is a following conversation's part.
type followState struct {
	f            *logFollower
	checkpointer bool
	laterPeers   []string // links to make once primary
	acksRead     time.Time
	// version is the MANIFEST's version the follower started from: the
	// version its app runs (see checkUpgrade). takingOver: the records
	// are fed at promotion, which never holds.
	version     uint32
	takingOver  bool
	upgradeRead time.Time
}

// serveFollowing serves an app as a hot standby (until elected) or as the
// checkpointer: recovery from the newest checkpoint, then the committed
// records as they come.
func (c *Coordinator) serveFollowing(ctx context.Context, conn AppConn) (err error) {
	fsys, dir := c.opts.FS, c.opts.Dir
	tick := time.NewTicker(FollowPoll)
	defer tick.Stop()
	elected := c.rs.elected
	if c.opts.Checkpointer {
		elected = nil
	}
	var m *logfmt.Manifest
	var ck *logfmt.Checkpoint
	told := false
	for {
		var notes []string
		if m, ck, notes, err = followStart(fsys, dir); err != nil {
			return fmt.Errorf("%w: %w", ErrFatal, err)
		}
		for _, n := range notes {
			c.log.Warn("follow: " + n)
		}
		if ck != nil {
			break
		}
		// No first start yet: wait for the primary's.
		if !told && c.opts.Checkpointer {
			// A lone checkpointer would otherwise wait in silence, and
			// ambr ls lists no instance until a primary starts it.
			c.log.Info(fmt.Sprintf("replica %d: waiting for the instance's first start: a checkpointer never starts an instance; run another replica without --checkpointer", c.opts.Replica))
			told = true
		}
		select {
		case e := <-elected:
			p, err := c.electedOr(e)
			if p == nil {
				return err
			}
			if err := c.promote(p); err != nil {
				return err
			}
			return errServeAgain
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	v := &conversation{c: c, events: make(chan event, 1024), done: make(chan struct{}),
		links: map[string]*outLink{}, linkGen: map[string]int64{}, inlinks: map[string]*inLink{}}
	v.fw = &followState{f: newLogFollower(fsys, dir, m, ck), checkpointer: c.opts.Checkpointer, version: m.Version}
	defer v.fw.f.close()
	v.manifest = m
	v.core = NewCore(CoreConfig{SenderGates: true, Name: c.opts.Name, SegmentSize: c.opts.SegmentSize, Now: c.opts.Now, Nondeterminism: c.opts.Nondeterminism, CommitterID: m.CommitterID})
	segs, _ := layout.ListSegments(fsys, filepath.Join(dir, layout.VersionDir(0)))
	v.core.StartFollowing(ck, max(ck.Number, lastOf(segs))+1)
	v.stateSize.Store(int64(len(ck.State)))
	c.log.Info("following the primary's log", "checkpoint", ck.Number)
	v.flow = newFlow(c.opts.AppBudget)
	v.sender = newAppSender(conn.Send, v.flow, func(err error) { v.post(event{appErr: err}) })
	v.appPid = conn.Pid
	go v.readApp(conn.Recv)
	defer func() {
		close(v.done)
		conn.Close()
		v.sender.close()
		var werr error
		if v.writer != nil {
			werr = v.writer.Close()
		}
		v.ckptWG.Wait()
		for _, in := range v.inlinks {
			in.queue.close()
		}
		v.wg.Wait()
		if werr != nil && err != nil && !errors.Is(err, ErrFatal) {
			err = fmt.Errorf("%w: %w", ErrFatal, werr)
		}
	}()
	tickC := tick.C
	for {
		if err := v.dispatch(v.core.Ready()); err != nil {
			return err
		}
		select {
		case e := <-v.events:
			if err := v.handleBurst(e); err != nil {
				return err
			}
		case <-tickC:
			if err := v.followStep(); err != nil {
				return err
			}
		case e := <-elected:
			p, err := c.electedOr(e)
			if p == nil {
				return err
			}
			if err := v.takeOver(p); err != nil {
				return err
			}
			tickC, elected = nil, nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func lastOf(s []uint64) uint64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

// followStep feeds the records committed since the last step.
func (v *conversation) followStep() error {
	v.flow.mu.Lock()
	backlog := v.flow.toApp
	v.flow.mu.Unlock()
	if backlog > v.flow.budget {
		return nil // the app is behind: let it catch up first
	}
	f := v.fw.f
	if time.Since(v.fw.upgradeRead) > checkpointerProbe {
		// An idle instance that was upgraded: switch builds without
		// waiting for the next record.
		v.fw.upgradeRead = time.Now()
		if err := v.checkUpgrade(); err != nil && !errors.Is(err, errFollowHold) {
			return err
		}
	}
	limit, err := f.committedLimit()
	if err != nil {
		return err
	}
	if limit <= f.last {
		return nil
	}
	if time.Since(v.fw.acksRead) > checkpointerProbe {
		v.fw.acksRead = time.Now()
		for p, s := range readAcks(v.c.opts.Dir) {
			v.core.TrimOutput(p, s)
		}
	}
	_, _, err = f.read(limit, followBatch, v.feed)
	if errors.Is(err, errFollowHold) {
		return nil
	}
	return err
}

// feed hands one committed record to the app; a checkpointer first asks
// for the checkpoint that starts a new segment.
func (v *conversation) feed(r *logfmt.Record, seg uint64) error {
	f := v.fw.f
	if err := v.upgradeGate(seg); err != nil {
		return err
	}
	if v.fw.checkpointer && f.lastSeg != 0 && seg > f.lastSeg && f.in.Manifest.Checkpoint < seg {
		v.core.FollowerCheckpoint(seg) // skipped if the last one is still being written
	}
	return v.core.ReplayRecord(r)
}

// takeOver makes a following standby the primary: everything up to the end
// of the log is fed, the segment synced and sealed there, and the app gets
// BecomingPrimary.
func (v *conversation) takeOver(p Primacy) error {
	c := v.c
	if err := c.promote(p); err != nil {
		return err
	}
	f := v.fw.f
	// What cannot be followed (it fell behind retention, the log changed
	// under it) is recovered: the app restarts, and the next conversation,
	// as the primary, recovers it from the newest checkpoint (and says
	// what is wrong if that cannot be done either).
	coldRecovery := func(err error) error {
		return fmt.Errorf("take over: %w; recovering as the primary from the newest checkpoint instead", err)
	}
	if err := f.refresh(); err != nil {
		return coldRecovery(err)
	}
	if f.in.Manifest.Version != v.fw.version {
		// Upgraded since this app started following: the new build
		// recovers, as the primary, from the converted checkpoint.
		return c.buildMoved(f.in.Manifest)
	}
	// An upgrade the dead primary had under way ended with it: its
	// records are history on the old build, which runs on.
	v.fw.takingOver = true
	for {
		_, eof, err := f.read(-1, followBatch, v.feed)
		if errors.Is(err, errFollowAgain) {
			return coldRecovery(err)
		}
		if err != nil {
			return fmt.Errorf("%w: take over: %w", ErrFatal, err)
		}
		if eof {
			break
		}
	}
	fsys, dir := c.opts.FS, c.opts.Dir
	logDir := filepath.Join(dir, layout.VersionDir(0))
	m := *f.in.Manifest
	m.Epoch = p.Epoch()
	m.UpgradeVersion = m.Version
	m.Seals = make(map[uint64]int64, len(f.in.Manifest.Seals)+1)
	for n, l := range f.in.Manifest.Seals {
		if n >= m.FirstSegment {
			m.Seals[n] = l
		}
	}
	if _, sealed := m.Seals[f.endSeg]; f.endSeg != 0 && !sealed {
		// What the dead primary wrote and did not sync becomes history
		// here: durable before the seal names it.
		if err := syncFile(fsys, filepath.Join(logDir, layout.SegmentName(f.endSeg))); err != nil {
			return fmt.Errorf("%w: take over: %w", ErrFatal, err)
		}
		m.Seals[f.endSeg] = f.endOff
	}
	if app := c.app(); app.SHA256 != "" && app.SHA256 != m.App.SHA256 || app.Source != "" && m.App.Source == "" {
		m.App = app
	}
	m.Updated = c.opts.Now().UnixNano()
	if err := fenced(p, func() error {
		mergeCheckpointer(fsys, dir, &m)
		return writeManifest(fsys, dir, &m)
	}); err != nil {
		return fmt.Errorf("%w: seal the log at promotion: %w", ErrFatal, err)
	}
	v.manifest = &m
	c.publishCommitted(f.last) // what it fed is history now: other standbys may follow it
	segs, _ := layout.ListSegments(fsys, logDir)
	ckpts, _ := layout.ListCheckpoints(fsys, logDir)
	if err := v.core.Promote(max(lastOf(segs), lastOf(ckpts)) + 1); err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	c.log.Info("took over without recovery", "replayed to", f.last)
	v.writer = NewFencedLogWriter(fsys, logDir, c.fence(), v.onDurable, func(err error) { v.post(event{err: err}) })
	later := v.fw.laterPeers
	v.fw = nil
	v.wg.Add(1)
	go v.acceptPeers()
	for _, p := range later {
		v.startLink(p)
	}
	v.startPrimaryProbe()
	return nil
}

// startPrimaryProbe runs, for a replicated primary's conversation, the
// look at the checkpointer and the publication of its acknowledgements.
func (v *conversation) startPrimaryProbe() {
	if v.c.primacy == nil {
		return
	}
	go func() {
		t := time.NewTicker(checkpointerProbe)
		defer t.Stop()
		for {
			select {
			case <-v.done:
				return
			case <-t.C:
			}
			alive := checkpointerAlive(v.c.opts.Dir)
			var ck uint64
			if alive {
				if m, err := layout.ReadManifest(v.c.opts.FS, v.c.opts.Dir); err == nil {
					ck = m.Checkpoint
				}
			}
			v.post(event{probe: &probeResult{checkpointer: alive, checkpoint: ck}})
		}
	}()
}

// probeResult is what the primary's probe saw.
type probeResult struct {
	checkpointer bool
	checkpoint   uint64 // the MANIFEST's, with a checkpointer
}

// handleProbe leaves checkpoints to a live checkpointer that keeps up, and
// checkpoints at once when it stopped doing so.
func (v *conversation) handleProbe(r *probeResult) {
	external := r.checkpointer && v.core.segment <= r.checkpoint+maxCheckpointLag
	was := v.core.externalCheckpoints
	v.core.SetExternalCheckpoints(external)
	if was && !external {
		v.c.log.Info("the checkpointer is gone or behind; the primary checkpoints again")
		v.core.RequestCheckpoint()
	}
	v.c.publishAcks(v.core.AckedOutputs())
}

// writeFollowerCheckpoint writes a checkpointer's checkpoint: to a
// temporary file, then, under MANIFEST.lock, renamed into place unless the
// primary made that checkpoint itself, and named by the MANIFEST (read
// and written under the lock, so nothing a primary wrote is lost), with
// retention; files retention drops are removed after.
func (v *conversation) writeFollowerCheckpoint(ck *logfmt.Checkpoint) {
	v.ckptWG.Add(1)
	go func() {
		defer v.ckptWG.Done()
		fsys, dir := v.c.opts.FS, v.c.opts.Dir
		logDir := filepath.Join(dir, layout.VersionDir(0))
		name := layout.CheckpointName(ck.Number)
		tmp := filepath.Join(logDir, name+".tmp")
		fail := func(err error) { v.post(event{err: fmt.Errorf("checkpointer: checkpoint %d: %w", ck.Number, err)}) }
		f, err := fsys.Create(tmp)
		if err != nil {
			fail(err)
			return
		}
		if err := logfmt.WriteCheckpoint(f, ck); err != nil {
			f.Close()
			fail(err)
			return
		}
		if err := f.Sync(); err != nil {
			f.Close()
			fail(err)
			return
		}
		if err := f.Close(); err != nil {
			fail(err)
			return
		}
		locked := func(op func() error) error {
			mlock := flock.New(filepath.Join(dir, ManifestLockFile))
			if err := mlock.Lock(); err != nil {
				return err
			}
			defer mlock.Unlock()
			return op()
		}
		named := false
		err = locked(func() error {
			if _, err := fsys.Stat(filepath.Join(logDir, name)); err == nil {
				return fsys.Remove(tmp) // the primary took it
			}
			if err := fsys.Rename(tmp, filepath.Join(logDir, name)); err != nil {
				return err
			}
			if err := fsys.SyncDir(logDir); err != nil {
				return err
			}
			m, err := layout.ReadManifest(fsys, dir)
			if err != nil {
				return err
			}
			if m.Checkpoint >= ck.Number {
				return nil
			}
			n := *m
			n.Checkpoint = ck.Number
			n.Updated = v.c.opts.Now().UnixNano()
			named = true
			return writeManifest(fsys, dir, &n)
		})
		if err != nil {
			fail(err)
			return
		}
		// Retention verifies the checkpoints it keeps, which reads them
		// whole: not under MANIFEST.lock, which the primary's segment
		// rolls and the election wait for.
		var drop []string
		if named && v.c.opts.Retain > 0 {
			var first uint64
			first, drop = retention(fsys, logDir, ck.Number, v.c.opts.Retain)
			err = locked(func() error {
				m, err := layout.ReadManifest(fsys, dir)
				if err != nil || m.FirstSegment >= first {
					return err
				}
				n := *m
				n.FirstSegment = first
				n.Updated = v.c.opts.Now().UnixNano()
				return writeManifest(fsys, dir, &n)
			})
			if err != nil {
				fail(err)
				return
			}
		}
		for _, name := range drop {
			if err := fsys.Remove(filepath.Join(logDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
				v.c.log.Warn("retention: could not remove an old file", "file", name, "error", err)
			}
		}
		v.c.log.Info("checkpointer: checkpoint written", "checkpoint", ck.Number)
		v.post(event{ckptDone: ck.Number})
	}()
}

// recoverUnderCheckpointer is recoverInstance for a replica becoming
// primary: a checkpointer may still be following (catching up on what the
// dead primary committed) and, with retention, delete the checkpoint and
// segments the recovery reads as it names a newer checkpoint. A recovery
// that fails while the MANIFEST's checkpoint or first segment moved is
// tried again from the newer one, rather than stopping the replica with a
// damaged-log error for files retention removed.
func recoverUnderCheckpointer(fsys vfs.FS, dir string) (*recovered, error) {
	return recoverRetrying(fsys, dir, recoverInstance)
}

func recoverRetrying(fsys vfs.FS, dir string, recover func(vfs.FS, string) (*recovered, error)) (*recovered, error) {
	for {
		before, err := layout.ReadManifest(fsys, dir)
		if err != nil {
			return recover(fsys, dir)
		}
		rec, err := recover(fsys, dir)
		if err == nil {
			return rec, nil
		}
		after, merr := layout.ReadManifest(fsys, dir)
		if merr != nil || after.Checkpoint == before.Checkpoint && after.FirstSegment == before.FirstSegment {
			return nil, err
		}
	}
}

// mergeCheckpointer takes into m, which a primary is about to write under
// MANIFEST.lock, what the checkpointer may have written since the primary
// read the MANIFEST: a newer checkpoint and the first segment retention
// kept. (Without it a primary could name a checkpoint the checkpointer's
// retention has deleted.)
func mergeCheckpointer(fsys vfs.FS, dir string, m *logfmt.Manifest) {
	disk, err := layout.ReadManifest(fsys, dir)
	if err != nil {
		return
	}
	m.Checkpoint = max(m.Checkpoint, disk.Checkpoint)
	m.FirstSegment = max(m.FirstSegment, disk.FirstSegment)
	seals := make(map[uint64]int64, len(m.Seals)) // m's map may be shared
	for n, l := range m.Seals {
		if n >= m.FirstSegment {
			seals[n] = l
		}
	}
	m.Seals = seals
}

// syncFile makes path's data durable.
func syncFile(fsys vfs.FS, path string) error {
	f, err := fsys.OpenAppend(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
