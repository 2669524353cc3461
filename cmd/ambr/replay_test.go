package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/samples/counter/counter"
	"github.com/ambr-dev/ambr/timetravel"
)

// treeHash fingerprints every file under dir (names, sizes, contents), to
// prove a reader wrote nothing.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		lines = append(lines, p+" "+hex.EncodeToString(sum[:]))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// incsUpTo counts the Inc() calls logged in records 1..seq of the log.
func incsUpTo(t *testing.T, dir string) map[int64]int {
	t.Helper()
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	lr, _ := in.NewLogReader(0)
	defer lr.Close()
	counts := map[int64]int{}
	n := 0
	for {
		r, err := lr.Next()
		if err == io.EOF {
			return counts
		}
		if err != nil {
			t.Fatal(err)
		}
		it := logfmt.NewMessageIter(r.Messages)
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			if m.Type == logfmt.TypeRPC {
				n++
			}
		}
		counts[r.Seq] = n
	}
}

// TestReplayCounter replays a recorded counter server at every point of
// its history, forward, backward, and through the CLI, on a read-only
// check of its directory, while it runs and after.
func TestReplayCounter(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 40
	server, client := pair(t, k)
	server.start()
	client.start()
	progress(t, server, k/2)
	// While the server runs: replay to its end so far.
	sess, err := timetravel.Open(timetravel.Options{Dir: server.dir()})
	if err != nil {
		t.Fatal(err)
	}
	live, err := timetravel.Resolve(sess.Instance(), timetravel.Point{Kind: timetravel.PointEnd})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sess.Goto(context.Background(), live); err != nil {
		t.Fatalf("replay while the instance runs: %v", err)
	}
	sess.Close()
	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()

	// A copy pulled elsewhere; nothing under it may change.
	copyDir := filepath.Join(t.TempDir(), "server-copy")
	if out, err := exec.Command("cp", "-a", server.dir(), copyDir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	before := treeHash(t, copyDir)
	counts := incsUpTo(t, copyDir)
	last := int64(len(counts))
	sess, err = timetravel.Open(timetravel.Options{Dir: copyDir})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	ctx := context.Background()
	count := func(c *timetravel.Cursor) int {
		var wrap struct{ State counter.ServerState }
		if err := json.Unmarshal(c.State, &wrap); err != nil {
			t.Fatalf("state after %d: %v", c.Seq, err)
		}
		return wrap.State.Count
	}
	forward := map[int64]int{}
	for seq := int64(1); seq <= last; seq++ {
		c, err := sess.Goto(ctx, seq)
		if err != nil {
			t.Fatalf("goto %d: %v", seq, err)
		}
		forward[seq] = count(c)
		if forward[seq] != counts[seq] {
			t.Fatalf("state after record %d has count %d; %d Inc() calls are logged up to it", seq, forward[seq], counts[seq])
		}
	}
	if forward[last] != k {
		t.Fatalf("the state at the end has count %d, the live server ended at %d", forward[last], k)
	}
	// Step back through every record, then forward again: the same states.
	for seq := last - 1; seq >= 1; seq-- {
		c, err := sess.Step(ctx, -1)
		if err != nil {
			t.Fatalf("step back to %d: %v", seq, err)
		}
		if c.Seq != seq || count(c) != forward[seq] {
			t.Fatalf("stepping back to %d: at %d with count %d, forward it was %d", seq, c.Seq, count(c), forward[seq])
		}
	}
	for seq := int64(2); seq <= last; seq++ {
		c, err := sess.Step(ctx, 1)
		if err != nil || c.Seq != seq || count(c) != forward[seq] {
			t.Fatalf("stepping forward to %d: %v %+v", seq, err, c)
		}
	}
	sess.Close()
	if after := treeHash(t, copyDir); after != before {
		t.Fatalf("time travel changed the instance directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}

	// The CLI, as a user types it.
	out, err := exec.Command(builtBins.ambr, "--home", t.TempDir(), "replay", copyDir, "--until", strconv.FormatInt(last, 10), "--diff", "10", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("ambr replay: %v\n%s", err, out)
	}
	var res struct {
		Seq   int64
		State counter.ServerState
		Sent  []struct{ Dest, Method string }
		Diff  []timetravel.Change
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("ambr replay --json: %v\n%s", err, out)
	}
	if res.Seq != last || res.State.Count != k || len(res.Diff) != 1 || res.Diff[0].Path != "count" {
		t.Fatalf("ambr replay --json gave %+v", res)
	}
	if before != treeHash(t, copyDir) {
		t.Fatal("ambr replay changed the instance directory")
	}
}

// TestReplayDebug runs `ambr replay --debug` on a recorded counter server:
// Delve (built into ambr) stops in the Inc handler of the requested record
// and reports the count as it was before that message.
func TestReplayDebug(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with debug information and runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 12
	server := recordCounter(t, k)
	// Record 1 is the InitialMessage; record r holds the (r-1)th Inc().
	const at = 9
	out, err := exec.Command(builtBins.ambr, "--home", server.home, "replay", "server", "--until", strconv.Itoa(at),
		"--debug", "--wait=false", "--json", "--app", "../../samples/counter/server").Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("ambr replay --debug: %v\n%s%s", err, out, stderr)
	}
	var res struct {
		Seq      int64
		Function string
		File     string
		Args     []struct{ Name, Type, Value string }
		Addr     string
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if res.Seq != at || !strings.HasSuffix(res.Function, "counter.NewServer.func2") || !strings.HasSuffix(res.File, "samples/counter/counter/counter.go") || res.Addr == "" {
		t.Fatalf("stopped at %+v", res)
	}
	var state string
	for _, a := range res.Args {
		if a.Name == "s" {
			state = a.Value
		}
	}
	if want := "{Count: " + strconv.Itoa(at-2) + "}"; !strings.HasSuffix(state, want) {
		t.Fatalf("the handler's state is %q, want the count before record %d: %s", state, at, want)
	}
}

// TestReplayConcurrentReaders runs several `ambr replay`s and an `ambr log`
// of one instance at once while this test holds the instance's shared
// time-travel cache, as an open `ambr tui` would: none may fail on the
// cache's lock, and each prints the state the log implies.
func TestReplayConcurrentReaders(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	home := t.TempDir()
	dir := filepath.Join(home, "server")
	if err := counter.WriteServerLog(dir, 300, 100, counterBins.server); err != nil {
		t.Fatal(err)
	}
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	held, err := timetravel.OpenIndex(timetravel.CacheDir(home, dir), in)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if held.Private() {
		t.Fatal("the first reader got a private index")
	}
	targets := []int{300, 17, 150}
	type result struct {
		out []byte
		err error
	}
	results := make([]chan result, len(targets)+1)
	for i, at := range targets {
		results[i] = make(chan result, 1)
		go func(at int, c chan result) {
			out, err := exec.Command(builtBins.ambr, "--home", home, "replay", "server", "--until", strconv.Itoa(at), "--json").Output()
			c <- result{out, err}
		}(at, results[i])
	}
	results[len(targets)] = make(chan result, 1)
	go func() {
		out, err := exec.Command(builtBins.ambr, "--home", home, "log", "server", "--from", "290", "--json").Output()
		results[len(targets)] <- result{out, err}
	}()
	for i, at := range targets {
		r := <-results[i]
		if r.err != nil {
			t.Fatalf("ambr replay --until %d beside another reader: %v\n%s%s", at, r.err, r.out, stderrOf(r.err))
		}
		var res struct {
			Seq   int64
			State counter.ServerState
		}
		if err := json.Unmarshal(r.out, &res); err != nil {
			t.Fatalf("ambr replay --json: %v\n%s", err, r.out)
		}
		if res.Seq != int64(at) || res.State.Count != at-1 {
			t.Fatalf("ambr replay --until %d: record %d, count %d; want count %d", at, res.Seq, res.State.Count, at-1)
		}
	}
	r := <-results[len(targets)]
	if r.err != nil {
		t.Fatalf("ambr log beside replays: %v\n%s", r.err, stderrOf(r.err))
	}
	if lines := strings.Count(strings.TrimSpace(string(r.out)), "\n") + 1; lines != 11 {
		t.Fatalf("ambr log --from 290 printed %d JSON lines, want records 290..300:\n%s", lines, r.out)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
