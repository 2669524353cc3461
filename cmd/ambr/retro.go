package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/retro"
	"github.com/ambr-dev/ambr/timetravel"
	"github.com/ambr-dev/ambr/upgrade"
)

type retroOptions struct {
	candidate      string
	recorded       string
	fromCheckpoint uint64
	until          string
	json           bool
	junit          string
	parallel       int
	window, repeat int64
}

func newRetroCmd(g *globals) *cobra.Command {
	var o retroOptions
	cmd := &cobra.Command{
		Use:   "retro-test NAME... --candidate APP",
		Short: "Replay recorded history into a candidate build and name the first divergence",
		Long: `Replay the recorded input of each instance into a candidate build and compare
what it does with what the recorded run did: the messages it sends and the
state it is in after every record. The
recorded build (the MANIFEST's, kept under <home>/.bin; or --recorded)
regenerates the expected messages, checked against the output digests in the
log. Nothing is written to the instances; they may be running.

The report names the first divergent record — its sequence number, logged
time, the input, the expected and actual messages as a diff, and the state
difference — then a summary: records replayed, divergent records, first and
last divergence.

Both builds get a window of records (--window, growing with the state's
size) before they are compared on what they sent and the state they reached;
a window that differs is bisected to its first divergent record, and the
comparison goes on record by record from there. The candidate also runs a
second time beside the first --repeat records: output that differs between
its two runs (map order, goroutines, the wall clock) is a finding. A history
the recorded build itself does not reproduce is a finding too: the report
names the record, its input, the first message that differs (what the build
sends now, and what the receiving instance logged when its directory is
beside this one) and the likely causes.

APP is a Go package path (built for you) or an executable speaking the app
protocol. --until takes a point (1234, a time, checkpoint:K+N, end).

--json prints {"diverged": bool, "reports": [report...]}, a report being
{instance, dir, candidate, recorded, from, until, records, divergent,
states_compared, states_differing, first: {seq, time, input, expected,
actual, diff, state_diff}, last_divergent_seq, first_state_diff,
not_reproduced: {seq, time, input, point, detail, message, now, logged,
logged_in, causes}, unstable: {from, until, index, first, second,
state_diff, causes}, duration, error}. --junit FILE writes JUnit XML (one test case per instance) for CI.

Exit codes: 0 no divergence; 1 a divergence, output that varies between
runs, or a history the recorded build does not reproduce; 2 could not run.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.candidate == "" {
				return usageErrorf("--candidate APP is required: the build to test against the recorded history")
			}
			if o.parallel < 1 {
				return usageErrorf("--parallel must be at least 1")
			}
			return runRetro(cmd.Context(), g, args, o, false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.candidate, "candidate", "", "the build to test (Go package path or executable)")
	f.StringVar(&o.recorded, "recorded", "", "the build that made the history (default: the one the MANIFEST records)")
	f.Uint64Var(&o.fromCheckpoint, "from-checkpoint", 0, "start at this checkpoint (default: the oldest kept)")
	f.StringVar(&o.until, "until", "", "stop after this point (default: the end)")
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.StringVar(&o.junit, "junit", "", "also write JUnit XML to this file")
	f.IntVar(&o.parallel, "parallel", 2, "instances tested at once")
	f.Int64Var(&o.window, "window", 0, "records fed between comparisons (default: 1024, more for large states; 1: after every record)")
	f.Int64Var(&o.repeat, "repeat", retro.DefaultRepeat, "records, from the start, that the candidate runs twice to catch output varying between runs (0: none)")
	return cmd
}

// retroResult is one instance's outcome.
type retroResult struct {
	*retro.Report
	// Conversion is an upgrade test's: the state at the checkpoint the
	// candidate takes over at, what it converted it to, and whether the
	// state it reaches by replay matches its conversion of the recorded one.
	Conversion *upgrade.Conversion `json:"conversion,omitempty"`
	Name       string              `json:"name"`
	Error      string              `json:"error,omitempty"`
	err        error
	// conversionFailed: the candidate could not convert the state (an
	// upgrade test's finding, exit 1).
	conversionFailed bool
}

func resolveApp(ctx context.Context, g *globals, app string) (string, error) {
	if st, err := os.Stat(app); err == nil && !st.IsDir() {
		return app, nil
	}
	b, err := supervise.Resolve(ctx, app, g.Home(), g.stderr)
	if err != nil {
		return "", err
	}
	return b.Path, nil
}

func runRetro(ctx context.Context, g *globals, names []string, o retroOptions, upgrading bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	candidate, err := resolveApp(ctx, g, o.candidate)
	if err != nil {
		return usageErrorf("--candidate: %v", err)
	}
	recorded := ""
	if o.recorded != "" {
		if recorded, err = resolveApp(ctx, g, o.recorded); err != nil {
			return usageErrorf("--recorded: %v", err)
		}
	}
	bar := startProgress(g.stderr)
	defer bar.close()
	var progMu sync.Mutex
	done, total := map[int]int64{}, map[int]int64{}
	results := make([]retroResult, len(names))
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func(i int, name string) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res := retroResult{Name: name}
			defer func() { results[i] = res }()
			in, err := openInstance(g, name)
			if err != nil {
				res.err = err
				return
			}
			opts := retro.Options{Dir: in.Dir, Candidate: candidate, Recorded: recorded, FromCheckpoint: o.fromCheckpoint, UpgradeTest: upgrading,
				Window: o.window, Repeat: repeatOption(o.repeat),
				Progress: func(d, t int64) {
					progMu.Lock()
					done[i], total[i] = d, t
					var sd, st int64
					for k := range total {
						sd, st = sd+done[k], st+total[k]
					}
					progMu.Unlock()
					bar.set(sd, st)
				}}
			if o.until != "" {
				p, err := timetravel.ParsePoint(o.until)
				if err != nil {
					res.err = usageErrorf("--until: %v", err)
					return
				}
				if opts.Until, err = timetravel.Resolve(in, p); err != nil {
					res.err = err
					return
				}
			}
			if upgrading {
				var tr *upgrade.TestReport
				if tr, res.err = upgrade.Test(ctx, opts); tr != nil {
					res.Report, res.Conversion = tr.Report, tr.Conversion
				}
				var ce *upgrade.ConversionError
				if errors.As(res.err, &ce) {
					res.conversionFailed = true
				}
				return
			}
			res.Report, res.err = retro.Run(ctx, opts)
		}(i, name)
	}
	wg.Wait()
	bar.close()
	diverged, failed, unconverted := false, false, false
	for i := range results {
		r := &results[i]
		switch {
		case r.conversionFailed:
			unconverted = true
			r.Error = r.err.Error()
		case r.err != nil:
			failed = true
			r.Error = r.err.Error()
		case r.Diverged():
			diverged = true
		}
	}
	if o.junit != "" {
		if err := writeJUnit(o.junit, results, o.candidate, upgrading); err != nil {
			return problemErrorf("write %s: %v", o.junit, err)
		}
	}
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(struct {
			Diverged bool          `json:"diverged"`
			Reports  []retroResult `json:"reports"`
		}{diverged || unconverted, results}); err != nil {
			return err
		}
	} else {
		for i := range results {
			printRetro(g.stdout, &results[i], o.candidate, upgrading)
		}
	}
	if unconverted && !failed {
		for _, r := range results {
			if r.conversionFailed {
				return problemErrorf("%s: the new version cannot take over: %v", r.Name, r.err)
			}
		}
	}
	switch {
	case failed:
		var first error
		for _, r := range results {
			if r.err != nil {
				first = r.err
				break
			}
		}
		if errors.Is(first, timetravel.ErrBadPoint) || errors.Is(first, timetravel.ErrNoBuild) {
			return usageErrorf("%s", strings.TrimPrefix(first.Error(), "ambr: "))
		}
		// Damaged data is exit 1 in every command (ls, log, checkpoints,
		// replay alike).
		if errors.Is(first, timetravel.ErrDamaged) || errors.Is(first, logfmt.ErrCorrupt) || errors.Is(first, engine.ErrDamagedLog) {
			return problemErrorf("the history is damaged: %v (see 'ambr log NAME' for where)", first)
		}
		return &exitError{code: exitUsage, err: fmt.Errorf("could not run: %v", first)}
	case diverged:
		if upgrading {
			for _, r := range results {
				if r.Conversion != nil && !r.Conversion.Matches && r.First == nil {
					return &exitError{code: exitProblem, err: fmt.Errorf("the new version's state after replay is not what its conversion makes of the recorded state (%s, after record %d): the conversion loses or changes what the new code goes on to use", r.Name, r.Conversion.FirstDiff.Seq)}
				}
			}
		}
		for _, r := range results {
			if r.Report != nil && r.NotReproduced != nil {
				return &exitError{code: exitProblem, err: fmt.Errorf("the recorded build does not reproduce the history of %s (the report says where and why); the candidate was judged only up to there", r.Name)}
			}
		}
		return &exitError{code: exitProblem, err: errors.New("the candidate diverged from the recorded history")}
	}
	return nil
}

// repeatOption maps --repeat (0: none) to retro.Options.Repeat (0: the
// default, negative: none).
func repeatOption(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

func printRetro(w io.Writer, r *retroResult, candidate string, upgrade bool) {
	what := "retro-test"
	if upgrade {
		what = "upgrade test"
	}
	if r.conversionFailed {
		fmt.Fprintf(w, "%s of %s against %s: ✗ %v\n\n", what, r.Name, candidate, r.err)
		return
	}
	if r.err != nil {
		fmt.Fprintf(w, "%s of %s against %s could not run: %v\n\n", what, r.Name, candidate, r.err)
		return
	}
	fmt.Fprintf(w, "%s of %s against %s (recorded build %s)\n", what, r.Name, candidate, r.Recorded)
	for _, c := range r.Crossings {
		if c.Upgrade {
			fmt.Fprintf(w, "from record #%d the history ran %s (checkpoint %d, upgraded from %s to %s); the candidate was told to upgrade there\n", c.Seq, c.Recorded, c.Checkpoint, c.From, c.To)
		} else {
			fmt.Fprintf(w, "from record #%d the history ran %s (checkpoint %d)\n", c.Seq, c.Recorded, c.Checkpoint)
		}
	}
	if c := r.Conversion; c != nil {
		printConversion(w, c)
	}
	fmt.Fprintf(w, "replayed records %d..%d: %d records, %d diverged", r.From, r.Until, r.Records, r.Divergent)
	if r.Divergent > 0 {
		fmt.Fprintf(w, " (first #%d, last #%d)", r.First.Seq, r.LastSeq)
	}
	if !upgrade {
		fmt.Fprintf(w, "; states differ after %d of them", r.StatesDiffering)
	} else {
		fmt.Fprintf(w, "; replayed vs converted state: %d of %d comparisons differ", r.StatesDiffering, r.StatesCompared)
	}
	fmt.Fprintf(w, " — %s\n", r.Duration)
	if d := r.First; d != nil {
		fmt.Fprintf(w, "first divergence: record #%d, logged %s\n", d.Seq, d.Time.Format(time.RFC3339Nano))
		printInput(w, d.Input.Messages)
		fmt.Fprintln(w, "  messages sent (- expected, + actual):")
		st := newCLIStyles(w)
		for _, line := range d.Messages {
			fmt.Fprintf(w, "    %s\n", st.diffLine(line))
		}
		if len(d.State) > 0 {
			fmt.Fprintf(w, "  state after #%d (expected → actual):\n", d.Seq)
			for _, c := range d.State {
				fmt.Fprintf(w, "    %s: %s → %s\n", c.Path, orNone(c.Old), orNone(c.New))
			}
		}
	}
	if s := r.FirstStateDiff; s != nil && r.Conversion == nil && (r.First == nil || s.Seq != r.First.Seq) {
		fmt.Fprintf(w, "states first differ after record #%d:\n", s.Seq)
		for _, c := range s.Changes {
			fmt.Fprintf(w, "    %s: %s → %s\n", c.Path, orNone(c.Old), orNone(c.New))
		}
	}
	if nd := r.NotReproduced; nd != nil {
		fmt.Fprintf(w, "✗ the recorded build does not reproduce the history, so the candidate was judged only before record #%d\n", nd.Seq)
		printNondeterminism(w, nd)
	}
	if u := r.Unstable; u != nil {
		fmt.Fprintf(w, "✗ the candidate's output varies between runs: two runs of it on records #%d..#%d differ", u.From, u.Until)
		if u.First != nil || u.Second != nil {
			fmt.Fprintf(w, " at message %d\n    first run:  %s\n    second run: %s\n", u.Index+1, messageOrNothing(u.First), messageOrNothing(u.Second))
		} else {
			fmt.Fprintln(w, " in their states:")
			for _, c := range u.State {
				fmt.Fprintf(w, "    %s: %s → %s\n", c.Path, orNone(c.Old), orNone(c.New))
			}
		}
		printCauses(w, u.Causes)
	}
	if !r.Diverged() {
		if upgrade {
			fmt.Fprintln(w, "✓ the new version takes over: same messages, and its state after replay is its conversion of the recorded one")
		} else {
			fmt.Fprintln(w, "✓ no divergence")
		}
	}
	fmt.Fprintln(w)
}

// printNondeterminism prints a history its build does not reproduce: the
// record, its input, the first message that differs, the likely causes.
func printNondeterminism(w io.Writer, nd *retro.Nondeterminism) {
	fmt.Fprintf(w, "  nondeterminism at record #%d", nd.Seq)
	if !nd.Time.IsZero() {
		fmt.Fprintf(w, ", logged %s", nd.Time.Format(time.RFC3339Nano))
	}
	fmt.Fprintln(w)
	if nd.Input != nil {
		printInput(w, nd.Input.Messages)
	}
	fmt.Fprintf(w, "  message %d of the output stream:\n", nd.Message)
	fmt.Fprintf(w, "    now:    %s\n", messageOrNothing(nd.Now))
	if nd.Logged != nil {
		fmt.Fprintf(w, "    logged: %s  (%s)\n", nd.Logged, nd.LoggedIn)
	} else {
		fmt.Fprintf(w, "    logged: %s\n", nd.LoggedIn)
	}
	fmt.Fprintf(w, "  %s\n", nd.Detail)
	printCauses(w, nd.Causes)
}

func printInput(w io.Writer, msgs []logview.MessageView) {
	for _, m := range msgs {
		from := m.From
		if m.FromSeq != 0 {
			from = fmt.Sprintf("%s:%d", m.From, m.FromSeq)
		}
		name := m.MethodName
		if m.Result {
			name = "result"
		}
		fmt.Fprintf(w, "  input: %s %s %s %s%s\n", from, m.Kind, name, m.Args, m.ArgsHex)
	}
}

func printCauses(w io.Writer, causes []string) {
	fmt.Fprintln(w, "  likely causes:")
	for _, c := range causes {
		fmt.Fprintf(w, "    - %s\n", c)
	}
}

func messageOrNothing(m *retro.Message) string {
	if m == nil {
		return "(nothing)"
	}
	return m.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// JUnit XML, the shape CI systems read.
type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Classname string        `xml:"classname,attr"`
	Name      string        `xml:"name,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitProblem `xml:"failure,omitempty"`
	Error     *junitProblem `xml:"error,omitempty"`
}

type junitProblem struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

func writeJUnit(path string, results []retroResult, candidate string, upgrade bool) error {
	what := "retro-test"
	if upgrade {
		what = "upgrade-test"
	}
	suites := junitSuites{Name: "ambr " + what}
	for i := range results {
		r := &results[i]
		c := junitCase{Classname: "ambr." + what, Name: fmt.Sprintf("%s against %s", r.Name, candidate)}
		s := junitSuite{Name: r.Name, Tests: 1}
		switch {
		case r.conversionFailed:
			c.Failure = &junitProblem{Message: r.err.Error(), Type: "conversion failed"}
			s.Failures, suites.Failures = 1, suites.Failures+1
		case r.err != nil:
			c.Error = &junitProblem{Message: r.err.Error(), Type: "could not run"}
			s.Errors, suites.Errors = 1, suites.Errors+1
		case r.Diverged():
			var text strings.Builder
			printRetro(&text, r, candidate, upgrade)
			msg := "the states differ"
			if r.Conversion != nil && !r.Conversion.Matches {
				msg = "the state after replay is not the conversion of the recorded state"
			}
			switch {
			case r.First != nil:
				msg = fmt.Sprintf("first divergence at record %d", r.First.Seq)
			case r.NotReproduced != nil:
				msg = fmt.Sprintf("the recorded build does not reproduce the history at record %d", r.NotReproduced.Seq)
			case r.Unstable != nil:
				msg = fmt.Sprintf("the candidate's output varies between runs (records %d..%d)", r.Unstable.From, r.Unstable.Until)
			}
			c.Failure = &junitProblem{Message: msg, Type: "divergence", Text: text.String()}
			s.Failures, suites.Failures = 1, suites.Failures+1
		}
		if r.Report != nil {
			if d, err := time.ParseDuration(r.Duration); err == nil {
				c.Time = fmt.Sprintf("%.3f", d.Seconds())
				s.Time = c.Time
			}
		}
		s.Cases = []junitCase{c}
		suites.Suites = append(suites.Suites, s)
		suites.Tests++
	}
	b, err := xml.MarshalIndent(suites, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append([]byte(xml.Header), append(b, '\n')...), 0o644)
}

// printConversion shows an upgrade test's conversion: the old state next to
// the converted one, as a structural diff, and how the state the new code
// reaches by replay compares.
func printConversion(w io.Writer, c *upgrade.Conversion) {
	st := newCLIStyles(w)
	fmt.Fprintf(w, "conversion at checkpoint %d (the state after record #%d), %s → %s:\n", c.Checkpoint, c.Seq, orUnnamed(c.OldType), orUnnamed(c.NewType))
	fmt.Fprintf(w, "  old:       %s\n  converted: %s\n", compactJSON(c.OldState), compactJSON(c.ConvertedState))
	if len(c.Diff) == 0 {
		fmt.Fprintln(w, "  (the same state)")
	}
	for _, d := range c.Diff {
		switch {
		case d.Old == "":
			fmt.Fprintf(w, "  %s\n", st.diffLine(fmt.Sprintf("+ %s = %s", d.Path, d.New)))
		case d.New == "":
			fmt.Fprintf(w, "  %s\n", st.diffLine(fmt.Sprintf("- %s (was %s)", d.Path, d.Old)))
		default:
			fmt.Fprintf(w, "  ~ %s: %s → %s\n", d.Path, d.Old, d.New)
		}
	}
	switch {
	case c.FirstDiff != nil:
		fmt.Fprintf(w, "  %s\n", st.Bad.Render(fmt.Sprintf("✗ after record #%d the state the new code reached by replay is not its conversion of the recorded state (converted → replayed):", c.FirstDiff.Seq)))
		for _, d := range c.FirstDiff.Changes {
			fmt.Fprintf(w, "    %s: %s → %s\n", d.Path, orNone(d.Old), orNone(d.New))
		}
	case c.StatesCompared > 0:
		fmt.Fprintf(w, "  %s\n", st.Good.Render(fmt.Sprintf("✓ the state the new code reaches by replay is its conversion of the recorded state (compared %d times)", c.StatesCompared)))
	}
}

func orUnnamed(typ string) string {
	if typ == "" {
		return "(unnamed type)"
	}
	return typ
}

func compactJSON(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	s := buf.String()
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
