package timetravel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// Options configure a time-travel session.
type Options struct {
	// Dir is the instance directory. It is only read.
	Dir string
	// App is the executable to replay with; default the build the MANIFEST
	// recorded (kept under the home by its content hash).
	App string
	// FromCheckpoint, if not 0, makes every replay start at that checkpoint
	// (instead of the nearest one before the point).
	FromCheckpoint uint64
	// Stdout and Stderr receive the app's output (default: discarded).
	Stdout, Stderr io.Writer
	// Progress, if set, is called as records are replayed: done of total
	// for the current move.
	Progress func(done, total int64)
	// Env is added to the app's environment.
	Env []string
	// Index, if set, is the instance's time-travel cache: records are read
	// from indexed offsets and replays start from the nearest snapshot of
	// the app's state, taken every SnapshotEvery records (default 1024).
	Index         *Index
	SnapshotEvery int64
	// Launch starts the app (default: a child process).
	Launch LaunchFunc
}

// MaxSent bounds the messages a Cursor keeps; SentTotal counts them all.
const MaxSent = 10000

// Cursor is where a session stands: the state after record Seq.
type Cursor struct {
	// Seq is the last record the app has processed; 0 is the initial state.
	Seq int64
	// Time is when record Seq was logged (zero for the initial state).
	Time time.Time
	// State is the app's state after record Seq, as its checkpoint bytes.
	State []byte
	// From is the first record replayed to get here: Sent holds what the
	// app sent while handling records From..Seq.
	From      int64
	Sent      []Sent
	SentTotal int
	// Record is record Seq itself (nil for the initial state).
	Record *logfmt.Record
	// Segment and Offset are where record Seq lies.
	Segment uint64
	Offset  int64
	// NotReproduced, if not empty, says that the app did not send what the
	// log's output digests record, replaying up to here: the build is not
	// the one that made the history, or the history is nondeterministic.
	// The state shown is then what this build makes of the input, not
	// necessarily what the instance had.
	NotReproduced string
}

// Session replays one instance read-only, moving a cursor through its
// history. It keeps one app process positioned at the cursor, so stepping
// forward costs one record; going back starts the app again from the
// nearest checkpoint before the target.
type Session struct {
	opts  Options
	in    *layout.Instance
	exe   string
	name  string
	run   *appRun
	cur   *Cursor
	build string // sha256 of the app executable: the key of its snapshots
	// ranges are the recorded builds and the parts of the history each
	// ran (nil: one build, or --app given): a replay runs each record on
	// its own build.
	ranges []BuildRange
	// startSeg is the segment the running replay started in: records after
	// the cursor are read from there.
	startSeg uint64
	// check compares what the app sends with the log's output digests;
	// notReproduced is its first mismatch in this replay.
	check         *OutputCheck
	notReproduced string
}

// ErrNoBuild says the recorded build is gone and another must be named.
var ErrNoBuild = errors.New("no app build to replay with")

// Open opens the instance in opts.Dir for time travel.
func Open(opts Options) (*Session, error) {
	in, err := layout.Open(vfs.Default(), opts.Dir)
	if err != nil {
		return nil, err
	}
	exe := opts.App
	if exe == "" {
		exe = in.Manifest.App.Path
		if exe == "" {
			return nil, fmt.Errorf("%w: the MANIFEST of %s records no kept binary (the app ran outside ambr run); pass --app with the build to use", ErrNoBuild, opts.Dir)
		}
		if _, err := os.Stat(exe); err != nil {
			return nil, fmt.Errorf("%w: the recorded build %s (sha256 %s, from %s) is gone; pass --app with the same build, or another to compare", ErrNoBuild, exe, in.Manifest.App.SHA256, in.Manifest.App.Source)
		}
	}
	if abs, err := filepath.Abs(exe); err == nil {
		exe = abs
	}
	if opts.SnapshotEvery <= 0 {
		opts.SnapshotEvery = 1024
	}
	s := &Session{opts: opts, in: in, exe: exe, name: in.Manifest.Instance}
	if opts.App == "" {
		s.ranges = BuildRanges(in)
	}
	if opts.Index != nil {
		if s.build, err = fileSHA256(exe); err != nil {
			return nil, fmt.Errorf("timetravel: hash %s: %w", exe, err)
		}
	}
	return s, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Instance returns the instance being replayed.
func (s *Session) Instance() *layout.Instance { return s.in }

// App returns the executable the session replays with.
func (s *Session) App() string { return s.exe }

// Cursor returns where the session stands (nil before the first move).
func (s *Session) Cursor() *Cursor { return s.cur }

// Close stops the app.
func (s *Session) Close() {
	if s.run != nil {
		s.run.close()
		s.run = nil
	}
}

// Goto moves the cursor to the state after record seq (0: before record 1
// of the oldest checkpoint that allows it). Going forward continues the
// running replay; going back starts again from the nearest checkpoint.
func (s *Session) Goto(ctx context.Context, seq int64) (*Cursor, error) {
	if seq < 0 {
		return nil, fmt.Errorf("%w: record %d", ErrBadPoint, seq)
	}
	crosses := false
	if s.ranges != nil && s.cur != nil {
		// Records of another build's range are replayed on that build.
		if r := RangeFor(s.ranges, seq); r != nil && r.Exe != s.exe {
			crosses = true
		}
	}
	if s.run == nil || s.cur == nil || seq < s.cur.Seq || crosses {
		if err := s.restart(ctx, seq); err != nil {
			return nil, err
		}
	}
	return s.advance(ctx, seq)
}

// Step moves the cursor by delta records (negative: back).
func (s *Session) Step(ctx context.Context, delta int64) (*Cursor, error) {
	if s.cur == nil {
		return nil, errors.New("timetravel: step before the first goto")
	}
	return s.Goto(ctx, s.cur.Seq+delta)
}

// restart starts the app from the newest checkpoint at or before seq.
func (s *Session) restart(ctx context.Context, seq int64) error {
	s.Close()
	s.notReproduced = ""
	// A checkpoint of a later build's range holds that build's state (the
	// one an upgrade wrote holds the state after the record before the
	// range, converted): records of this range start before it.
	var limit uint64
	if r := RangeFor(s.ranges, seq); r != nil {
		for _, o := range s.ranges {
			if o.First > r.First && (limit == 0 || o.Checkpoint < limit) {
				limit = o.Checkpoint
			}
		}
	}
	ck, err := s.startCheckpoint(seq, limit)
	if err != nil {
		return err
	}
	if limit != 0 && ck.Number >= limit {
		return fmt.Errorf("%w: checkpoint %d holds the state of a later build than the one that ran record %d (the next build starts from checkpoint %d); start from an earlier checkpoint", ErrBadPoint, ck.Number, seq, limit)
	}
	if r := RangeFor(s.ranges, seq); r != nil {
		// Start in the range of the build that ran seq: from its first
		// checkpoint if the newest one before seq is older than it.
		if ck.NextSeq < r.First && r.Checkpoint > 0 && s.opts.FromCheckpoint == 0 {
			if rck, err := s.in.ReadCheckpoint(r.Checkpoint); err == nil {
				ck = rck
			}
		}
		if s.exe != r.Exe {
			s.exe, s.build = r.Exe, r.SHA256
		}
	}
	startSeq, state := ck.NextSeq-1, ck.State
	s.check = NewOutputCheck(ck, s.name)
	if s.opts.Index != nil && s.opts.FromCheckpoint == 0 {
		snap, ok, err := s.opts.Index.Snapshot(s.build, seq)
		if err != nil {
			return err
		}
		if ok && snap.Seq > startSeq {
			startSeq, state = snap.Seq, snap.State
			s.check = NewOutputCheckAt(snap.OutCount, snap.OutDigest, s.name)
		}
	}
	run, err := startApp(ctx, s.opts.Launch, s.exe, s.name, s.opts.Env, s.opts.Stdout, s.opts.Stderr)
	if err != nil {
		return err
	}
	if err := run.loadState(state); err != nil {
		run.close()
		return err
	}
	s.run = run
	s.cur = &Cursor{Seq: startSeq, State: state, From: startSeq + 1}
	s.startSeg = ck.Number
	return nil
}

// startCheckpoint picks the checkpoint a replay to seq starts from: the
// newest before seq, and before checkpoint limit if that is not 0.
func (s *Session) startCheckpoint(seq int64, limit uint64) (*logfmt.Checkpoint, error) {
	nums, err := s.in.Checkpoints()
	if err != nil {
		return nil, err
	}
	if s.opts.FromCheckpoint != 0 {
		ck, err := s.in.ReadCheckpoint(s.opts.FromCheckpoint)
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoint %d: %v (checkpoints present: %v)", ErrBadPoint, s.opts.FromCheckpoint, err, nums)
		}
		if seq < ck.NextSeq-1 {
			return nil, fmt.Errorf("%w: record %d comes before checkpoint %d, which holds the state after record %d", ErrBadPoint, seq, ck.Number, ck.NextSeq-1)
		}
		return ck, nil
	}
	var oldest *logfmt.Checkpoint
	for i := len(nums) - 1; i >= 0; i-- {
		if limit != 0 && nums[i] >= limit {
			continue
		}
		ck, err := s.in.ReadCheckpoint(nums[i])
		if err != nil {
			continue // a damaged checkpoint: an older one will do
		}
		if ck.NextSeq-1 <= seq {
			return ck, nil
		}
		oldest = ck
	}
	if oldest == nil {
		return nil, fmt.Errorf("timetravel: %s has no valid checkpoint to start a replay from", s.in.Dir)
	}
	return nil, fmt.Errorf("%w: record %d comes before the oldest checkpoint kept (%d, the state after record %d)", ErrBadPoint, seq, oldest.Number, oldest.NextSeq-1)
}

// advance feeds records after the cursor up to seq, then reads the state.
func (s *Session) advance(ctx context.Context, seq int64) (*Cursor, error) {
	from := s.cur.Seq + 1
	next := &Cursor{Seq: s.cur.Seq, From: from, State: s.cur.State, Time: s.cur.Time, Record: s.cur.Record, Segment: s.cur.Segment, Offset: s.cur.Offset}
	if seq > s.cur.Seq {
		lr, err := s.logFrom(s.cur.Seq + 1)
		if err != nil {
			return nil, err
		}
		defer lr.Close()
		total := seq - s.cur.Seq
		for next.Seq < seq {
			rec, err := lr.Next()
			if err == io.EOF {
				return nil, fmt.Errorf("%w: record %d is past the end of the log (the last record is %d)", ErrBadPoint, seq, next.Seq)
			}
			if err != nil {
				return nil, err
			}
			if rec.Seq <= s.cur.Seq {
				continue
			}
			s.check.Expect(rec)
			if err := s.run.feed(rec); err != nil {
				return nil, err
			}
			next.Seq = rec.Seq
			if rec.Seq == seq {
				c := *rec
				c.Messages = append([]byte(nil), rec.Messages...)
				c.Sources = append([]logfmt.Source(nil), rec.Sources...)
				next.Record, next.Time = &c, rec.LoggedTime()
				next.Segment, next.Offset = lr.Position()
			}
			if s.opts.Progress != nil {
				s.opts.Progress(rec.Seq-s.cur.Seq, total)
			}
			if ix := s.opts.Index; ix != nil && rec.Seq%s.opts.SnapshotEvery == 0 && rec.Seq < seq {
				state, sent, err := s.run.checkpoint(ctx)
				if err != nil {
					s.Close()
					return nil, err
				}
				next.addSent(sent)
				s.checkOutput(sent, false)
				if s.notReproduced == "" { // a snapshot of a history not reproduced would hide it
					count, digest := s.check.Digest()
					if err := ix.PutSnapshot(s.build, Snapshot{Seq: rec.Seq, OutCount: count, OutDigest: digest, State: state}); err != nil {
						return nil, err
					}
				}
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
	}
	state, sent, err := s.run.checkpoint(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	next.State = state
	next.addSent(sent)
	s.checkOutput(sent, true)
	next.NotReproduced = s.notReproduced
	s.cur = next
	return next, nil
}

// checkOutput checks what the app sent against the log's output digests;
// at a cursor (final), every point up to it must have been reached: the
// point of record r counts what was sent handling the records before r.
// The first mismatch of a replay is kept.
func (s *Session) checkOutput(sent []Sent, final bool) {
	if s.notReproduced != "" {
		return
	}
	err := s.check.Add(sent)
	if err == nil && final {
		err = s.check.Finish()
	}
	if err != nil {
		s.notReproduced = s.check.Explain(err)
	}
}

func (c *Cursor) addSent(sent []Sent) {
	c.SentTotal += len(sent)
	if room := MaxSent - len(c.Sent); room > 0 {
		c.Sent = append(c.Sent, sent[:min(room, len(sent))]...)
	}
}

// logFrom opens the log at record seq: at its indexed offset when the index
// has it, else by reading from the replay's starting segment.
func (s *Session) logFrom(seq int64) (*layout.LogReader, error) {
	if ix := s.opts.Index; ix != nil {
		e, ok, err := ix.entryAt(seq)
		if err != nil {
			return nil, err
		}
		if ok {
			return s.in.NewLogReaderAt(e.Segment, e.Offset, seq-1)
		}
	}
	return s.in.NewLogReader(s.startSeg)
}

// Deliver hands the app the record after the cursor without asking for its
// state: for a debugger that stops in the record's handler. The session is
// then only good for Close.
func (s *Session) Deliver(ctx context.Context) (*logfmt.Record, error) {
	if s.run == nil || s.cur == nil {
		return nil, errors.New("timetravel: deliver before the first goto")
	}
	lr, err := s.logFrom(s.cur.Seq + 1)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: there is no record after %d", ErrBadPoint, s.cur.Seq)
		}
		if err != nil {
			return nil, err
		}
		if rec.Seq <= s.cur.Seq {
			continue
		}
		if err := s.run.feed(rec); err != nil {
			return nil, err
		}
		if err := s.run.flush(); err != nil {
			return nil, err
		}
		c := *rec
		c.Messages = append([]byte(nil), rec.Messages...)
		c.Sources = append([]logfmt.Source(nil), rec.Sources...)
		s.cur = nil
		return &c, nil
	}
}
