package retro

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	// compared (every one, except in an upgrade test); StatesDiffering
	// those where they differ.
	StatesCompared  int `json:"states_compared"`
	StatesDiffering int `json:"states_differing"`
	// First is the first divergent record in full; LastSeq the last one's.
	First   *Divergence `json:"first,omitempty"`
	LastSeq int64       `json:"last_divergent_seq,omitempty"`
	// FirstStateDiff is the first comparison point where the states differ.
	FirstStateDiff *StateDiff `json:"first_state_diff,omitempty"`
	Duration       string     `json:"duration"`
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
func (r *Report) Diverged() bool { return r.Divergent > 0 || r.StatesDiffering > 0 }

// ErrRecordedDiffers says the recorded build does not reproduce the log: a
// different build, or a nondeterministic one. The candidate cannot be judged.
var ErrRecordedDiffers = errors.New("the recorded build does not reproduce the log")

// Run replays the instance's recorded input into the candidate and the
// recorded build side by side, record by record, and compares what they
// send after every record and their states at every checkpoint boundary
// and at the end.
func Run(ctx context.Context, opts Options) (*Report, error) {
	started := time.Now()
	in, err := layout.Open(vfs.Default(), opts.Dir)
	if err != nil {
		return nil, err
	}
	recorded := opts.Recorded
	if recorded == "" {
		recorded = in.Manifest.App.Path
		if recorded == "" {
			return nil, fmt.Errorf("%w: the MANIFEST of %s records no kept binary; pass the build that made the history", timetravel.ErrNoBuild, opts.Dir)
		}
		if _, err := os.Stat(recorded); err != nil {
			return nil, fmt.Errorf("%w: the recorded build %s (sha256 %s) is gone; pass the build that made the history", timetravel.ErrNoBuild, recorded, in.Manifest.App.SHA256)
		}
	}
	ck, err := startCheckpoint(in, opts.FromCheckpoint)
	if err != nil {
		return nil, err
	}
	rep := &Report{Instance: in.Manifest.Instance, Dir: in.Dir, Candidate: abs(opts.Candidate), Recorded: abs(recorded), From: ck.NextSeq, Until: ck.NextSeq - 1}
	// Keep the end of each app's output: when one fails, it says why.
	expOut, actOut := &tail{max: 2048}, &tail{max: 2048}
	var expW, actW io.Writer = expOut, actOut
	if opts.Stderr != nil {
		expW, actW = io.MultiWriter(expOut, opts.Stderr), io.MultiWriter(actOut, opts.Stderr)
	}
	exp, err := timetravel.StartDriver(ctx, nil, recorded, in.Manifest.Instance, nil, expW, expW)
	if err != nil {
		return nil, fmt.Errorf("start the recorded build: %w", err)
	}
	defer exp.Close()
	act, err := timetravel.StartDriver(ctx, nil, opts.Candidate, in.Manifest.Instance, nil, actW, actW)
	if err != nil {
		return nil, fmt.Errorf("start the candidate: %w", err)
	}
	defer act.Close()
	failed := func(who string, seq int64, err error, out *tail) error {
		d := act
		if out == expOut {
			d = exp
		}
		d.WaitExit(2 * time.Second) // its last words, if it is going away
		if said := out.String(); said != "" {
			return fmt.Errorf("%s failed at record %d: %w; its last output: %s", who, seq, err, said)
		}
		return fmt.Errorf("%s failed at record %d: %w", who, seq, err)
	}
	for _, d := range []*timetravel.Driver{exp, act} {
		if err := d.LoadState(ck.State); err != nil {
			return nil, err
		}
	}
	if opts.UpgradeTest {
		if err := act.Control(logfmt.TypeUpgradeService); err != nil {
			return nil, err
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
	lr, err := in.NewLogReader(ck.Number)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	stream := newOutputStream(ck.OutCount, ck.OutDigest)
	for {
		rec, err := lr.Next()
		if err == io.EOF || (err == nil && rec.Seq > until) {
			break
		}
		if err != nil {
			return nil, err
		}
		if rec.Seq < ck.NextSeq {
			continue
		}
		if err := stream.expect(rec); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRecordedDiffers, err)
		}
		if err := exp.Feed(rec); err != nil {
			return nil, failed("the recorded build", rec.Seq, err, expOut)
		}
		if err := act.Feed(rec); err != nil {
			return nil, failed("the candidate", rec.Seq, err, actOut)
		}
		// Both apps work on the record at once; then both answer.
		type answer struct {
			state []byte
			sent  []timetravel.Sent
			err   error
		}
		expDone := make(chan answer, 1)
		go func() {
			st, sent, err := exp.Checkpoint(ctx)
			expDone <- answer{st, sent, err}
		}()
		as, asent, aerr := act.Checkpoint(ctx)
		ea := <-expDone
		es, esent, eerr := ea.state, ea.sent, ea.err
		if eerr != nil {
			return nil, failed("the recorded build", rec.Seq, eerr, expOut)
		}
		if aerr != nil {
			return nil, failed("the candidate", rec.Seq, aerr, actOut)
		}
		if err := stream.add(esent); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrRecordedDiffers, err)
		}
		rep.Records++
		rep.Until = rec.Seq
		stateDiffers := false
		if !opts.UpgradeTest {
			stateDiffers = rep.compareStates(rec.Seq, es, as)
		}
		if !sameMessages(esent, asent) || stateDiffers {
			rep.Divergent++
			rep.LastSeq = rec.Seq
			if rep.First == nil {
				rep.First = divergence(rec, lr, esent, asent, es, as, opts.UpgradeTest)
			}
		}
		if opts.Progress != nil {
			opts.Progress(rec.Seq-ck.NextSeq+1, until-ck.NextSeq+1)
		}
	}
	if err := stream.finish(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRecordedDiffers, err)
	}
	rep.Duration = time.Since(started).Round(time.Millisecond).String()
	return rep, nil
}

func abs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// compareStates compares the app states after record seq.
func (rep *Report) compareStates(seq int64, es, as []byte) bool {
	rep.StatesCompared++
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
// binding's bookkeeping, like call ids, is not part of what is compared);
// other bindings' states are compared whole.
func appState(b []byte) ([]byte, bool) {
	var wrap struct {
		State json.RawMessage `json:"state"`
	}
	if json.Unmarshal(b, &wrap) == nil && wrap.State != nil {
		return wrap.State, true
	}
	return b, false
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

// canonical is an outgoing message in the form the output digest covers.
func canonical(s timetravel.Sent) (dest, data []byte) {
	framed := logfmt.AppendRPC(nil, s.RPC)
	m, _, _ := logfmt.ParseMessage(framed)
	if s.Dest != "" {
		dest = []byte(s.Dest)
	}
	return dest, m.Data
}

func sameMessages(a, b []timetravel.Sent) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		da, xa := canonical(a[i])
		db, xb := canonical(b[i])
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

// outputStream checks the recorded build's regenerated messages against the
// points of the output stream the log recorded: a record's count and
// chained digest say what the app had sent when the record was logged. It
// keeps the digest after every message since the oldest unchecked point, so
// points recorded while the app lagged behind are checked too.
type outputStream struct {
	count   uint64
	digest  uint64
	hist    map[uint64]uint64 // digest after count messages
	expects []*logfmt.Record
}

func newOutputStream(count, digest uint64) *outputStream {
	return &outputStream{count: count, digest: digest, hist: map[uint64]uint64{count: digest}}
}

func (o *outputStream) expect(rec *logfmt.Record) error {
	c := *rec
	c.Messages, c.Sources = nil, nil
	o.expects = append(o.expects, &c)
	return o.check()
}

func (o *outputStream) check() error {
	for len(o.expects) > 0 {
		e := o.expects[0]
		if e.OutCount > o.count {
			return nil
		}
		o.expects = o.expects[1:]
		d, ok := o.hist[e.OutCount]
		if !ok {
			continue // a point before the start checkpoint's output
		}
		if e.OutDigest != d {
			return fmt.Errorf("at record %d, after %d messages, the log recorded digest %016x but the recorded build's messages give %016x", e.Seq, e.OutCount, e.OutDigest, d)
		}
		for k := range o.hist {
			if k < e.OutCount {
				delete(o.hist, k)
			}
		}
	}
	return nil
}

func (o *outputStream) add(sent []timetravel.Sent) error {
	for _, s := range sent {
		if s.RPC.Kind == logfmt.RPCImpulse {
			continue
		}
		dest, data := canonical(s)
		o.count++
		o.digest = logfmt.ChainDigest(o.digest, dest, data)
		o.hist[o.count] = o.digest
	}
	return o.check()
}

func (o *outputStream) finish() error { return o.check() }

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
