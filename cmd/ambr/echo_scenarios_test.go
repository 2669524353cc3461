package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/samples/echo/echo"
)

var (
	echoMiB    = flag.Int("echo-mib", 8, "scenarios: MiB the job sends in 32 KiB forks")
	giantMiB   = flag.Int("giant-mib", 64, "scenarios: size of each giant message, MiB")
	ballastMiB = flag.Int("ballast-mib", 64, "scenarios: server state ballast for the giant checkpoint, MiB (scenarios.md: 1024)")
)

var echoBins struct{ server, job string }

func buildEcho(t *testing.T) {
	t.Helper()
	binaries(t)
	if echoBins.server != "" {
		return
	}
	dir := filepath.Dir(builtBins.ambr)
	echoBins.server, echoBins.job = filepath.Join(dir, "echo-server"), filepath.Join(dir, "echo-job")
	for pkg, out := range map[string]string{"../../samples/echo/server": echoBins.server, "../../samples/echo/job": echoBins.job} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
}

// echoPair starts nothing yet: a server and a job under one home.
func echoPair(t *testing.T, serverArgs []string, jobArgs ...string) (server, job *inst) {
	t.Helper()
	home := t.TempDir()
	server = newInst(t, home, "server", echoBins.server, serverArgs...)
	job = newInst(t, home, "job", echoBins.job, append([]string{"--server", "server"}, jobArgs...)...)
	t.Cleanup(func() { job.stop(); server.stop() })
	return server, job
}

// waitServer waits until the server's checkpointed state satisfies done.
func waitServer(t *testing.T, server *inst, done func(echo.ServerState) bool, others ...*inst) echo.ServerState {
	t.Helper()
	deadline := time.Now().Add(*clientTimeout)
	for time.Now().Before(deadline) {
		var s echo.ServerState
		if newestState(server.dir(), &s) && done(s) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	var b strings.Builder
	for _, o := range append([]*inst{server}, others...) {
		fmt.Fprintf(&b, "--- %s:\n%s\n", o.name, o.out.String())
	}
	var s echo.ServerState
	newestState(server.dir(), &s)
	s.Ballast = nil
	t.Fatalf("server not done after %v; newest state %+v\n%s", *clientTimeout, s, b.String())
	return s
}

// checkTotals asserts the server received messages 1..n of size bytes,
// exactly once and in order.
func checkTotals(t *testing.T, s echo.ServerState, n, size int) {
	t.Helper()
	if s.Count != n || s.Bytes != int64(n)*int64(size) || s.Gaps != 0 || s.Digest != echo.ExpectedDigest(n, size) {
		t.Fatalf("server totals: count %d bytes %d gaps %d digest %s; want %d, %d, 0, %s",
			s.Count, s.Bytes, s.Gaps, s.Digest, n, int64(n)*int64(size), echo.ExpectedDigest(n, size))
	}
}

// progressed waits until the server has logged at least n data messages.
func progressed(t *testing.T, server *inst, n int) {
	t.Helper()
	deadline := time.Now().Add(*clientTimeout)
	for time.Now().Before(deadline) {
		if calls, _ := loggedCalls(server.dir(), "data"); calls["job"] >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the server did not log %d messages; output:\n%s", n, server.out.String())
}

// peakRSS reads a process's peak resident memory from /proc (Linux).
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:"))
		}
	}
	return "unknown"
}

func TestEchoScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildEcho(t)
	const size = 32 << 10
	n := *echoMiB << 20 / size

	t.Run("basic", func(t *testing.T) {
		// The job sends N MiB in 32 KiB forks; the server echoes each.
		server, job := echoPair(t, nil, "--count", strconv.Itoa(n), "--size", strconv.Itoa(size), "--echo")
		server.start()
		job.start()
		checkTotals(t, waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total }, job), n, size)
		var js echo.JobState
		deadline := time.Now().Add(*clientTimeout)
		for !(newestState(job.dir(), &js) && js.Done) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if js.Echoes != n || js.EchoGaps != 0 || js.EchoBytes != int64(n)*size {
			t.Fatalf("job: %d echoes (%d bytes, %d gaps), want %d (%d bytes, 0 gaps)", js.Echoes, js.EchoBytes, js.EchoGaps, n, int64(n)*size)
		}
	})

	t.Run("basic with kills", func(t *testing.T) {
		server, job := echoPair(t, nil, "--count", strconv.Itoa(n), "--size", strconv.Itoa(size), "--echo")
		server.start()
		job.start()
		progressed(t, server, n/4)
		job.killAll()
		job.start()
		progressed(t, server, n/2)
		server.killAll()
		server.start()
		progressed(t, server, 3*n/4)
		job.killAll()
		server.killAll()
		server.start()
		job.start()
		checkTotals(t, waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total }, job), n, size)
		var js echo.JobState
		deadline := time.Now().Add(*clientTimeout)
		for !(newestState(job.dir(), &js) && js.Done) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if js.Echoes != n || js.EchoGaps != 0 {
			t.Fatalf("job: %d echoes, %d gaps; want %d, 0", js.Echoes, js.EchoGaps, n)
		}
	})

	t.Run("giant message", func(t *testing.T) {
		gsize := *giantMiB << 20
		server, job := echoPair(t, nil, "--count", "2", "--size", strconv.Itoa(gsize))
		server.start()
		job.start()
		start := time.Now()
		s := waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total }, job)
		checkTotals(t, s, 2, gsize)
		t.Logf("two %d MiB messages in %v; peak RSS: server's ambr run %s, job's ambr run %s", *giantMiB, time.Since(start).Round(time.Millisecond), peakRSS(server.cmd.Process.Pid), peakRSS(job.cmd.Process.Pid))
	})

	t.Run("giant checkpoint", func(t *testing.T) {
		server, job := echoPair(t, []string{"--ballast-mib", strconv.Itoa(*ballastMiB)}, "--count", "64", "--size", "4096")
		server.start()
		job.start()
		progressed(t, server, 16)
		server.killAll()
		before, err := layout.ReadManifest(vfsDefault(), server.dir())
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		server.start()
		// Recovery ends with a checkpoint of its own: wait for the MANIFEST
		// to name it.
		for {
			m, err := layout.ReadManifest(vfsDefault(), server.dir())
			if err == nil && m.Checkpoint > before.Checkpoint {
				break
			}
			if time.Since(start) > *clientTimeout {
				t.Fatalf("recovery did not finish; output:\n%s", server.out.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		recovered := time.Since(start)
		s := waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total }, job)
		checkTotals(t, s, 64, 4096)
		if len(s.Ballast) != *ballastMiB<<20 {
			t.Fatalf("ballast of %d bytes after recovery, want %d", len(s.Ballast), *ballastMiB<<20)
		}
		t.Logf("%d MiB state: from restart to the recovery's own checkpoint durable: %v (process start, load and verify the checkpoint, replay, write a new one)", *ballastMiB, recovered.Round(time.Millisecond))
	})

	t.Run("impulses", func(t *testing.T) {
		// The server fires a self-impulse every millisecond while being
		// killed; every tick is counted once.
		const ticks = 300
		server, job := echoPair(t, []string{"--ticks", strconv.Itoa(ticks), "--tick-every", "1ms"}, "--count", "200", "--size", "1024", "--echo", "--window", "4")
		server.start()
		job.start()
		for i := 0; i < 5; i++ {
			progressed(t, server, 20*(i+1))
			if i%2 == 0 {
				server.killApp()
			} else {
				server.killAll()
				server.start()
			}
		}
		s := waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total && s.Ticks == s.TickTarget }, job)
		checkTotals(t, s, 200, 1024)
		logged, err := loggedCalls(server.dir(), "tick")
		if err != nil {
			t.Fatal(err)
		}
		if s.Ticks != ticks || logged["server"] < ticks {
			t.Fatalf("ticks %d (want %d), %d tick impulses logged (want at least %d)", s.Ticks, ticks, logged["server"], ticks)
		}
		t.Logf("%d ticks counted from %d logged impulses (the rest were retries of ticks lost in crashes or sent while one was in flight)", s.Ticks, logged["server"])
	})
}
