package retro

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

// Options configure one retro-test.
type Options struct {
	// Dir is the instance directory (only read).
	Dir string
	// Candidate is the executable under test.
	Candidate string
	// Recorded is the build that made the history (default: the one the
	// MANIFEST records); it regenerates the expected messages.
	Recorded string
	// FromCheckpoint is where the replay starts (default: the oldest
	// checkpoint kept, for the longest history).
	FromCheckpoint uint64
	// Until is the last record replayed (0: the end of the log).
	Until int64
	// UpgradeTest sends the candidate UpgradeService right after the
	// checkpoint: the candidate carries the old and the new code, converts
	// the state and processes the history on the new code. States are then
	// not compared (their layout differs by design); messages are.
	UpgradeTest bool
	// Window is how many records are fed between comparisons (default
	// DefaultWindow); 1 compares after every record.
	Window int64
	// Repeat is how many records from the start the candidate also runs a
	// second time, to catch output that varies between runs (default
	// DefaultRepeat; negative: none).
	Repeat int64
	// Progress, if set, is called as records are replayed.
	Progress func(done, total int64)
	// Stderr receives the apps' output (default: discarded).
	Stderr io.Writer
}

// Report is what a retro-test found. Its JSON form is what
// `ambr retro-test --json` prints.
type Report struct {
	Instance  string `json:"instance"`
	Dir       string `json:"dir"`
	Candidate string `json:"candidate"`
	Recorded  string `json:"recorded"`
	// From and Until are the first and last records replayed.
	From  int64 `json:"from"`
	Until int64 `json:"until"`
	// Records is how many were replayed; Divergent how many of them made the
	// candidate send something else than the recorded build did.
	Records   int64 `json:"records"`
	Divergent int64 `json:"divergent"`
	// StatesCompared counts the records after which the states were
	// compared; StatesDiffering those where they differ. In an upgrade
	// test the candidate's state is compared with what its conversion
	// makes of the recorded state there (the layouts differ by design).
	StatesCompared  int `json:"states_compared"`
	StatesDiffering int `json:"states_differing"`
	// First is the first divergent record in full; LastSeq the last one's.
	First   *Divergence `json:"first,omitempty"`
	LastSeq int64       `json:"last_divergent_seq,omitempty"`
	// FirstStateDiff is the first comparison point where the states differ.
	FirstStateDiff *StateDiff `json:"first_state_diff,omitempty"`
	// NotReproduced says the recorded build does not reproduce the log:
	// the history is nondeterministic (or the build is not the one that
	// made it), and the candidate was judged only up to there.
	NotReproduced *Nondeterminism `json:"not_reproduced,omitempty"`
	// Unstable says two runs of the candidate on the same records did not
	// send the same messages or reach the same state.
	Unstable *Instability `json:"unstable,omitempty"`
	// Crossings are the points where the history moves to another
	// recorded build (an upgrade, or a new build of the same version).
	Crossings []Crossing `json:"crossings,omitempty"`
	Duration  string     `json:"duration"`
}

// Crossing is where the recorded side of a retro-test went on with the
// next build that ran the instance: from record Seq on, starting at
// checkpoint Checkpoint. Upgrade says the state changed type there (an
// upgrade): the candidate was told to upgrade too (UpgradeService), and
// its converted state compared with the recorded one.
type Crossing struct {
	Seq        int64  `json:"seq"`
	Checkpoint uint64 `json:"checkpoint"`
	Recorded   string `json:"recorded"`
	Upgrade    bool   `json:"upgrade"`
	From       string `json:"from_state_type,omitempty"`
	To         string `json:"to_state_type,omitempty"`
}

// Divergence describes one divergent record.
type Divergence struct {
	Seq      int64               `json:"seq"`
	Time     time.Time           `json:"time"`
	Input    logview.RecordView  `json:"input"`
	Expected []Message           `json:"expected"`
	Actual   []Message           `json:"actual"`
	State    []timetravel.Change `json:"state_diff,omitempty"`
	Messages []string            `json:"diff"`
}

// StateDiff is where the states differ at a comparison point.
type StateDiff struct {
	Seq     int64               `json:"seq"`
	Changes []timetravel.Change `json:"changes"`
}

// Message is an outgoing message, decoded.
type Message struct {
	Dest    string `json:"dest"`
	Kind    string `json:"kind"`
	Method  string `json:"method"`
	Result  bool   `json:"result,omitempty"`
	Payload string `json:"payload"`
}

// String is the one-line form used in diffs.
func (m Message) String() string {
	what := m.Method
	if m.Result {
		what = "result"
	}
	return fmt.Sprintf("→ %s %s %s %s", m.Dest, m.Kind, what, m.Payload)
}

// Diverged reports whether the candidate did anything differently.
func (r *Report) Diverged() bool {
	return r.Divergent > 0 || r.StatesDiffering > 0 || r.NotReproduced != nil || r.Unstable != nil
}

// DefaultWindow is how many records both builds get before they are asked
// for their state and what they sent. Comparing per window, not per record,
// is what makes a retro-test cost about what a replay does: asking for the
// state costs the app a checkpoint of its whole state, so per record the
// cost grew with the state's size. Only a window that differs is replayed
// again record by record, to name the record.
const DefaultWindow = 1024

// maxWindowBytes ends a window early once its records hold this many bytes
// of messages, so that what the apps send back while it runs stays small.
const maxWindowBytes = 16 << 20

// DefaultRepeat is how many records (from the start) the candidate runs a
// second time alongside, to catch output that varies between runs of the
// same build (map order, goroutines, the wall clock).
const DefaultRepeat = 2048

// Run replays the instance's recorded input into the candidate and the
// recorded build side by side and compares what they send and the states
// they reach, a window of records at a time (Options.Window); a window
// that differs is replayed again one record at a time from its start, and
// from then on the comparison is per record, so the report names the first
// divergent record and counts every divergent one.
//
// A history the recorded build does not reproduce (its messages do not
// give the output digests the log holds) is a finding, not a failure to
// run: Report.NotReproduced names the record and the first message that
// differs, and the candidate is not judged.
func Run(ctx context.Context, opts Options) (*Report, error) {
	started := time.Now()
	in, err := layout.Open(vfs.Default(), opts.Dir)
	if err != nil {
		return nil, err
	}
	// Each record is replayed on the build that ran it (the MANIFEST's
	// build ranges), unless the caller names the recorded build.
	recorded := opts.Recorded
	var ranges []timetravel.BuildRange
	if recorded == "" {
		ranges = timetravel.BuildRanges(in)
	}
	from := opts.FromCheckpoint
	if from == 0 && opts.UpgradeTest {
		from = CurrentVersionCheckpoint(in)
	}
	ck, err := startCheckpoint(in, from)
	if err != nil {
		return nil, err
	}
	var version uint32
	if r := timetravel.RangeFor(ranges, ck.NextSeq); r != nil {
		recorded, version = r.Exe, r.Version
	}
	if recorded == "" {
		recorded = in.Manifest.App.Path
		if recorded == "" {
			return nil, fmt.Errorf("%w: the MANIFEST of %s records no kept binary; pass the build that made the history", timetravel.ErrNoBuild, opts.Dir)
		}
		if _, err := os.Stat(recorded); err != nil {
			return nil, fmt.Errorf("%w: the recorded build %s (sha256 %s) is gone; pass the build that made the history", timetravel.ErrNoBuild, recorded, in.Manifest.App.SHA256)
		}
	}
	until := opts.Until
	if until == 0 {
		last, err := timetravel.Resolve(in, timetravel.Point{Kind: timetravel.PointEnd})
		if err != nil {
			return nil, err
		}
		until = last
	}
	window := opts.Window
	if window <= 0 {
		window = DefaultWindow
	}
	repeat := opts.Repeat
	if repeat == 0 {
		repeat = DefaultRepeat
	}
	t := &tester{ctx: ctx, opts: opts, in: in, ck: ck, recorded: recorded, ranges: ranges,
		rep: &Report{Instance: in.Manifest.Instance, Dir: in.Dir, Candidate: abs(opts.Candidate), Recorded: abs(recorded), From: ck.NextSeq, Until: ck.NextSeq - 1}}
	t.crossedAt, t.version = ck.NextSeq, version
	defer t.close()
	if err := t.start(ck.State, ck.State, repeat > 0); err != nil {
		return nil, err
	}
	lr, err := in.NewLogReader(ck.Number)
	if err != nil {
		return nil, err
	}
	defer func() { lr.Close() }()
	stream := timetravel.NewOutputCheck(ck, in.Manifest.Instance)
	expState, actState := ck.State, ck.State // at the start of the window
	perRecord := window == 1                 // then there is no window to go back over
	total := until - ck.NextSeq + 1
	for {
		var saved *timetravel.OutputCheck // to go back to the window's start
		n := window
		if perRecord {
			n = 1 // never goes back: no copy
		} else {
			saved = stream.Clone()
		}
		if t.again != nil { // the candidate's second run stops at againUntil
			n = max(1, min(n, t.againUntil-t.rep.Until))
		}
		// A window never spans two builds' ranges: at the first record of
		// the next one, the recorded side goes on with that build. A test
		// to the end also crosses into a build that has not run a record
		// yet (an upgrade after the last one): its converted state is the
		// history's too.
		if r := t.nextRange(t.rep.Until + 1); r != nil && (r.First <= until || opts.Until == 0 && r.First == until+1) {
			if r.First == t.rep.Until+1 {
				// The recorded build must have reached every point its
				// records carry before the next build takes over (found in
				// review: a crossing replaced the check unfinished).
				if err := stream.Finish(); err != nil {
					t.rep.NotReproduced = t.nondeterminism(err, stream)
					t.rollback(t.rep.NotReproduced.Seq)
					break
				}
				if expState, actState, stream, err = t.cross(r, expState, actState); err != nil {
					return nil, err
				}
				continue
			}
			n = min(n, r.First-t.rep.Until-1)
		}
		w, first, last, n, err := t.window(lr, until, n, stream)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		notReproduced := stream.Add(w.expSent)
		same := notReproduced == nil && sameMessages(w.expSent, w.actSent) && (opts.UpgradeTest || sameState(w.expState, w.actState))
		if !perRecord && !same {
			// Find the window's first record that differs, start again
			// from the window's start, replay up to that record, and go on
			// one record at a time from there.
			at := first.seq
			if !opts.UpgradeTest { // an upgrade test's restart replays from the checkpoint: no bisection
				if at, err = t.bisect(first, last.Seq, expState, actState, saved); err != nil {
					return nil, err
				}
			}
			if err := t.restart(expState, actState, first.seq); err != nil {
				return nil, err
			}
			lr.Close()
			if lr, err = in.NewLogReaderAt(first.seg, first.off, first.seq-1); err != nil {
				return nil, err
			}
			stream = saved
			if at > first.seq {
				w, _, last, n, err := t.window(lr, at-1, at-first.seq, stream)
				if err != nil {
					return nil, err
				}
				if err := stream.Add(w.expSent); err != nil {
					return nil, fmt.Errorf("retro: records %d..%d replayed differently the second time: %w", first.seq, at-1, err)
				}
				t.rep.Records += n
				t.rep.Until = last.Seq
				expState, actState = w.expState, w.actState
			}
			perRecord = true
			continue
		}
		if notReproduced != nil {
			t.rep.NotReproduced = t.nondeterminism(notReproduced, stream)
			t.rollback(t.rep.NotReproduced.Seq)
			break
		}
		if w.repeated {
			if !sameMessages(w.actSent, w.repSent) || (!opts.UpgradeTest && !sameState(w.actState, w.repState)) {
				t.rep.Unstable = unstable(first.seq, last.Seq, w)
			}
		}
		t.rep.Records += n
		t.rep.Until = last.Seq
		expState, actState = w.expState, w.actState
		if !opts.UpgradeTest {
			t.rep.StatesCompared++
		} else if notReproduced == nil && (!perRecord || last.Seq >= until) {
			// The candidate's state after replaying on its new code must be
			// what its conversion makes of the recorded state there (once
			// per window: a conversion starts the candidate once more).
			conv, err := t.convert(w.expState)
			if err != nil {
				return nil, fmt.Errorf("convert the recorded state after record %d: %w", last.Seq, err)
			}
			t.rep.StatesCompared++
			if t.rep.compareStates(last.Seq, conv, w.actState) {
				t.stateDiffs = append(t.stateDiffs, last.Seq)
			}
		}
		if opts.Window <= 0 {
			window = windowFor(len(w.expState), window)
		}
		if !same {
			stateDiffers := !opts.UpgradeTest && t.rep.compareStates(last.Seq, w.expState, w.actState)
			if stateDiffers {
				t.stateDiffs = append(t.stateDiffs, last.Seq)
			}
			if stateDiffers || !sameMessages(w.expSent, w.actSent) {
				t.divergent = append(t.divergent, last.Seq)
				t.rep.Divergent++
				t.rep.LastSeq = last.Seq
				if t.rep.First == nil {
					t.rep.First = divergence(last, lr, w.expSent, w.actSent, w.expState, w.actState, opts.UpgradeTest)
				}
			}
		}
		if opts.Progress != nil {
			opts.Progress(last.Seq-ck.NextSeq+1, total)
		}
	}
	if t.rep.NotReproduced == nil {
		if err := stream.Finish(); err != nil {
			t.rep.NotReproduced = t.nondeterminism(err, stream)
			t.rollback(t.rep.NotReproduced.Seq)
		}
	}
	t.rep.Duration = time.Since(started).Round(time.Millisecond).String()
	return t.rep, nil
}

// rollback takes back the verdicts on records from seq on: the recorded
// build went wrong there (its output digest is checked against the point a
// later record carries, so it is found a record or more late), and a
// candidate cannot be judged against it.
func (t *tester) rollback(seq int64) {
	rep := t.rep
	if rep.Until >= seq {
		rep.Records -= rep.Until - seq + 1
		rep.Until = seq - 1
	}
	keep := func(seqs []int64) []int64 {
		for len(seqs) > 0 && seqs[len(seqs)-1] >= seq {
			seqs = seqs[:len(seqs)-1]
		}
		return seqs
	}
	t.divergent, t.stateDiffs = keep(t.divergent), keep(t.stateDiffs)
	rep.Divergent, rep.StatesDiffering = int64(len(t.divergent)), len(t.stateDiffs)
	rep.LastSeq = 0
	if n := len(t.divergent); n > 0 {
		rep.LastSeq = t.divergent[n-1]
	}
	if rep.First != nil && rep.First.Seq >= seq {
		rep.First = nil
	}
	if rep.FirstStateDiff != nil && rep.FirstStateDiff.Seq >= seq {
		rep.FirstStateDiff = nil
	}
}

// place is where a record starts in the log.
type place struct {
	seg uint64
	off int64
	seq int64
}

// windowFor grows the window with the state: asking for a state of size
// bytes costs the apps about as much as handling a record per 64 bytes of
// it, so the window keeps that cost a small part of the whole.
func windowFor(size int, window int64) int64 {
	want := DefaultWindow * (1 + int64(size)/(64<<10))
	return min(max(window, want), 1<<16)
}

// window feeds the next records, up to n of them and none past until, to
// every build, then collects what they sent and their states. first and
// last are the records fed; n how many (0 at the end of the log).
func (t *tester) window(lr *layout.LogReader, until, n int64, stream *timetravel.OutputCheck) (w windowResult, first place, last *logfmt.Record, fed int64, err error) {
	size := 0
	for fed < n && size < maxWindowBytes {
		rec, err := lr.Next()
		if err == io.EOF || (err == nil && rec.Seq > until) {
			break
		}
		if err != nil {
			return w, first, nil, 0, err
		}
		if rec.Seq < t.ck.NextSeq {
			continue
		}
		if fed == 0 {
			seg, off := lr.Position()
			first = place{seg, off, rec.Seq}
		}
		stream.Expect(rec)
		if err := t.feed(rec); err != nil {
			return w, first, nil, 0, err
		}
		fed++
		size += len(rec.Messages)
		last = rec
	}
	if fed == 0 {
		return w, first, nil, 0, nil
	}
	w, err = t.collect(last.Seq)
	return w, first, last, fed, err
}

// bisect finds the first record of first..last (which differ as a whole,
// replayed from the states before first) after which the builds differ:
// each probe starts the builds at those states again and replays a prefix.
// It costs about log2(n) replays of the window instead of n comparisons,
// each of which asks for the whole state.
func (t *tester) bisect(first place, last int64, expState, actState []byte, stream *timetravel.OutputCheck) (int64, error) {
	lo, hi := first.seq, last
	for lo < hi {
		mid := lo + (hi-lo)/2
		if err := t.restart(expState, actState, first.seq); err != nil {
			return 0, err
		}
		lr, err := t.in.NewLogReaderAt(first.seg, first.off, first.seq-1)
		if err != nil {
			return 0, err
		}
		s := stream.Clone()
		w, _, _, _, err := t.window(lr, mid, mid-first.seq+1, s)
		lr.Close()
		if err != nil {
			return 0, err
		}
		if s.Add(w.expSent) != nil || !sameMessages(w.expSent, w.actSent) || !sameState(w.expState, w.actState) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo, nil
}

// tester holds the builds of one retro-test: the recorded build (exp), the
// candidate (act) and, for the first records, the candidate's second run
// (again).
type tester struct {
	ctx             context.Context
	opts            Options
	in              *layout.Instance
	ck              *logfmt.Checkpoint
	recorded        string
	rep             *Report
	exp, act, again *timetravel.Driver
	expOut, actOut  *tail
	expW            io.Writer
	againUntil      int64
	// divergent and stateDiffs are the records counted in Divergent and
	// StatesDiffering, for rollback.
	divergent, stateDiffs []int64
	expFed, actFed        int64 // the last record each was fed
	// ranges are the recorded builds and the records each ran (nil: one
	// build, or Options.Recorded named one).
	ranges []timetravel.BuildRange
	// crossedAt is the first record of the range the recorded side runs,
	// version the app version of that range's build.
	crossedAt int64
	version   uint32
}

// windowResult is what the builds answered after a window.
type windowResult struct {
	expState, actState, repState []byte
	expSent, actSent, repSent    []timetravel.Sent
	repeated                     bool
}

// start starts the builds at the given states (the candidate's second run
// too, if again). In an upgrade test the candidate's state is always the
// checkpoint's, and it is told to upgrade.
func (t *tester) start(expState, actState []byte, again bool) error {
	// Keep the end of each app's output: when one fails, it says why.
	t.expOut, t.actOut = &tail{max: 2048}, &tail{max: 2048}
	var expW, actW io.Writer = t.expOut, t.actOut
	if t.opts.Stderr != nil {
		expW, actW = io.MultiWriter(t.expOut, t.opts.Stderr), io.MultiWriter(t.actOut, t.opts.Stderr)
	}
	name := t.in.Manifest.Instance
	// The recorded build starts while the candidate does; the candidate's
	// second run only once the first is up, so that "first" and "second"
	// mean what they say to a candidate that can tell.
	expStarted := make(chan error, 1)
	go func() {
		var err error
		t.exp, err = timetravel.StartDriver(t.ctx, nil, t.recorded, name, nil, expW, expW)
		expStarted <- err
	}()
	t.expW = expW
	var err error
	t.act, err = timetravel.StartDriver(t.ctx, nil, t.opts.Candidate, name, nil, actW, actW)
	if eerr := <-expStarted; eerr != nil {
		return fmt.Errorf("start the recorded build: %w", eerr)
	}
	if err != nil {
		return fmt.Errorf("start the candidate: %w", err)
	}
	if err := t.exp.LoadState(expState); err != nil {
		return err
	}
	if err := t.act.LoadState(actState); err != nil {
		return err
	}
	if t.opts.UpgradeTest { // the candidate starts from the checkpoint (see restart) and converts it
		if err := t.act.Control(logfmt.TypeUpgradeService); err != nil {
			return err
		}
	}
	if again {
		repeat := t.opts.Repeat
		if repeat == 0 {
			repeat = DefaultRepeat
		}
		if t.again, err = timetravel.StartDriver(t.ctx, nil, t.opts.Candidate, name, nil, io.Discard, io.Discard); err != nil {
			return fmt.Errorf("start the candidate's second run: %w", err)
		}
		if err := t.again.LoadState(actState); err != nil {
			return err
		}
		if t.opts.UpgradeTest {
			if err := t.again.Control(logfmt.TypeUpgradeService); err != nil {
				return err
			}
		}
		t.againUntil = t.ck.NextSeq - 1 + repeat
	}
	return nil
}

// restart starts the builds again at record from, from the states they
// had before it. In an upgrade test the candidate's state is in its new
// layout, which only the conversion makes: it starts from the checkpoint
// again and is fed the records before from without comparing.
func (t *tester) restart(expState, actState []byte, from int64) error {
	t.close()
	if !t.opts.UpgradeTest || from == t.ck.NextSeq {
		return t.start(expState, actState, false)
	}
	if err := t.start(expState, t.ck.State, false); err != nil {
		return err
	}
	lr, err := t.in.NewLogReader(t.ck.Number)
	if err != nil {
		return err
	}
	defer lr.Close()
	for {
		rec, err := lr.Next()
		if err != nil {
			return fmt.Errorf("replay the candidate up to record %d: %w", from, err)
		}
		if rec.Seq < t.ck.NextSeq {
			continue
		}
		if rec.Seq >= from {
			break
		}
		if err := t.act.Feed(rec); err != nil {
			return t.failed("the candidate", rec.Seq, err, t.actOut, t.act)
		}
	}
	if _, _, err := t.act.Checkpoint(t.ctx); err != nil {
		return t.failed("the candidate", from-1, err, t.actOut, t.act)
	}
	return nil
}

func (t *tester) feed(rec *logfmt.Record) error {
	if err := t.exp.Feed(rec); err != nil {
		return t.failed("the recorded build", rec.Seq, err, t.expOut, t.exp)
	}
	if err := t.act.Feed(rec); err != nil {
		return t.failed("the candidate", rec.Seq, err, t.actOut, t.act)
	}
	if t.again != nil {
		if err := t.again.Feed(rec); err != nil {
			return t.failed("the candidate's second run", rec.Seq, err, t.actOut, t.again)
		}
	}
	return nil
}

// collect asks every build for its state and what it sent since the last
// time, all at once (each app works on its own core).
func (t *tester) collect(seq int64) (windowResult, error) {
	type answer struct {
		state []byte
		sent  []timetravel.Sent
		err   error
	}
	ask := func(d *timetravel.Driver) chan answer {
		c := make(chan answer, 1)
		go func() {
			st, sent, err := d.Checkpoint(t.ctx)
			c <- answer{st, sent, err}
		}()
		return c
	}
	ec := ask(t.exp)
	var rc chan answer
	if t.again != nil {
		rc = ask(t.again)
	}
	as, asent, aerr := t.act.Checkpoint(t.ctx)
	e := <-ec
	if e.err != nil {
		return windowResult{}, t.failed("the recorded build", seq, e.err, t.expOut, t.exp)
	}
	if aerr != nil {
		return windowResult{}, t.failed("the candidate", seq, aerr, t.actOut, t.act)
	}
	w := windowResult{expState: e.state, expSent: e.sent, actState: as, actSent: asent}
	if rc != nil {
		r := <-rc
		if r.err != nil {
			return windowResult{}, t.failed("the candidate's second run", seq, r.err, t.actOut, t.again)
		}
		w.repState, w.repSent, w.repeated = r.state, r.sent, true
		if seq >= t.againUntil {
			t.again.Close()
			t.again = nil
		}
	}
	return w, nil
}

func (t *tester) failed(who string, seq int64, err error, out *tail, d *timetravel.Driver) error {
	d.WaitExit(2 * time.Second) // its last words, if it is going away
	if said := out.String(); said != "" {
		return fmt.Errorf("%s failed at record %d: %w; its last output: %s", who, seq, err, said)
	}
	return fmt.Errorf("%s failed at record %d: %w", who, seq, err)
}

func (t *tester) close() {
	for _, d := range []*timetravel.Driver{t.exp, t.act, t.again} {
		if d != nil {
			d.Close()
		}
	}
	t.exp, t.act, t.again = nil, nil, nil
}

// sameState compares two checkpoints' app states: bytes first (the usual
// case, and all it costs), the decoded JSON only when the bytes differ.
func sameState(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	x, _ := appState(a)
	y, _ := appState(b)
	return bytes.Equal(x, y) || len(timetravel.Diff(x, y)) == 0
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// compareStates compares the app states after record seq.
func (rep *Report) compareStates(seq int64, es, as []byte) bool {
	a, _ := appState(es)
	b, _ := appState(as)
	if bytes.Equal(a, b) {
		return false
	}
	changes := timetravel.Diff(a, b)
	if len(changes) == 0 {
		return false // the same JSON, written differently
	}
	rep.StatesDiffering++
	if rep.FirstStateDiff == nil {
		rep.FirstStateDiff = &StateDiff{Seq: seq, Changes: changes}
	}
	return true
}

// appState is the app's state inside the Go binding's checkpoint (the
// binding's bookkeeping, like call ids, is not part of what is compared),
// with the states of the entities the instance hosts when it hosts any
// (then as {"state": …, "entities": …}): an entity's state is the app's
// state too. Other bindings' states are compared whole.
func appState(b []byte) ([]byte, bool) {
	b = immortal.CheckpointJSON(b) // a binary one as the JSON form
	var wrap struct {
		State   json.RawMessage `json:"state"`
		Binding struct {
			Durable struct {
				Entities json.RawMessage `json:"entities"`
			} `json:"durable"`
		} `json:"binding"`
	}
	if json.Unmarshal(b, &wrap) != nil || wrap.State == nil {
		return b, false
	}
	if e := wrap.Binding.Durable.Entities; len(e) > 0 && string(e) != "null" {
		both, err := json.Marshal(struct {
			State    json.RawMessage `json:"state"`
			Entities json.RawMessage `json:"entities"`
		}{wrap.State, e})
		if err == nil {
			return both, true
		}
	}
	return wrap.State, true
}

func startCheckpoint(in *layout.Instance, k uint64) (*logfmt.Checkpoint, error) {
	nums, err := in.Checkpoints()
	if err != nil {
		return nil, err
	}
	if k != 0 {
		ck, err := in.ReadCheckpoint(k)
		if err != nil {
			return nil, fmt.Errorf("%w: checkpoint %d: %v (checkpoints present: %v)", timetravel.ErrBadPoint, k, err, nums)
		}
		return ck, nil
	}
	for _, n := range nums {
		if ck, err := in.ReadCheckpoint(n); err == nil {
			return ck, nil
		}
	}
	return nil, fmt.Errorf("%s has no valid checkpoint to start from", in.Dir)
}

func sameMessages(a, b []timetravel.Sent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		da, xa := a[i].Canonical()
		db, xb := b[i].Canonical()
		if !bytes.Equal(da, db) || !bytes.Equal(xa, xb) {
			return false
		}
	}
	return true
}

func decode(sent []timetravel.Sent) []Message {
	out := make([]Message, 0, len(sent))
	for _, s := range sent {
		d := s.Describe()
		out = append(out, Message{Dest: d.Dest, Kind: d.Kind, Method: d.Method, Result: d.Result, Payload: string(d.Payload)})
	}
	return out
}

func divergence(rec *logfmt.Record, lr *layout.LogReader, esent, asent []timetravel.Sent, es, as []byte, upgrade bool) *Divergence {
	seg, off := lr.Position()
	d := &Divergence{Seq: rec.Seq, Time: rec.LoggedTime(), Input: logview.View(rec, seg, off, immortal.DecodeArgs),
		Expected: decode(esent), Actual: decode(asent)}
	for i := 0; i < max(len(d.Expected), len(d.Actual)); i++ {
		var e, a string
		if i < len(d.Expected) {
			e = d.Expected[i].String()
		}
		if i < len(d.Actual) {
			a = d.Actual[i].String()
		}
		switch {
		case e == a:
			d.Messages = append(d.Messages, "  "+e)
		default:
			if e != "" {
				d.Messages = append(d.Messages, "- "+e)
			}
			if a != "" {
				d.Messages = append(d.Messages, "+ "+a)
			}
		}
	}
	if !upgrade {
		a, _ := appState(es)
		b, _ := appState(as)
		d.State = timetravel.Diff(a, b)
	}
	return d
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.b))
}
