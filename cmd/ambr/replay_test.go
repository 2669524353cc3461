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

	"github.com/ambr-dev/ambr/engine/immortal"
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

// TestReplayDebug runs `ambr replay --debug` as CI would (stdin from
// /dev/null, no --wait): Delve (built into ambr) stops in the handler of
// the requested record, whatever kind of handler and however it was
// registered, and ambr returns without waiting and without an address.
func TestReplayDebug(t *testing.T) {
	if testing.Short() {
		t.Skip("builds with debug information and runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	home := t.TempDir()
	server := newInst(t, home, "server", counterBins.server)
	client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", "4", "--interval", "5ms")
	t.Cleanup(func() { client.stop(); server.stop() })
	server.start()
	client.start()
	checkExact(t, waitClient(t, client, server).Results, 4)
	client.stop()
	server.stop()

	type stopJSON struct {
		Seq      int64
		Function string
		File     string
		Args     []struct{ Name, Type, Value string }
		Addr     string
	}
	debugAt := func(name string, at int64, extra ...string) (stopJSON, string) {
		t.Helper()
		args := append([]string{"--home", home, "replay", name, "--until", strconv.FormatInt(at, 10), "--debug"}, extra...)
		cmd := exec.Command(builtBins.ambr, append(args, "--json")...) // stdin: /dev/null
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ambr %s: %v\n%s%s", strings.Join(args, " "), err, out, stderrOf(err))
		}
		var res stopJSON
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("--json: %v\n%s", err, out)
		}
		if res.Seq != at || res.Addr != "" {
			t.Fatalf("ambr %s: stopped at record %d, address %q (the session has ended: none)", strings.Join(args, " "), res.Seq, res.Addr)
		}
		return res, strings.Join(args, " ")
	}
	arg := func(res stopJSON, name string) string {
		for _, a := range res.Args {
			if a.Name == name {
				return a.Value
			}
		}
		t.Fatalf("no argument %s where it stopped: %+v", name, res)
		return ""
	}

	// A call: record r of the server holds its (r-1)th Inc.
	const at = 4
	res, _ := debugAt("server", at, "--app", "../../samples/counter/server")
	if !strings.HasSuffix(res.Function, "counter.NewServer.func2") || !strings.HasSuffix(res.File, "samples/counter/counter/counter.go") ||
		!strings.HasSuffix(arg(res, "s"), "{Count: "+strconv.Itoa(at-2)+"}") {
		t.Fatalf("Inc handler: stopped at %+v", res)
	}
	// What people read: the user's types, not the binding's ctx, no address.
	out, err := exec.Command(builtBins.ambr, "--home", home, "replay", "server", "--until", strconv.Itoa(at), "--debug", "--app", "../../samples/counter/server").Output()
	text := string(out)
	if err != nil || !strings.Contains(text, "  s *counter.ServerState = *counter.ServerState {Count: 2}") || strings.Contains(text, "immortal.Ctx") || strings.Contains(text, "dlv connect") {
		t.Fatalf("text output:\n%s", text)
	}
	// Registered under a constant, as a method value.
	res, _ = debugAt("server", at, "--app", "../../timetravel/debug/testdata/constserver", "--break", "Inc")
	if res.Function != "main.(*server).inc" || !strings.HasSuffix(arg(res, "s"), "{Count: "+strconv.Itoa(at-2)+"}") {
		t.Fatalf("a handler registered as a constant and a method value: stopped at %+v", res)
	}

	// The client's log holds impulses ("next") and results of Inc.
	impulse, result := int64(0), int64(0)
	in, err := layout.Open(vfs.Default(), client.dir())
	if err != nil {
		t.Fatal(err)
	}
	lr, _ := in.NewLogReader(0)
	for impulse == 0 || result == 0 {
		rec, err := lr.Next()
		if err != nil {
			t.Fatalf("the client's log has no impulse and result records: %v", err)
		}
		it := logfmt.NewMessageIter(rec.Messages)
		m, _ := it.Next()
		r, err := logfmt.ParseRPC(m.Data)
		if m.Type != logfmt.TypeRPC || err != nil || rec.MessageCount != 1 {
			continue
		}
		if _, isResult, _, _ := immortal.DecodeArgs(r.Args, r.Reserved); isResult && result == 0 {
			result = rec.Seq
		} else if r.Kind == logfmt.RPCImpulse && impulse == 0 {
			impulse = rec.Seq
		}
	}
	lr.Close()
	res, _ = debugAt("client", result, "--app", "../../samples/counter/client")
	// The result handler's own arguments: HandleResult's (result, callErr, note).
	if !strings.HasPrefix(res.Function, "github.com/ambr-dev/ambr/samples/counter/counter.NewClient.func") || arg(res, "result") == "" || arg(res, "note") == "" {
		t.Fatalf("result handler: stopped at %+v", res)
	}
	resultHandler := res.Function
	res, _ = debugAt("client", impulse, "--app", "../../samples/counter/client")
	if !strings.HasPrefix(res.Function, "github.com/ambr-dev/ambr/samples/counter/counter.NewClient.func") || res.Function == resultHandler ||
		strings.Contains(res.File, "engine/immortal") || !strings.Contains(arg(res, "s"), "ClientState") {
		t.Fatalf("impulse handler: stopped at %+v", res)
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
