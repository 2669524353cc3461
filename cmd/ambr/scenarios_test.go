package main

import (
	"bytes"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// The failure scenarios of shared/design/scenarios.md, with real processes:
// the ambr binary and the counter sample, killed with SIGKILL, restarted as
// a user would, and checked for exact outcomes.

var clientTimeout = flag.Duration("client-timeout", 90*time.Second, "scenarios: how long a client may take")

var scenarioKills = flag.Int("scenario-kills", 50, "scenarios: kills in the kill loop")

var scenarioSize = flag.Int("scenario-size", 150, "scenarios: Inc() calls per client (raise for long runs)")

var counterBins struct {
	server, client string
}

func buildCounter(t *testing.T) {
	t.Helper()
	binaries(t)
	if counterBins.server != "" {
		return
	}
	dir := filepath.Dir(builtBins.ambr)
	counterBins.server, counterBins.client = filepath.Join(dir, "counter-server"), filepath.Join(dir, "counter-client")
	for pkg, out := range map[string]string{"../../samples/counter/server": counterBins.server, "../../samples/counter/client": counterBins.client} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

// inst is one immortal run with `ambr run` by a scenario.
type inst struct {
	t        *testing.T
	name     string
	home     string
	registry string
	bin      string
	appArgs  []string
	extra    []string // more ambr run flags
	netns    string   // a network namespace (a test host) to run in; "" for this one
	out      *syncBuffer
	cmd      *exec.Cmd
	done     chan struct{}
	killed   map[int64]bool // app processes killed, by start time (pids are reused)
}

func newInst(t *testing.T, home, name, bin string, appArgs ...string) *inst {
	return &inst{t: t, name: name, home: home, bin: bin, appArgs: appArgs, out: &syncBuffer{}, killed: map[int64]bool{}}
}

func (i *inst) dir() string { return filepath.Join(i.home, i.name) }

func (i *inst) start() {
	i.t.Helper()
	args := []string{"--home", i.home, "run", i.bin, "--name", i.name}
	if os.Getenv("AMBR_SCENARIO_VERBOSE") == "" {
		args = append(args, "-q")
	}
	if i.registry != "" {
		args = append(args, "--registry", i.registry)
	}
	args = append(append(args, i.extra...), "--")
	args = append(args, i.appArgs...)
	i.cmd = exec.Command(builtBins.ambr, args...)
	if i.netns != "" {
		// ip netns exec execs ambr in place: the pid is ambr's.
		i.cmd = exec.Command("ip", append([]string{"netns", "exec", i.netns, builtBins.ambr}, args...)...)
	}
	i.cmd.Stdout, i.cmd.Stderr = i.out, i.out
	if err := i.cmd.Start(); err != nil {
		i.t.Fatal(err)
	}
	done := make(chan struct{})
	i.done = done
	go func(c *exec.Cmd) { c.Wait(); close(done) }(i.cmd)
}

// appPid waits for the instance's current app process.
func (i *inst) appPid() int {
	pid, _ := i.app()
	return pid
}

// app waits for the instance's current app process: its pid and start time.
func (i *inst) app() (int, int64) {
	i.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if st, ok := supervise.ReadRunStatus(i.dir()); ok && st.AppPid != 0 && !i.killed[st.AppStarted] && supervise.Alive(st.AppPid) {
			return st.AppPid, st.AppStarted
		}
		time.Sleep(2 * time.Millisecond)
	}
	i.t.Fatalf("%s: no app process came up; output:\n%s", i.name, i.out.String())
	return 0, 0
}

// killApp SIGKILLs only the app; its coordinator restarts it.
func (i *inst) killApp() {
	i.t.Helper()
	pid, started := i.app()
	i.killed[started] = true
	_ = syscall.Kill(pid, syscall.SIGKILL)
}

// killAll SIGKILLs the whole ambr run (coordinator and, with it, the app):
// a machine failure.
func (i *inst) killAll() {
	i.t.Helper()
	_ = i.cmd.Process.Signal(syscall.SIGKILL)
	<-i.done
}

// stop ends the instance with Ctrl-C, as a user would.
func (i *inst) stop() {
	i.t.Helper()
	if i.cmd == nil {
		return
	}
	select {
	case <-i.done:
		return
	default:
	}
	_ = i.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-i.done:
	case <-time.After(15 * time.Second):
		// Go prints every goroutine's stack on SIGQUIT: show where it hangs.
		_ = i.cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-i.done:
		case <-time.After(2 * time.Second):
			_ = i.cmd.Process.Kill()
			<-i.done
		}
		i.t.Errorf("%s did not stop on SIGINT; output:\n%s", i.name, i.out.String())
	}
}

// progress waits until the server has logged at least n Inc() calls.
func progress(t *testing.T, server *inst, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		calls, _ := loggedCalls(server.dir(), "Inc")
		total := 0
		for _, c := range calls {
			total += c
		}
		if total >= n {
			return
		}
		time.Sleep(3 * time.Millisecond)
	}
	t.Fatalf("the server did not reach %d Inc() calls; output:\n%s", n, server.out.String())
}

// waitClient waits until the client's checkpointed state says done.
func waitClient(t *testing.T, c *inst, others ...*inst) counter.ClientState {
	t.Helper()
	deadline := time.Now().Add(*clientTimeout)
	for time.Now().Before(deadline) {
		var s counter.ClientState
		if newestState(c.dir(), &s) && s.Done {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	var b strings.Builder
	for _, o := range append([]*inst{c}, others...) {
		fmt.Fprintf(&b, "--- %s:\n%s\n", o.name, o.out.String())
	}
	t.Fatalf("client %s not done after %v\n%s", c.name, *clientTimeout, b.String())
	return counter.ClientState{}
}

// checkExact asserts results are exactly 1..k.
func checkExact(t *testing.T, results []int, k int) {
	t.Helper()
	if len(results) != k {
		t.Fatalf("%d results, want %d: %v", len(results), k, results)
	}
	for i, r := range results {
		if r != i+1 {
			t.Fatalf("results[%d] = %d, want %d (results %v)", i, r, i+1, results)
		}
	}
}

// checkServerLog asserts the server logged exactly want Inc() calls from
// each client.
func checkServerLog(t *testing.T, server *inst, want map[string]int) {
	t.Helper()
	calls, err := loggedCalls(server.dir(), "Inc")
	if err != nil {
		t.Fatal(err)
	}
	for c, n := range want {
		if calls[c] != n {
			t.Fatalf("server logged %d Inc() calls from %s, want %d (all: %v)", calls[c], c, n, calls)
		}
	}
}

// pair starts a counter server and client under one home.
func pair(t *testing.T, k int) (server, client *inst) {
	t.Helper()
	home := t.TempDir()
	server = newInst(t, home, "server", counterBins.server)
	client = newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k))
	t.Cleanup(func() { client.stop(); server.stop() })
	return server, client
}

// recordCounter runs a counter client's k calls against a server to the
// end, checks the results are exactly 1..k, stops both, and returns the
// server: its instance holds the recorded history the tools read.
func recordCounter(t *testing.T, k int) *inst {
	t.Helper()
	server, client := pair(t, k)
	server.start()
	client.start()
	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()
	return server
}

func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	k := *scenarioSize

	t.Run("counter", func(t *testing.T) {
		server, client := pair(t, k)
		server.start()
		client.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
	})

	t.Run("kill job", func(t *testing.T) {
		server, client := pair(t, k)
		server.start()
		client.start()
		for _, at := range []int{k / 4, k / 2} {
			progress(t, server, at)
			client.killAll()
			client.start()
		}
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
	})

	t.Run("kill server", func(t *testing.T) {
		server, client := pair(t, k)
		server.start()
		client.start()
		progress(t, server, k/3)
		server.killAll()
		time.Sleep(50 * time.Millisecond)
		server.start() // on another port: the client finds it through the registry
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
	})

	for _, order := range []string{"job first", "server first"} {
		t.Run("double kill, restart "+order, func(t *testing.T) {
			server, client := pair(t, k)
			server.start()
			client.start()
			progress(t, server, k/3)
			client.killAll()
			server.killAll()
			if order == "job first" {
				client.start()
				time.Sleep(100 * time.Millisecond)
				server.start()
			} else {
				server.start()
				time.Sleep(100 * time.Millisecond)
				client.start()
			}
			checkExact(t, waitClient(t, client, server).Results, k)
			checkServerLog(t, server, map[string]int{"client": k})
		})
	}

	t.Run("app only", func(t *testing.T) {
		server, client := pair(t, k)
		server.start()
		client.start()
		for n := 1; n <= 4; n++ {
			progress(t, server, n*k/6)
			if n%2 == 0 {
				server.killApp()
			} else {
				client.killApp()
			}
		}
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
	})

	t.Run("IC first", func(t *testing.T) {
		// The client (app and coordinator) long before its server exists.
		server, client := pair(t, k)
		client.start()
		time.Sleep(time.Second)
		server.start()
		checkExact(t, waitClient(t, client, server).Results, k)
	})

	t.Run("app first", func(t *testing.T) {
		// The app processes start long before their coordinators.
		server, client := pair(t, k)
		ports := func() (int, int) {
			l, err := engine.ListenTCP(0, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			return l.RecvPort, l.SendPort
		}
		var apps []*exec.Cmd
		for _, i := range []*inst{server, client} {
			r, s := ports()
			i.extra = []string{"--external-app", "--ports", fmt.Sprintf("%d,%d", r, s)}
			app := exec.Command(i.bin, i.appArgs...)
			app.Env = append(os.Environ(), fmt.Sprintf("%s=%d", engine.EnvReceivePort, r), fmt.Sprintf("%s=%d", engine.EnvSendPort, s), engine.EnvInstance+"="+i.name)
			app.Stdout, app.Stderr = i.out, i.out
			if err := app.Start(); err != nil {
				t.Fatal(err)
			}
			apps = append(apps, app)
		}
		time.Sleep(time.Second)
		server.start()
		client.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		for _, a := range apps {
			_ = a.Process.Kill()
			_ = a.Wait()
		}
	})

	t.Run("kill loop", func(t *testing.T) {
		kills := *scenarioKills
		n := 4 * k
		server, client := pair(t, n)
		server.start()
		client.start()
		seed := time.Now().UnixNano()
		rng := rand.New(rand.NewPCG(uint64(seed), 3))
		t.Logf("seed %d", seed)
		for i := 0; i < kills; i++ {
			victim := []*inst{server, client}[rng.IntN(2)]
			victim.appPid() // up and running
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
			if rng.IntN(2) == 0 {
				victim.killApp()
			} else {
				victim.killAll()
				victim.start()
			}
		}
		checkExact(t, waitClient(t, client, server).Results, n)
		checkServerLog(t, server, map[string]int{"client": n})
	})

	t.Run("many clients", func(t *testing.T) {
		home := t.TempDir()
		server := newInst(t, home, "server", counterBins.server)
		server.start()
		t.Cleanup(server.stop)
		var clients []*inst
		for c := 0; c < 4; c++ {
			name := fmt.Sprintf("client%d", c)
			cl := newInst(t, home, name, counterBins.client, "--server", "server", "--count", strconv.Itoa(k))
			cl.start()
			t.Cleanup(cl.stop)
			clients = append(clients, cl)
		}
		progress(t, server, k)
		server.killAll()
		server.start()
		seen := map[int]string{}
		want := map[string]int{}
		for _, cl := range clients {
			s := waitClient(t, cl, server)
			if len(s.Results) != k {
				t.Fatalf("%s has %d results, want %d", cl.name, len(s.Results), k)
			}
			for i, r := range s.Results {
				if i > 0 && r <= s.Results[i-1] {
					t.Fatalf("%s results not increasing: %v", cl.name, s.Results)
				}
				if other, dup := seen[r]; dup {
					t.Fatalf("value %d returned to both %s and %s", r, other, cl.name)
				}
				seen[r] = cl.name
			}
			want[cl.name] = k
		}
		for v := 1; v <= 4*k; v++ {
			if _, ok := seen[v]; !ok {
				t.Fatalf("no client received %d: Inc() results must be exactly 1..%d", v, 4*k)
			}
		}
		checkServerLog(t, server, want)
	})

	t.Run("torn tail", func(t *testing.T) {
		// A crash leaves half a record at the end of the server's log:
		// recovery cuts it (keeping a copy) and loses no whole record.
		server, client := pair(t, k)
		server.start()
		client.start()
		progress(t, server, k/2)
		server.killAll()
		in, err := layout.Open(vfs.Default(), server.dir())
		if err != nil {
			t.Fatal(err)
		}
		segs, _ := in.Segments()
		last := in.SegmentPath(segs[len(segs)-1])
		// Half of a copy of the segment's first record, written where its
		// records end (the writer extends a segment with zeros ahead of
		// them): a torn write.
		b, err := os.ReadFile(last)
		if err != nil {
			t.Fatal(err)
		}
		sr, err := logfmt.NewSegmentReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := sr.Next(); err != nil {
				break
			}
		}
		end := sr.Offset()
		if sr.LastSeq() == 0 {
			b, _ = os.ReadFile(in.SegmentPath(segs[0]))
		}
		n, _ := logfmt.RecordLength(b[logfmt.SegmentHeaderSize:])
		torn := b[logfmt.SegmentHeaderSize : logfmt.SegmentHeaderSize+n/2]
		f, err := os.OpenFile(last, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(torn, end); err != nil {
			t.Fatal(err)
		}
		f.Close()
		server.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
		if _, err := os.Stat(last + layout.BrokenSuffix); err != nil {
			t.Fatalf("recovery kept no copy of the torn tail: %v", err)
		}
		if !strings.Contains(server.out.String(), "cut a torn tail of") {
			t.Fatalf("recovery did not report the torn tail:\n%s", server.out.String())
		}
	})

	t.Run("bad checkpoint", func(t *testing.T) {
		// The newest checkpoint of the server is damaged: recovery uses the
		// one before it and replays the longer log.
		server, client := pair(t, k)
		server.start()
		client.start()
		progress(t, server, k/3)
		server.killAll()
		server.start() // recovery writes a new checkpoint
		progress(t, server, 2*k/3)
		server.killAll()
		in, err := layout.Open(vfs.Default(), server.dir())
		if err != nil {
			t.Fatal(err)
		}
		path := in.CheckpointPath(in.Manifest.Checkpoint)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x40
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		server.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
		if !strings.Contains(server.out.String(), fmt.Sprintf("skipped checkpoint %d", in.Manifest.Checkpoint)) {
			t.Fatalf("recovery did not report skipping checkpoint %d:\n%s", in.Manifest.Checkpoint, server.out.String())
		}
	})

	t.Run("disk error", func(t *testing.T) {
		// The server's log device fills up mid-run (ENOSPC on writes): its
		// coordinator stops with a clear error and acknowledges nothing it
		// did not log; once the fault clears, recovery is exact.
		for _, fault := range []string{"write:60:ENOSPC", "sync:60:EIO"} {
			server, client := pair(t, k)
			server.extra = []string{"--inject-disk-fault", fault}
			server.start()
			client.start()
			select {
			case <-server.done:
			case <-time.After(*clientTimeout):
				t.Fatalf("%s: the server kept running", fault)
			}
			out := server.out.String()
			errno := map[bool]string{true: "no space left on device", false: "input/output error"}[strings.Contains(fault, "ENOSPC")]
			if server.cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out, "coordinator stopped") || !strings.Contains(out, errno) ||
				!strings.Contains(out, "nothing unlogged was acknowledged") {
				t.Fatalf("%s: exit %d, output:\n%s", fault, server.cmd.ProcessState.ExitCode(), out)
			}
			server.extra = nil
			server.start()
			checkExact(t, waitClient(t, client, server).Results, k)
			checkServerLog(t, server, map[string]int{"client": k})
			client.stop()
			server.stop()
		}
	})

	t.Run("migrate", func(t *testing.T) {
		// The server's directory is copied to another home and started there
		// (on another port), the old one stopped; the client finds it
		// through the shared registry.
		server, client := pair(t, k)
		registry := engine.DefaultRegistryDir(server.home)
		server.start()
		client.start()
		progress(t, server, k/3)
		server.killAll()
		newHome := t.TempDir()
		if out, err := exec.Command("cp", "-a", server.dir(), filepath.Join(newHome, "server")).CombinedOutput(); err != nil {
			t.Fatalf("copy: %v %s", err, out)
		}
		if err := os.RemoveAll(server.dir()); err != nil {
			t.Fatal(err)
		}
		moved := newInst(t, newHome, "server", counterBins.server)
		moved.registry = registry
		moved.start()
		t.Cleanup(moved.stop)
		checkExact(t, waitClient(t, client, moved).Results, k)
		checkServerLog(t, moved, map[string]int{"client": k})
	})
}
