package tui

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/exp/teatest"
	"github.com/google/go-cmp/cmp"
	"github.com/muesli/termenv"
	"go.uber.org/goleak"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/internal/testbin"
)

// The tests drive the real model in a real Bubble Tea program (teatest)
// with key presses, over synthetic counter-server histories replayed by
// the real counter server, and read the screen as the user would.

// plainRenderer renders without colour or attributes, so views compare as
// text.
func plainRenderer() *lipgloss.Renderer {
	r := lipgloss.NewRenderer(io.Discard, termenv.WithProfile(termenv.Ascii))
	r.SetColorProfile(termenv.Ascii)
	r.SetHasDarkBackground(true)
	return r
}

// testHome makes a home in a fresh directory, which becomes the working
// directory (so views say ".ambr", whatever the temporary path): "server",
// 3000 records in segments of 700, replayable with the counter server; and
// "legacy", 50 records whose build was not kept.
func testHome(t *testing.T) string {
	t.Helper()
	app := counterServer(t) // before leaving the module's directory
	t.Chdir(t.TempDir())
	writeCounterLog(t, filepath.Join(".ambr", "server"), 3000, 700, app)
	writeCounterLog(t, filepath.Join(".ambr", "legacy"), 50, 1000, "")
	return ".ambr"
}

// viewQuery asks the program for the current view.
type viewQuery chan string

// probe wraps the model to answer viewQuery in the program's goroutine:
// tests read exactly what View draws, between two messages.
type probe struct{ m *Model }

func (p probe) Init() tea.Cmd { return p.m.Init() }

func (p probe) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	if q, ok := msg.(viewQuery); ok {
		q <- p.m.View()
		return p, nil
	}
	_, cmd := p.m.Update(msg)
	return p, cmd
}

func (p probe) View() string { return p.m.View() }

// tuiSession is a running TUI under test.
type tuiSession struct {
	t    *testing.T
	tm   *teatest.TestModel
	m    *Model
	last string
}

func startTUI(t *testing.T, opts Options, w, h int) *tuiSession {
	t.Helper()
	opts.Renderer = plainRenderer()
	m := New(opts)
	tm := teatest.NewTestModel(t, probe{m}, teatest.WithInitialTermSize(w, h))
	s := &tuiSession{t: t, tm: tm, m: m}
	t.Cleanup(func() {
		tm.Quit()
		tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
		m.Close()
	})
	return s
}

// press sends keys: names Bubble Tea uses (enter, esc, tab, ctrl+d,
// ctrl+u, pgdown), or text typed a character at a time.
func (s *tuiSession) press(keys ...string) {
	for _, k := range keys {
		switch k {
		case "enter":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyEnter})
		case "esc":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyEsc})
		case "tab":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyTab})
		case "ctrl+d":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyCtrlD})
		case "ctrl+u":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyCtrlU})
		case "pgdown":
			s.tm.Send(tea.KeyMsg{Type: tea.KeyPgDown})
		default:
			for _, r := range k {
				s.tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}})
			}
		}
	}
}

// view returns the current view.
func (s *tuiSession) view() string {
	q := make(viewQuery, 1)
	s.tm.Send(q)
	select {
	case v := <-q:
		return v
	case <-time.After(10 * time.Second):
		s.t.Fatal("the program did not answer within 10s")
		return ""
	}
}

// waitFor waits until the view shows every one of want, and returns it.
func (s *tuiSession) waitFor(want ...string) string {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v := s.view()
		missing := ""
		for _, w := range want {
			if !strings.Contains(v, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			s.last = v
			return v
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the view never showed %q; it shows:\n%s", missing, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// golden compares the view with testdata/<test name>/<name>.golden, without
// trailing blanks; go test ./tui -update (teatest's golden flag) rewrites
// them.
func (s *tuiSession) golden(name, view string) {
	s.t.Helper()
	lines := strings.Split(view, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	got := strings.Join(lines, "\n") + "\n"
	s.t.Run(name, func(t *testing.T) {
		path := filepath.Join(pkgDir, "testdata", t.Name()+".golden")
		if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./tui -run %s -update writes it)", err, t.Name())
		}
		if diff := cmp.Diff(string(want), got); diff != "" {
			t.Errorf("the view differs from %s (-want +got):\n%s\ngot:\n%s", path, diff, got)
		}
	})
}

// row returns the list row of record seq in view ("" if not shown).
func row(view string, seq int) string {
	re := regexp.MustCompile(`(?m)^.{3} #` + strconv.Itoa(seq) + ` .*$`)
	return re.FindString(view)
}

// TestOpenAndScroll: from the instances to a log, scrolled every way, and
// back.
func TestOpenAndScroll(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home}, 80, 24)
	s.waitFor("instances under .ambr", "legacy", "server", "3000")
	s.press("j", "enter")
	s.waitFor("records 1–3000", "state after #1", `"count": 0`, "initial from server", "checkpoint 1: the state before #1")
	s.press("j", "j", "j", "j", "j")
	v := s.waitFor("#6 of 1–3000", "state after #6", `"count": 5`, `"n": 6`)
	if !strings.HasPrefix(row(v, 6), "▸") {
		t.Fatalf("the cursor is not on #6:\n%s", v)
	}
	// Keys that arrive in one read (typed fast) each count.
	s.tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("jjk")})
	s.waitFor("#7 of 1–3000")
	s.press("k")
	s.waitFor("#6 of 1–3000")
	s.press("ctrl+d") // half of the 9 rows
	s.waitFor("#10 of 1–3000", `"count": 9`)
	s.press("pgdown")
	s.waitFor("#19 of 1–3000", `"count": 18`)
	s.press("G")
	v = s.waitFor("#3000 of 1–3000", `"count": 2999`, "sent while handling it: 1", "→ client fork result 2999")
	if row(v, 2992) == "" || row(v, 2999) == "" {
		t.Fatalf("the last page is not shown:\n%s", v)
	}
	s.press("ctrl+u")
	s.waitFor("#2996 of 1–3000")
	s.press("g")
	s.waitFor("#1 of 1–3000", `"count": 0`)
	s.press("esc")
	s.waitFor("instances under .ambr")
}

// TestStepAndDiff: the state follows the cursor through time: after record
// r the counter's count is r-1; stepping back replays from the checkpoint
// (or a snapshot); d diffs the mark and the cursor.
func TestStepAndDiff(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "server")}, 80, 24)
	s.waitFor("state after #1", `"count": 0`)
	s.press(":", "100", "enter")
	s.waitFor("#100 of 1–3000", "state after #100", `"count": 99`)
	s.press("m")
	s.waitFor("marked #100")
	s.press("]")
	s.waitFor("state after #101", `"count": 100`, "sent while handling it: 1", "→ client fork result 100")
	s.press("]", "]")
	s.waitFor("state after #103", `"count": 102`)
	s.press("[")
	s.waitFor("state after #102", `"count": 101`)
	s.press("[", "[", "[")
	s.waitFor("state after #99", `"count": 98`)
	s.press(":", "102", "enter")
	s.waitFor("#102 of")
	s.press("d")
	v := s.waitFor("diff from #100", "changes from #100 to #102: 1", "~ count: 99 → 101")
	if !strings.Contains(row(v, 100), "m") {
		t.Fatalf("the mark is not flagged on #100's row:\n%s", v)
	}
	// The diff follows the cursor.
	s.press("]")
	s.waitFor("changes from #100 to #103: 1", "~ count: 99 → 102")
	s.press("esc") // diff off
	v = s.waitFor("state after #103")
	if strings.Contains(v, "changes from") {
		t.Fatalf("esc did not hide the diff:\n%s", v)
	}
}

// TestFilterAndSearch: a filter shows only the matching records, counted
// ("match 1/428"); c shows all records with the matches flagged; n/N go
// from match to match and wrap around the log.
func TestFilterAndSearch(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "server")}, 80, 24)
	s.waitFor("state after #1")
	s.press("/", "peer:client2", "enter")
	// client2 makes every 7th call: #7, #14, … #2996.
	v := s.waitFor("#7 of 1–3000", "match 1/428", "records matching peer:client2: 428 of 3000")
	if r := row(v, 7); !strings.HasPrefix(r, "▸") {
		t.Fatalf("the cursor is not on #7: %q\n%s", r, v)
	}
	if row(v, 14) == "" || row(v, 21) == "" || row(v, 8) != "" || row(v, 1) != "" {
		t.Fatalf("only the matches (#7, #14, #21, …) should be listed:\n%s", v)
	}
	s.press("j")
	s.waitFor("#14 of 1–3000", "match 2/428", `"n": 14`)
	s.press("G")
	s.waitFor("#2996 of 1–3000", "match 428/428")
	s.press("g", "[") // step back from the first match: stays on it
	s.waitFor("#7 of 1–3000", "match 1/428")
	s.press("c")
	v = s.waitFor("all records, matches flagged", "records 1–3000 · * matches peer:client2", "match 1/428", "▸*  #7 ")
	if r := row(v, 7); !strings.HasPrefix(r, "▸*") {
		t.Fatalf("#7 is not flagged as the selected match: %q\n%s", r, v)
	}
	if r := row(v, 8); r == "" || strings.Contains(r[:3], "*") {
		t.Fatalf("#8 should be shown, as context, without the match flag: %q\n%s", r, v)
	}
	s.press("n")
	v = s.waitFor("match #14", "#14 of", `"n": 14`)
	if r := row(v, 14); !strings.HasPrefix(r, "▸*") {
		t.Fatalf("#14 is not flagged as the selected match: %q\n%s", r, v)
	}
	if r := row(v, 13); r == "" || strings.Contains(r, "*") {
		t.Fatalf("#13 should be shown, as context, without the match flag: %q\n%s", r, v)
	}
	s.press("N")
	s.waitFor("match #7", "#7 of")
	s.press("N")
	s.waitFor("match #2996 (wrapped)", "#2996 of")
	s.press("n")
	s.waitFor("match #7 (wrapped)", "#7 of")
	// Text of the decoded arguments, and expressions.
	s.press("/", "ctrl+u", `"n":1234`, "enter")
	s.waitFor("match #1234", "#1234 of", `"n": 1234`)
	s.press("/", "ctrl+u", `re:"n":12(34|50)\b`, "enter")
	s.waitFor("match #1234", "filter re:")
	s.press("n")
	s.waitFor("match #1250")
	s.press("/", "ctrl+u", "method:Nope", "enter")
	s.waitFor(`no record matches "method:Nope"`)
	s.press("esc")
	v = s.waitFor("filter cleared")
	if strings.Contains(v, "filter method") {
		t.Fatalf("the filter is still on:\n%s", v)
	}
}

// TestJump: every form of point.
func TestJump(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "server"), StateDelay: -1}, 80, 24)
	s.waitFor("records 1–3000", "not replayed yet")
	// Text that arrives in one read goes to the prompt a key at a time
	// (whole, "end" would read as the End key).
	s.press("g", ":")
	s.tm.Send(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune("end")})
	s.press("enter")
	s.waitFor("#3000 of", "end is #3000")
	for _, c := range []struct{ point, want string }{
		{"seq:2500", "#2500 of"},
		{"checkpoint:1+10", "#10 of"},
		{"2026-11-21T12:00:01.5Z", "#1500 of"},
		{"end", "#3000 of"},
		{"42", "#42 of"},
	} {
		s.press(":", c.point, "enter")
		s.waitFor(c.want, c.point+" is ")
	}
	s.press(":", "nonsense", "enter")
	s.waitFor(`bad point "nonsense"`)
	s.press(":", "4000", "enter")
	s.waitFor("the log holds records up to 3000")
	// With StateDelay < 0 only [ ] and enter replay.
	s.press("]")
	s.waitFor("state after #43", `"count": 42`)
}

// TestNoBuild: without a kept build the log is browsed all the same, and
// the state pane says why there is no state.
func TestNoBuild(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "legacy")}, 80, 24)
	s.waitFor("records 1–50", "no state: no app build to replay with")
	s.press("j")
	s.waitFor("#2 of 1–50", "call Inc from client:1", `"n": 2`, "sent: unknown without a replay")
}

// TestFollow: f picks up records as they are logged.
func TestFollow(t *testing.T) {
	home := testHome(t)
	dir := filepath.Join(home, "server")
	s := startTUI(t, Options{Home: home, Instance: dir, StateDelay: -1, FollowEvery: 50 * time.Millisecond}, 80, 24)
	s.waitFor("records 1–3000")
	s.press("G", "f")
	s.waitFor("following")
	appendRecords(t, dir, 3001, 3010, 100)
	s.waitFor("records 1–3010", "#3010 of 1–3010")
	appendRecords(t, dir, 3011, 3020, 100)
	s.waitFor("#3020 of 1–3020")
	// Away from the end, the cursor stays put while records arrive.
	s.press("k")
	s.waitFor("#3019 of 1–3020")
	appendRecords(t, dir, 3021, 3030, 100)
	s.waitFor("#3019 of 1–3030")
	s.press("f")
	v := s.waitFor("stopped following")
	if strings.Contains(strings.SplitN(v, "\n", 2)[0], "following") {
		t.Fatalf("the header still says following:\n%s", v)
	}
}

// TestMenuAndHelp: enter offers actions on the record; retro-test is there,
// disabled, saying how to enable it (a candidate build).
func TestMenuAndHelp(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "server")}, 80, 24)
	s.waitFor("state after #1")
	s.press("?")
	s.waitFor("keys (? or esc closes)", "next match", "step back", "quit")
	s.press("?")
	s.press("j", "enter")
	s.waitFor("actions on #2", "retro-test a build up to here", "(needs ambr tui --candidate APP)", "debug this record's handler (Delve)")
	s.press("j", "j", "enter")
	s.waitFor("retro-test a build up to here: needs ambr tui --candidate APP")
	s.press("esc", "enter", "j", "enter") // mark #2 from the menu
	s.waitFor("marked #2")
	s.press("q")
	s.tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
}

// TestGolden: the views at 80x24, 120x40 (side by side, the list as wide
// as its columns need) and 160x48.
func TestGolden(t *testing.T) {
	for _, size := range []struct{ w, h int }{{80, 24}, {120, 40}, {160, 48}} {
		t.Run(fmt.Sprintf("%dx%d", size.w, size.h), func(t *testing.T) {
			home := testHome(t)
			s := startTUI(t, Options{Home: home}, size.w, size.h)
			s.golden("instances", s.waitFor("legacy", "server", "3000"))
			s.press("j", "enter")
			s.golden("log", s.waitFor("state after #1", `"count": 0`, "initial from server", "sent while handling it: 0"))
			s.press(":", "100", "enter")
			s.waitFor("#100 of")
			s.press("m", "]", "]", "d")
			s.golden("diff", s.waitFor("changes from #100 to #102: 1", "sent while handling it: 1", `"n": 102`))
			s.press("d", "/", "peer:client2", "enter")
			s.waitFor("match #105")
			s.press("n")
			s.golden("filter", s.waitFor("match #112", "sent while handling it: 1", `"n": 112`, `"count": 111`, "#133   12:00:00.133"))
			s.press("enter")
			s.golden("menu", s.waitFor("actions on #112"))
			s.press("esc", "esc", "?")
			s.golden("help", s.waitFor("keys (? or esc closes)"))
			s.press("esc", "tab", "tab", "G")
			s.golden("state-focused", s.waitFor("▸ state after #112"))
			s.press("esc", "esc")
			s.waitFor("instances under")
			s.press("g", "enter")
			s.golden("nobuild", s.waitFor("no state:", "initial from legacy"))
			if !sameWidth(s.view(), size.w) {
				t.Errorf("some line is not %d cells wide", size.w)
			}
		})
	}
}

func sameWidth(view string, w int) bool {
	for _, l := range strings.Split(view, "\n") {
		if lipgloss.Width(l) != w {
			return false
		}
	}
	return true
}

// pkgDir is the package's directory (tests move to temporary ones).
var pkgDir string

func TestMain(m *testing.M) {
	var err error
	if pkgDir, err = os.Getwd(); err != nil {
		panic(err)
	}
	code := m.Run()
	if code == 0 {
		// Nothing the TUI started may outlive it (teatest's own signal
		// watcher aside).
		if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/charmbracelet/x/exp/teatest.NewTestModel.func2")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	testbin.Clean()
	if benchTemp != "" {
		os.RemoveAll(benchTemp)
	}
	os.Exit(code)
}

// TestActionCommands: the menu's actions run ambr as a user would type it,
// in a shell that waits for enter afterwards.
func TestActionCommands(t *testing.T) {
	cmd := ambrCommand("/usr/bin/ambr", "/h", "replay", "/h/server", "--until", "7", "--debug", "--wait")
	want := []string{"sh", "-c", `trap : INT; printf '\033[H\033[2J'; "$0" "$@"; printf '\n(enter returns to ambr tui) '; read _`, "/usr/bin/ambr", "--home", "/h", "replay", "/h/server", "--until", "7", "--debug", "--wait"}
	if strings.Join(cmd.Args, "|") != strings.Join(want, "|") {
		t.Fatalf("command %q\nwant %q", cmd.Args, want)
	}
	// The debug action replays with the build ambr tui --app named.
	b := New(Options{AppSource: "./samples/counter/server"}).newBrowserFor("/h/server")
	if got, want := strings.Join(b.debugArgs("7"), " "), "replay /h/server --until 7 --debug --wait --no-cache --app ./samples/counter/server"; got != want {
		t.Errorf("debug action: ambr %s\nwant ambr %s", got, want)
	}
	b = New(Options{}).newBrowserFor("/h/server")
	if got := strings.Join(b.debugArgs("7"), " "); strings.Contains(got, "--app") {
		t.Errorf("debug action without --app: ambr %s", got)
	}
	// The shell passes the arguments through untouched.
	out, err := exec.Command("sh", "-c", `"$0" "$@"`, "echo", "a b", "c").Output()
	if err != nil || string(out) != "a b c\n" {
		t.Fatalf("sh passes %q, %v", out, err)
	}
}

// newBrowserFor is a browser on dir with m's options, not opened.
func (m *Model) newBrowserFor(dir string) *browserModel { return newBrowserModel(m.c, dir) }

// TestInstancesRefreshThemselves: an instance that appears under the home
// shows in the list without r.
func TestInstancesRefreshThemselves(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, RefreshEvery: 20 * time.Millisecond}, 80, 24)
	s.waitFor("legacy", "server", "2 instances")
	writeCounterLog(t, filepath.Join(home, "newcomer"), 5, 1000, "")
	s.waitFor("newcomer", "3 instances")
	s.press("q")
	s.tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
}

// TestFilterPromptStartsEmpty: / opens an empty prompt (the current filter
// shown as its placeholder); what is typed replaces the filter, and esc
// keeps the old one.
func TestFilterPromptStartsEmpty(t *testing.T) {
	home := testHome(t)
	s := startTUI(t, Options{Home: home, Instance: filepath.Join(home, "server")}, 80, 24)
	s.waitFor("state after #1")
	s.press("/", "peer:client2", "enter")
	s.waitFor("match #7", "matching peer:client2")
	s.press("/")
	s.waitFor("a new filter (now: peer:client2; esc keeps it)")
	s.press("esc")
	s.waitFor("matching peer:client2")
	s.press("/", "method:Inc", "enter")
	v := s.waitFor("matching method:Inc")
	if strings.Contains(v, "peer:client2method") {
		t.Fatalf("the new filter was appended to the old one:\n%s", v)
	}
	s.press("q")
	s.tm.WaitFinished(t, teatest.WithFinalTimeout(10*time.Second))
}

func TestReplicaRoles(t *testing.T) {
	rs := []supervise.ReplicaStatus{{Replica: 2, Role: "checkpointer"}, {Replica: 0, Role: "standby"}, {Replica: 1, Role: "primary"}, {Replica: 3, Role: "standby"}}
	if got, want := replicaRoles(rs), " · primary 1; standbys 0, 3; checkpointer 2"; got != want {
		t.Fatalf("replicaRoles = %q, want %q", got, want)
	}
	if got := replicaRoles(nil); got != "" {
		t.Fatalf("replicaRoles(nil) = %q", got)
	}
}
