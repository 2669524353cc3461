package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/timetravel"
)

type replayOptions struct {
	until, diff    string
	fromCheckpoint uint64
	app            string
	json           bool
	appOutput      bool
	noCache        bool
	debug          bool
	breakAt        string
	wait           bool
}

func newReplayCmd(g *globals) *cobra.Command {
	var o replayOptions
	cmd := &cobra.Command{
		Use:   "replay NAME|DIR --until P",
		Short: "Time travel: an instance's state at any point of its history",
		Long: `Replay an instance read-only up to point P and print its state there, with
the messages the app sent on the way. ambr stands in for the coordinator: it
starts the app build, hands it the nearest checkpoint before P and the logged
records up to P, collects what the app sends instead of sending it, then asks
for the state. The instance's directory is never written; the instance may be
running, or be a copy from another machine.

An index of the log and snapshots of the state (every 1024 records) are kept
in Badger under <home>/.timetravel, so later replays start from the nearest
snapshot; it is a cache (delete it freely) and notices a log that grew or
changed.

The build is the one that made the history (the MANIFEST records it, kept
under <home>/.bin by its hash); --app replays another (an executable, or a Go
package path, built for you).

P is 1234 or seq:1234 (the state after that record), an RFC 3339 time (the
last record logged at or before it), checkpoint:K+N (N records past
checkpoint K; checkpoint:K is the state the checkpoint holds), or end.

--diff P2 also replays to P2 and prints what changed from P to P2.

--debug builds the app from its Go source with debug information and runs it
under Delve, linked into ambr (no dlv needed): it replays up to the record
before P, sets a breakpoint, delivers the record at P, and prints where the
handler stopped with its arguments and locals. By default it stops in the
handler of the record at P: the method's handler for a call, fork or
impulse, the result handler for a result, found through the binding however
it was registered (a literal, a method value, under a constant). --break
METHOD stops in that method's handler the same way (or, for a name the
record does not call, in the Go function of that name); --break FILE:LINE
at a line. With --wait (the default when stdin is a terminal) the app stays
stopped and ambr prints the address for 'dlv connect' or an editor; without
it the session ends when ambr does.

--json prints one object: instance, app, seq, time, from, records, state
(the app's state when it is JSON, else state_hex), binding (the Go binding's
bookkeeping), sent ([{dest, kind, method, result, payload | payload_hex}]),
not_reproduced (set when the build does not reproduce the log), and with
--diff: diff_to and diff ([{path, old, new}]).

The messages the app sends are checked against the output digests in the
log: if the recorded build does not send what it sent then (a
nondeterministic history), the state is printed with the reason, and the
exit code is 1; with --app, another build, it is a note.

Exit codes: 0 printed; 1 the replay failed (the app exited or misbehaved),
or the recorded build does not reproduce the history; 2 bad point, no such
instance, or no build to replay with.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.until == "" {
				return usageErrorf("--until P is required: where to travel to (a record like 1234, a time, checkpoint:K+N or end)")
			}
			return runReplay(cmd.Context(), g, args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.until, "until", "", "the point to replay to (required)")
	f.StringVar(&o.diff, "diff", "", "also replay to this point and show what changed")
	f.Uint64Var(&o.fromCheckpoint, "from-checkpoint", 0, "start the replay at this checkpoint (default: the nearest before P)")
	f.StringVar(&o.app, "app", "", "replay with this build (executable or Go package path) instead of the recorded one")
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.BoolVar(&o.appOutput, "app-output", false, "show what the app prints while replaying (on stderr)")
	f.BoolVar(&o.debug, "debug", false, "build the app with debug info, run it under Delve (built in), and stop in the handler of the record at P")
	f.StringVar(&o.breakAt, "break", "", "with --debug: where to stop, METHOD (a handler's name) or FILE:LINE (default: the method of the record at P)")
	f.BoolVar(&o.wait, "wait", isTerminal(os.Stdin), "with --debug: keep the app stopped for dlv connect until Ctrl-C (default when run from a terminal)")
	f.BoolVar(&o.noCache, "no-cache", false, "do not use or build the time-travel index and snapshots under the home")
	return cmd
}

// sentView is one message the app sent, decoded.
type sentView struct {
	Dest       string `json:"dest"`
	Kind       string `json:"kind"`
	Method     string `json:"method,omitempty"`
	Result     bool   `json:"result,omitempty"`
	Payload    string `json:"payload,omitempty"`
	PayloadHex string `json:"payload_hex,omitempty"`
}

// replayResult is the JSON form of `ambr replay`.
type replayResult struct {
	Instance string              `json:"instance"`
	App      string              `json:"app"`
	Seq      int64               `json:"seq"`
	Time     *time.Time          `json:"time,omitempty"`
	From     int64               `json:"from"`
	Records  int64               `json:"records"`
	State    json.RawMessage     `json:"state,omitempty"`
	StateHex string              `json:"state_hex,omitempty"`
	Binding  json.RawMessage     `json:"binding,omitempty"`
	Sent     []sentView          `json:"sent"`
	DiffTo   *int64              `json:"diff_to,omitempty"`
	Diff     []timetravel.Change `json:"diff,omitempty"`
	// NotReproduced says the build did not send what the log's output
	// digests record on the way (see timetravel.Cursor).
	NotReproduced string `json:"not_reproduced,omitempty"`
}

// splitState separates the Go binding's checkpoint into the app's state and
// the binding's bookkeeping; other states are returned whole.
func splitState(b []byte) (state, binding json.RawMessage, isJSON bool) {
	b = immortal.CheckpointJSON(b) // a binary one as the JSON form
	var wrap struct {
		State   json.RawMessage `json:"state"`
		Binding json.RawMessage `json:"binding"`
	}
	if json.Unmarshal(b, &wrap) == nil && wrap.State != nil {
		return wrap.State, wrap.Binding, true
	}
	if json.Valid(b) {
		return b, nil, true
	}
	return nil, nil, false
}

func viewSent(sent []timetravel.Sent) []sentView {
	out := make([]sentView, 0, len(sent))
	for _, s := range sent {
		d := s.Describe()
		v := sentView{Dest: d.Dest, Kind: d.Kind, Method: d.Method, Result: d.Result}
		if text, ok := timetravel.PayloadText(d.Payload); ok {
			v.Payload = text
		} else {
			v.PayloadHex = hex.EncodeToString(d.Payload)
		}
		out = append(out, v)
	}
	return out
}

// progressBar draws replay progress on w once a replay takes more than a
// moment, and only on a terminal.
type progressBar struct {
	w           io.Writer
	done, total atomic.Int64
	stop        chan struct{}
	finished    chan struct{}
}

func startProgress(w io.Writer) *progressBar {
	p := &progressBar{w: w, stop: make(chan struct{}), finished: make(chan struct{})}
	f, ok := w.(*os.File)
	if !ok {
		close(p.finished)
		return p
	}
	if !isTerminal(f) {
		close(p.finished)
		return p
	}
	go func() {
		defer close(p.finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		started := time.Now()
		drawn := false
		for {
			select {
			case <-p.stop:
				if drawn {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case <-t.C:
			}
			if time.Since(started) < 500*time.Millisecond {
				continue
			}
			done, total := p.done.Load(), p.total.Load()
			if total <= 0 {
				continue
			}
			const width = 30
			n := int(int64(width) * done / total)
			fmt.Fprintf(p.w, "\rreplaying %s%s %3d%% (%d/%d records)", strings.Repeat("█", n), strings.Repeat("░", width-n), 100*done/total, done, total)
			drawn = true
		}
	}()
	return p
}

func (p *progressBar) set(done, total int64) { p.done.Store(done); p.total.Store(total) }

func (p *progressBar) close() {
	select {
	case <-p.finished:
	default:
		close(p.stop)
		<-p.finished
	}
}

func runReplay(ctx context.Context, g *globals, name string, o replayOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	in, err := openInstance(g, name)
	if err != nil {
		return err
	}
	until, err := timetravel.ParsePoint(o.until)
	if err != nil {
		return usageErrorf("--until: %v", err)
	}
	var diffPoint *timetravel.Point
	if o.diff != "" {
		p, err := timetravel.ParsePoint(o.diff)
		if err != nil {
			return usageErrorf("--diff: %v", err)
		}
		diffPoint = &p
	}
	replayErr := func(err error) error {
		if errors.Is(err, timetravel.ErrBadPoint) {
			return usageErrorf("%v", err)
		}
		return problemErrorf("%v", err)
	}
	app := o.app
	if app != "" && !o.debug { // --debug builds the source itself
		if st, err := os.Stat(app); err != nil || st.IsDir() {
			b, err := supervise.Resolve(ctx, app, g.Home(), g.stderr)
			if err != nil {
				return usageErrorf("--app: %v", err)
			}
			app = b.Path
		}
	}
	bar := startProgress(g.stderr)
	defer bar.close()
	resolve := func(p timetravel.Point) (int64, error) { return timetravel.Resolve(in, p) }
	var ix *timetravel.Index
	if !o.noCache {
		if ix, err = timetravel.OpenIndex(timetravel.CacheDir(g.Home(), in.Dir), in); err != nil {
			return problemErrorf("%v", err)
		}
		if ix.Private() {
			// Another reader holds the shared cache: a one-off replay does
			// as well reading the log itself as building a private index.
			ix.Close()
			ix = nil
			if !o.json {
				fmt.Fprintf(g.stderr, "note: another ambr command is using the time-travel cache of %s; replaying from the checkpoint without it\n", in.Manifest.Instance)
			}
		}
	}
	if ix != nil {
		defer ix.Close()
		if err := ix.Update(func(n int64) { bar.set(n, max(n, ix.Last())) }); err != nil {
			return problemErrorf("index the log: %v", err)
		}
		resolve = ix.Resolve
	}
	seq, err := resolve(until)
	if err != nil {
		return replayErr(err)
	}
	if o.debug {
		bar.close()
		return runReplayDebug(ctx, g, in, seq, o)
	}
	opts := timetravel.Options{Dir: in.Dir, App: app, FromCheckpoint: o.fromCheckpoint, Progress: bar.set, Index: ix}
	if o.appOutput {
		opts.Stdout, opts.Stderr = g.stderr, g.stderr
	}
	sess, err := timetravel.Open(opts)
	if err != nil {
		if errors.Is(err, timetravel.ErrNoBuild) {
			return usageErrorf("%v", err)
		}
		return problemErrorf("%v", err)
	}
	defer sess.Close()
	cur, err := sess.Goto(ctx, seq)
	if err != nil {
		return replayErr(err)
	}
	res := replayResult{Instance: in.Manifest.Instance, App: sess.App(), Seq: cur.Seq, From: cur.From, Records: cur.Seq - cur.From + 1, Sent: viewSent(cur.Sent),
		NotReproduced: cur.NotReproduced}
	if !cur.Time.IsZero() {
		t := cur.Time
		res.Time = &t
	}
	state, binding, isJSON := splitState(cur.State)
	if isJSON {
		res.State, res.Binding = state, binding
	} else {
		res.StateHex = hex.EncodeToString(cur.State)
	}
	if diffPoint != nil {
		seq2, err := resolve(*diffPoint)
		if err != nil {
			return replayErr(err)
		}
		cur2, err := sess.Goto(ctx, seq2)
		if err != nil {
			return replayErr(err)
		}
		a, _, _ := splitState(cur.State)
		b, _, _ := splitState(cur2.State)
		if a == nil || b == nil {
			a, b = cur.State, cur2.State
		}
		res.DiffTo = &cur2.Seq
		res.Diff = timetravel.Diff(a, b)
		if res.NotReproduced == "" {
			res.NotReproduced = cur2.NotReproduced
		}
	}
	bar.close()
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printReplay(g.stdout, in, res)
	}
	if res.NotReproduced != "" {
		if o.app != "" {
			// Another build than the recorded one: differing is expected.
			fmt.Fprintf(g.stderr, "note: %s sends other messages than the recorded build did: %s\n", o.app, res.NotReproduced)
			return nil
		}
		return problemErrorf("the recorded build does not reproduce the history of %s, so the state shown is what it makes of the input, not necessarily what the instance had: %s (likely causes: the wall clock read in a handler, map order, goroutines, randomness outside ctx.Rand(); 'ambr retro-test %s --candidate BUILD' shows the message the receiver logged)", in.Manifest.Instance, res.NotReproduced, in.Manifest.Instance)
	}
	return nil
}

func printReplay(w io.Writer, in *layout.Instance, res replayResult) {
	fmt.Fprintf(w, "instance %s (%s), replayed with %s\n", res.Instance, in.Dir, res.App)
	switch {
	case res.Seq == 0:
		fmt.Fprintf(w, "the initial state, before record 1\n")
	case res.Records <= 0:
		fmt.Fprintf(w, "the state after record %d, as its checkpoint holds it\n", res.Seq)
	default:
		fmt.Fprintf(w, "the state after record %d (logged %s): replayed records %d..%d from the checkpoint before them\n",
			res.Seq, res.Time.Format(time.RFC3339Nano), res.From, res.Seq)
	}
	fmt.Fprintln(w, "\nstate:")
	if res.State != nil {
		var pretty strings.Builder
		var v any
		if json.Unmarshal(res.State, &v) == nil {
			b, _ := json.MarshalIndent(v, "  ", "  ")
			pretty.Write(b)
		} else {
			pretty.Write(res.State)
		}
		fmt.Fprintf(w, "  %s\n", pretty.String())
	} else {
		b, _ := hex.DecodeString(res.StateHex)
		if len(b) > 512 {
			fmt.Fprintf(w, "%s  … %d bytes in all\n", hex.Dump(b[:512]), len(b))
		} else {
			fmt.Fprint(w, hex.Dump(b))
		}
	}
	if len(res.Binding) > 0 && string(res.Binding) != "null" {
		binding := res.Binding
		if durable, rest := immortal.SplitDurable(binding); durable != nil {
			var v any
			if json.Unmarshal(durable, &v) == nil {
				b, _ := json.MarshalIndent(v, "  ", "  ")
				fmt.Fprintf(w, "\norchestrations, timers and entities (binding.durable):\n  %s\n", b)
			}
			binding = rest
		}
		fmt.Fprintf(w, "binding: %s\n", binding)
	}
	if res.Records > 0 {
		fmt.Fprintf(w, "\nsent while handling records %d..%d: %d messages\n", res.From, res.Seq, len(res.Sent))
		for i, s := range res.Sent {
			if i == 20 && len(res.Sent) > 24 {
				fmt.Fprintf(w, "  … %d more (--json lists them all)\n", len(res.Sent)-20)
				break
			}
			what := s.Method
			if s.Result {
				what = "result"
			}
			payload := s.Payload
			if payload == "" && s.PayloadHex != "" {
				payload = "0x" + s.PayloadHex
			}
			if len(payload) > 80 {
				payload = payload[:80] + "…"
			}
			fmt.Fprintf(w, "  → %-12s %-6s %-12s %s\n", s.Dest, s.Kind, what, payload)
		}
	}
	if res.DiffTo != nil {
		fmt.Fprintf(w, "\nchanges from record %d to record %d: %d\n", res.Seq, *res.DiffTo, len(res.Diff))
		st := newCLIStyles(w)
		for _, c := range res.Diff {
			switch {
			case c.Old == "":
				fmt.Fprintf(w, "  %s\n", st.diffLine(fmt.Sprintf("+ %s = %s", c.Path, c.New)))
			case c.New == "":
				fmt.Fprintf(w, "  %s\n", st.diffLine(fmt.Sprintf("- %s (was %s)", c.Path, c.Old)))
			default:
				fmt.Fprintf(w, "  ~ %s: %s → %s\n", c.Path, c.Old, c.New)
			}
		}
	}
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one, and CI runs commands with stdin from it).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
