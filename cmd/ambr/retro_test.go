package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func goBuild(t *testing.T, out, pkg string, args ...string) string {
	t.Helper()
	path := filepath.Join(filepath.Dir(builtBins.ambr), out)
	cmd := exec.Command("go", append(append([]string{"build", "-o", path}, args...), pkg)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	return path
}

type retroJSON struct {
	Diverged bool
	Reports  []struct {
		Name      string
		Records   int64
		Divergent int64
		Error     string
		First     *struct {
			Seq      int64
			Expected []struct {
				Method, Payload string
				Result          bool
			}
			Actual []struct {
				Method, Payload string
				Result          bool
			}
			Diff []string
		}
		NotReproduced *struct {
			Seq         int64
			Now, Logged *struct{ Method, Payload string }
			LoggedIn    string `json:"logged_in"`
			Causes      []string
		} `json:"not_reproduced"`
		Unstable *struct {
			From, Until, Index int64
			First, Second      *struct{ Method, Payload string }
		}
	}
}

func runRetroJSON(t *testing.T, home string, args ...string) (retroJSON, int, string) {
	t.Helper()
	out, code, stderr := ambrExec(t, append([]string{"--home", home, "retro-test", "--json"}, args...)...)
	var res retroJSON
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("retro-test --json: %v\n%s\n%s", err, out, stderr)
	}
	return res, code, stderr
}

// TestRetroCounter records a counter server run and retro-tests candidates
// against it: the same build (no divergence), a build with a bug from the
// 50th Inc() on (exit 1, the record of the 50th Inc() named with expected
// and actual results), and candidates that read the wall clock or depend on
// map iteration order (caught at the record where they first differ).
func TestRetroCounter(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	buggy := goBuild(t, "server-buggy", "../../samples/counter/server-buggy")
	wallclock := goBuild(t, "wallclock", "../../retro/testdata/wallclock")
	const k = 60
	server := recordCounter(t, k)
	home := server.home

	res, code, stderr := runRetroJSON(t, home, "server", "--candidate", counterBins.server)
	if code != 0 || res.Diverged || res.Reports[0].Divergent != 0 || res.Reports[0].Records != k+1 {
		t.Fatalf("same build: exit %d, %+v\n%s", code, res, stderr)
	}

	junit := filepath.Join(t.TempDir(), "retro.xml")
	res, code, stderr = runRetroJSON(t, home, "server", "--candidate", buggy, "--junit", junit)
	r := res.Reports[0]
	// Record 1 is the InitialMessage; record 51 holds the 50th Inc().
	if code != 1 || r.First == nil || r.First.Seq != 51 || r.Divergent != k+1-50 {
		t.Fatalf("buggy: exit %d, %+v\n%s", code, r, stderr)
	}
	if len(r.First.Expected) != 1 || r.First.Expected[0].Payload != "50" || len(r.First.Actual) != 1 || r.First.Actual[0].Payload != "1050" {
		t.Fatalf("buggy: expected/actual at the first divergence: %+v", r.First)
	}
	var suites struct {
		XMLName  xml.Name `xml:"testsuites"`
		Failures int      `xml:"failures,attr"`
		Suites   []struct {
			Cases []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	b, err := os.ReadFile(junit)
	if err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatalf("--junit is not valid XML: %v\n%s", err, b)
	}
	if suites.Failures != 1 || len(suites.Suites) != 1 || suites.Suites[0].Cases[0].Failure == nil ||
		suites.Suites[0].Cases[0].Failure.Message != "first divergence at record 51" || !strings.Contains(suites.Suites[0].Cases[0].Failure.Text, "+ → client fork result 1050") {
		t.Fatalf("JUnit report: %s", b)
	}

	// The text report as a user reads it.
	out, _ := exec.Command(builtBins.ambr, "--home", home, "retro-test", "server", "--candidate", buggy).Output()
	for _, want := range []string{"first divergence: record #51", "input: client:50 call Inc {}", "- → client fork result 50", "+ → client fork result 1050"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("report lacks %q:\n%s", want, out)
		}
	}

	res, code, _ = runRetroJSON(t, home, "server", "--candidate", wallclock)
	if code != 1 || res.Reports[0].First == nil || res.Reports[0].First.Seq != 2 {
		t.Fatalf("wall clock candidate: exit %d, first %+v", code, res.Reports[0].First)
	}

	// A history its recorded build does not reproduce (here: the buggy build
	// named as the recorded one): exit 1, naming record 51, what the build
	// sends now and what the client logged, decoded.
	res, code, stderr = runRetroJSON(t, home, "server", "--candidate", counterBins.server, "--recorded", buggy)
	nd := res.Reports[0].NotReproduced
	if code != 1 || !res.Diverged || nd == nil || nd.Seq != 51 || nd.Now == nil || nd.Now.Payload != "1050" || nd.Logged == nil || nd.Logged.Payload != "50" ||
		!strings.HasPrefix(nd.LoggedIn, "client's log, record ") || len(nd.Causes) == 0 {
		t.Fatalf("not reproduced: exit %d, %+v\n%s", code, nd, stderr)
	}
	cmd := exec.Command(builtBins.ambr, "--home", home, "retro-test", "server", "--candidate", counterBins.server, "--recorded", buggy)
	out, _ = cmd.Output()
	if cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("not reproduced, text: exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
	golden(t, "retro_not_reproduced.golden", maskReport(string(out), home, filepath.Dir(builtBins.ambr)))

	// A candidate whose second run sends other messages than its first
	// (which matches the history): caught by running it twice.
	unstable := goBuild(t, "unstable", "../../retro/testdata/unstable")
	cmd = exec.Command(builtBins.ambr, "--home", home, "retro-test", "server", "--candidate", unstable, "--json")
	cmd.Env = append(os.Environ(), "UNSTABLE_MARKER="+filepath.Join(t.TempDir(), "first-run"))
	out, _ = cmd.Output()
	res = retroJSON{}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("unstable: %v\n%s", err, out)
	}
	u := res.Reports[0].Unstable
	if cmd.ProcessState.ExitCode() != 1 || res.Reports[0].Divergent != 0 || u == nil || u.From != 1 || u.Index != 0 ||
		u.First == nil || u.First.Payload != "1" || u.Second == nil || u.Second.Payload != "1000" {
		t.Fatalf("unstable candidate: exit %d, %s", cmd.ProcessState.ExitCode(), out)
	}
}

// maskReport replaces what varies from run to run in a report (paths,
// logged times, durations, digests) with fixed words, for golden files.
func maskReport(s, home, bins string) string {
	s = strings.ReplaceAll(s, home, "$HOME")
	s = strings.ReplaceAll(s, bins, "$BIN")
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`\d{4}-\d\d-\d\dT[0-9:.]+Z`),
		regexp.MustCompile(`— [0-9.]+[µm]?s`),
		regexp.MustCompile(`[0-9a-f]{16}`),
	} {
		s = re.ReplaceAllStringFunc(s, func(m string) string {
			switch {
			case strings.HasPrefix(m, "—"):
				return "— DURATION"
			case strings.Contains(m, "T"):
				return "TIME"
			}
			return "DIGEST"
		})
	}
	return s
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *updateScripts {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run %s -update writes it)", err, t.Name())
	}
	if got != string(want) {
		t.Fatalf("output differs from %s (-update rewrites it):\n--- want\n%s\n--- got\n%s", path, want, got)
	}
}

// TestRetroMapOrder records a run with a build that sorts map keys before
// sending, then retro-tests the same code built without sorting: its
// messages follow Go's random map order and the first record is caught.
func TestRetroMapOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	sortedBin := goBuild(t, "maporder-sorted", "../../retro/testdata/maporder", "-ldflags", "-X main.sorted=yes")
	randomBin := goBuild(t, "maporder-random", "../../retro/testdata/maporder")
	const k = 10
	home := t.TempDir()
	server := newInst(t, home, "server", sortedBin)
	client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", "10")
	t.Cleanup(func() { client.stop(); server.stop() })
	server.start()
	client.start()
	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()
	res, code, stderr := runRetroJSON(t, home, "server", "--candidate", randomBin)
	if code != 1 || res.Reports[0].First == nil || res.Reports[0].First.Seq != 2 {
		t.Fatalf("map order candidate: exit %d, %+v\n%s", code, res.Reports[0], stderr)
	}
}

// TestRecoveryNondeterminism runs a server that reads the wall clock in its
// handler, kills its app, and checks that the coordinator's replay notices
// the app no longer does what the log recorded: with the default policy it
// stops, naming the record; with --nondeterminism warn it says so and goes on.
func TestRecoveryNondeterminism(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	wallclock := goBuild(t, "wallclock", "../../retro/testdata/wallclock")
	for _, policy := range []string{"stop", "warn"} {
		home := t.TempDir()
		server := newInst(t, home, "server", wallclock)
		server.extra = []string{"--nondeterminism", policy}
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", "1000")
		t.Cleanup(func() { client.stop(); server.stop() })
		server.start()
		client.start()
		progress(t, server, 20)
		server.killApp()
		if policy == "stop" {
			select {
			case <-server.done:
			case <-time.After(30 * time.Second):
				t.Fatal("the coordinator did not stop on a nondeterministic replay")
			}
			out := server.out.String()
			// The record, its input and the message sent now, decoded.
			report := regexp.MustCompile(`nondeterminism: replaying record (\d+) \(logged [^;]+; input: client:(\d+) call Inc \{\}\), the app sent other messages than it did when the record was first processed: message (\d+) of its output is now → client fork result (\d+)`)
			m := report.FindStringSubmatch(out)
			if server.cmd.ProcessState.ExitCode() != 1 || m == nil || !strings.Contains(out, "likely causes: the wall clock read in a handler") {
				t.Fatalf("stop policy: exit %d, output:\n%s", server.cmd.ProcessState.ExitCode(), out)
			}
			// Record r holds the (r-1)th Inc, the (r-1)th message sent;
			// the wall-clock server never answers the count alone.
			if m[2] != fmt.Sprint(atoi(t, m[1])-1) || m[3] != m[2] || m[4] == m[2] {
				t.Fatalf("stop policy: the report names record %s, input client:%s, message %s, result %s:\n%s", m[1], m[2], m[3], m[4], out)
			}
			// The tools say the same of this history: replay prints the
			// state and exits 1; retro-test names the record (exit 1).
			cmd := exec.Command(builtBins.ambr, "--home", home, "replay", "server", "--until", "end", "--json")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			rout, _ := cmd.Output()
			var rep struct {
				State         struct{ Count int }
				NotReproduced string `json:"not_reproduced"`
			}
			if err := json.Unmarshal(rout, &rep); err != nil || cmd.ProcessState.ExitCode() != 1 || rep.State.Count == 0 ||
				!strings.Contains(rep.NotReproduced, "→ client fork result") || !strings.Contains(stderr.String(), "the recorded build does not reproduce the history of server") {
				t.Fatalf("replay of a history its build does not reproduce: exit %d, %v\n%s\n%s", cmd.ProcessState.ExitCode(), err, rout, stderr.String())
			}
			res, code, errOut := runRetroJSON(t, home, "server", "--candidate", counterBins.server)
			nd := res.Reports[0].NotReproduced
			if code != 1 || nd == nil || nd.Seq < 2 || nd.Now == nil || nd.Logged == nil || nd.Now.Payload == nd.Logged.Payload || !strings.HasPrefix(nd.LoggedIn, "client's log, record ") || !strings.Contains(strings.Join(nd.Causes, "\n"), "wall clock") {
				t.Fatalf("retro-test of a history its build does not reproduce: exit %d, %+v\n%s", code, nd, errOut)
			}
			continue
		}
		// One line for the one cause, with a count, once the replay ends.
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(server.out.String(), "nondeterminism (warn, carrying on)") {
			if time.Now().After(deadline) {
				t.Fatalf("warn policy: no warning; output:\n%s", server.out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case <-server.done:
			t.Fatalf("warn policy: the coordinator stopped:\n%s", server.out.String())
		case <-time.After(200 * time.Millisecond):
		}
		out := server.out.String()
		if n := strings.Count(out, "nondeterminism"); n != 1 || !regexp.MustCompile(`nondeterminism \(warn, carrying on\): \d+ points of the log's output stream, from record \d+ to \d+, replayed differently, the first: replaying record`).MatchString(out) {
			t.Fatalf("warn policy: %d lines about nondeterminism, want one with a count:\n%s", n, out)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestUpgradeTest checks `ambr upgrade test` on a recorded counter server:
// server-v2 takes over the state (converted to its new layout, shown next
// to the old one) and history with no divergence, and its state after
// replay is its conversion of the recorded one; a candidate whose
// conversion drops a field (every message still right) is caught by that
// comparison (exit 1, in --json too); a build without a next version, and
// one whose conversion fails, are reported with the reason (exit 1).
func TestUpgradeTest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	v2 := goBuild(t, "server-v2", "../../samples/counter/server-v2")
	bad := goBuild(t, "badupgrade", "../../retro/testdata/badupgrade")
	drop := goBuild(t, "dropfield", "./testdata/upgrade/dropfield")
	const k = 30
	server := recordCounter(t, k)
	run := func(candidate string, flags ...string) (string, int) {
		cmd := exec.Command(builtBins.ambr, append([]string{"--home", server.home, "upgrade", "test", "server", "--candidate", candidate}, flags...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	out, code := run(v2)
	for _, want := range []string{"replayed records 1..31: 31 records, 0 diverged", "✓ the new version takes over",
		`old:       {"count":0}`, `converted: {"value":0,"layout":2}`, "+ value = 0", "- count (was 0)", "✓ the state the new code reaches by replay is its conversion"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("server-v2: exit %d, want 0 and %q\n%s", code, want, out)
		}
	}
	out, code = run(drop)
	if code != 1 || !strings.Contains(out, "0 diverged") || !strings.Contains(out, "total: 0 → 30") || !strings.Contains(out, "not its conversion of the recorded state") {
		t.Fatalf("a conversion that drops a field: exit %d, want 1 naming total\n%s", code, out)
	}
	t.Logf("the dropped field, as reported:\n%s", out)
	jcmd := exec.Command(builtBins.ambr, "--home", server.home, "upgrade", "test", "server", "--candidate", drop, "--json")
	jout, err := jcmd.Output()
	code, out = 0, string(jout)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	}
	var rep struct {
		Diverged bool
		Reports  []struct {
			Divergent  int64
			Conversion struct {
				OldState       map[string]int `json:"old_state"`
				ConvertedState map[string]int `json:"converted_state"`
				Diff           []struct{ Path, Old, New string }
				Matches        bool `json:"replayed_state_matches"`
				FirstDiff      *struct {
					Seq     int64
					Changes []struct{ Path, Old, New string }
				} `json:"first_diff"`
			}
		}
	}
	if err := json.Unmarshal(jout, &rep); err != nil || code != 1 || !rep.Diverged || len(rep.Reports) != 1 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, out)
	}
	c := rep.Reports[0].Conversion
	if _, ok := c.OldState["count"]; !ok || c.ConvertedState["layout"] != 2 || len(c.Diff) == 0 || c.Matches || c.FirstDiff == nil ||
		c.FirstDiff.Seq != k+1 || len(c.FirstDiff.Changes) != 1 || c.FirstDiff.Changes[0].Path != "total" || rep.Reports[0].Divergent != 0 {
		t.Fatalf("--json conversion: %+v", rep.Reports[0])
	}
	out, code = run(counterBins.server)
	if code != 1 || !strings.Contains(out, "the app was not built with immortal.Upgrade") {
		t.Fatalf("a build without a next version: exit %d\n%s", code, out)
	}
	out, code = run(bad)
	if code != 1 || !strings.Contains(out, "converting the state to the next version failed: the new layout needs a field") {
		t.Fatalf("a failing conversion: exit %d\n%s", code, out)
	}
}
