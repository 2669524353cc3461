package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/internal/testbin"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
)

// The hostile and crash-looping neighbours of scenarios.md ("app-port
// squat / hijack", "crash loop"), with real processes: what ambr run must
// refuse, and when it must stop, naming why.

// exited waits for an instance's ambr run to end by itself and returns its
// exit code.
func (i *inst) exited() int {
	i.t.Helper()
	select {
	case <-i.done:
	case <-time.After(*clientTimeout):
		i.t.Fatalf("%s: ambr run kept running; output:\n%s", i.name, i.out.String())
	}
	return i.cmd.ProcessState.ExitCode()
}

// ambrErrorLine is ambr run's final "ambr: …" line.
func ambrErrorLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ambr: ") {
			return l
		}
	}
	return ""
}

const fixHint = "; the log is intact: fix the app and run the same command again (with the fixed build) to recover"

func TestCrashLoops(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)

	t.Run("exits before attaching", func(t *testing.T) {
		home := t.TempDir()
		silent := newInst(t, home, "true", "/bin/true")
		silent.start()
		talker := newInst(t, home, "talker", "/bin/sh", "-c", "echo starting >&2; echo config.yaml: no such file >&2; exit 3")
		talker.extra = []string{"--max-exits-before-attach", "3"}
		talker.start()
		for _, tc := range []struct {
			i    *inst
			want string
		}{
			{silent, "ambr: the app exited 5 times before attaching (no stderr output; exit status 0)" + fixHint},
			{talker, "ambr: the app exited 3 times before attaching (last stderr: config.yaml: no such file)" + fixHint},
		} {
			code := tc.i.exited()
			out := tc.i.out.String()
			if code != 1 || ambrErrorLine(out) != tc.want {
				t.Fatalf("%s: exit %d, last line %q; want exit 1, %q; output:\n%s", tc.i.name, code, ambrErrorLine(out), tc.want, out)
			}
		}
		if n := strings.Count(silent.out.String(), "app exited; restarting it"); n != 4 {
			t.Fatalf("%d restarts announced, want 4 (the fifth exit ends the run):\n%s", n, silent.out.String())
		}
	})

	t.Run("dies on a record, then the fixed build recovers", func(t *testing.T) {
		const k, panicAt = 5, 3
		server, client := pair(t, k)
		server.bin = testbin.Build(t, "./testdata/hostile/panicky")
		server.appArgs = []string{"--panic-at", strconv.Itoa(panicAt)}
		server.start()
		client.start()
		code := server.exited()
		seq, ok := nthLoggedCall(t, server.dir(), "Inc", panicAt)
		if !ok {
			t.Fatalf("the server's log holds no Inc number %d; output:\n%s", panicAt, server.out.String())
		}
		want := fmt.Sprintf("ambr: the app died handling record %d (call Inc from client) 3 times: panic: Inc: the count may not reach %d", seq, panicAt) + fixHint
		if out := server.out.String(); code != 1 || ambrErrorLine(out) != want {
			t.Fatalf("exit %d, last line %q; want exit 1, %q; output:\n%s", code, ambrErrorLine(out), want, out)
		}
		checkServerLog(t, server, map[string]int{"client": panicAt})
		// The log is intact: the fixed build takes over and the client
		// ends exactly right.
		server.bin, server.appArgs = counterBins.server, nil
		server.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
	})

	t.Run("dies on a record behind a wrapper script", func(t *testing.T) {
		// The app is a grandchild of ambr run (a shell that does not exec
		// it): it may attach, and its deaths count as the app's.
		const panicAt = 2
		server, client := pair(t, 4)
		panicky := testbin.Build(t, "./testdata/hostile/panicky")
		server.bin, server.appArgs = "/bin/sh", []string{"-c", panicky + " --panic-at " + strconv.Itoa(panicAt) + "; exit $?"}
		server.start()
		client.start()
		code := server.exited()
		seq, ok := nthLoggedCall(t, server.dir(), "Inc", panicAt)
		want := fmt.Sprintf("ambr: the app died handling record %d (call Inc from client) 3 times: panic: Inc: the count may not reach %d", seq, panicAt) + fixHint
		if out := server.out.String(); !ok || code != 1 || ambrErrorLine(out) != want {
			t.Fatalf("exit %d, last line %q; want exit 1, %q; output:\n%s", code, ambrErrorLine(out), want, out)
		}
	})

	t.Run("oversize message", func(t *testing.T) {
		giant := newInst(t, t.TempDir(), "giant", testbin.Build(t, "./testdata/hostile/giant"))
		giant.start()
		code := giant.exited()
		out := giant.out.String()
		want := "ambr: the app sent a message of 1.1 GB; the limit is 1 GiB (method Giant to itself, while handling record 1 (InitialMessage))" + fixHint
		if code != 1 || ambrErrorLine(out) != want {
			t.Fatalf("exit %d, last line %q; want exit 1, %q; output:\n%s", code, ambrErrorLine(out), want, out)
		}
		if strings.Contains(out, "restarting") {
			t.Fatalf("the app was restarted after an oversize message:\n%s", out)
		}
	})
}

// nthLoggedCall is the sequence number of the record in dir's log that
// holds the n-th call of method.
func nthLoggedCall(t *testing.T, dir, method string, n int) (int64, bool) {
	t.Helper()
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	for {
		r, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return 0, false
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range logview.View(r, 0, 0, immortal.DecodeArgs).Messages {
			if m.MethodName == method && !m.Result {
				if n--; n == 0 {
					return r.Seq, true
				}
			}
		}
	}
}

// hostileConn is a connection the test made to an app port, as an
// attacker would; got counts what the coordinator sent on it.
type hostileConn struct {
	c   net.Conn
	got chan int
}

// dialHostile connects to port, writes a forged first start (an
// InitialMessage and a checkpoint claiming count 1000) and counts what
// comes back until the connection ends.
func dialHostile(t *testing.T, port int) *hostileConn {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("dial app port %d: %v", port, err)
	}
	forged := []byte(`{"count":1000}`)
	b := logfmt.AppendInitialMessage(nil, immortal.Envelope{}.Append(nil))
	b = append(logfmt.AppendCheckpointMessage(b, int64(len(forged))), forged...)
	_, _ = c.Write(b)
	h := &hostileConn{c: c, got: make(chan int, 1)}
	go func() {
		n, _ := io.Copy(io.Discard, c)
		h.got <- int(n)
	}()
	t.Cleanup(func() { c.Close() })
	return h
}

func TestHostileAppPorts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	k := *scenarioSize

	t.Run("squat and hijack", func(t *testing.T) {
		// Connections queued on the server's app ports, before and while
		// its app restarts, by a process that is not the app: each is
		// refused with one warning, none gets a byte, the forged
		// checkpoint is never taken, and the counter stays exact.
		server, client := pair(t, k)
		server.start()
		client.start()
		progress(t, server, k/4)
		st, ok := supervise.ReadRunStatus(server.dir())
		if !ok {
			t.Fatal("no RUN status for the server")
		}
		var conns []*hostileConn
		for _, port := range []int{st.RecvPort, st.SendPort} { // squatters, held
			conns = append(conns, dialHostile(t, port))
		}
		for round := 0; round < 3; round++ {
			server.killApp()
			// Hijackers racing the restarted app for the ports.
			for j := 0; j < 4; j++ {
				conns = append(conns, dialHostile(t, st.RecvPort), dialHostile(t, st.SendPort))
			}
			server.appPid() // the real app is back
			progress(t, server, k/4+(round+1)*k/8)
		}
		for i, h := range conns {
			if n := <-h.got; n != 0 {
				t.Fatalf("hostile connection %d was sent %d bytes by the coordinator", i, n)
			}
		}
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
		out := server.out.String()
		if n := strings.Count(out, "refused a connection to the app's"); n != len(conns) {
			t.Fatalf("%d refusal warnings for %d hostile connections:\n%s", n, len(conns), out)
		}
		if want := fmt.Sprintf("from pid %d (uid %d", os.Getpid(), os.Getuid()); !strings.Contains(out, want) {
			t.Fatalf("the warnings do not name the process (%q):\n%s", want, out)
		}
	})

	t.Run("external app by pid", func(t *testing.T) {
		// --external-app --app-pid: the named process attaches; another
		// process of the same user (this test) is refused.
		server, client := pair(t, k)
		l, err := engine.ListenTCP(0, 0) // two free ports
		if err != nil {
			t.Fatal(err)
		}
		r, sp := l.RecvPort, l.SendPort
		l.Close()
		app := exec.Command(counterBins.server)
		app.Env = append(os.Environ(), fmt.Sprintf("%s=%d", engine.EnvReceivePort, r), fmt.Sprintf("%s=%d", engine.EnvSendPort, sp), engine.EnvInstance+"=server")
		app.Stdout, app.Stderr = server.out, server.out
		if err := app.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { app.Process.Kill(); app.Wait() })
		server.extra = []string{"--external-app", "--ports", fmt.Sprintf("%d,%d", r, sp), "--app-pid", strconv.Itoa(app.Process.Pid)}
		server.start()
		// Ours come first or last; either way they are never the app.
		var conns []*hostileConn
		for len(conns) < 4 {
			if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r))); err == nil {
				c.Close()
				conns = append(conns, dialHostile(t, r), dialHostile(t, sp))
			} else {
				time.Sleep(10 * time.Millisecond) // the coordinator is not listening yet
			}
		}
		client.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		for i, h := range conns {
			if n := <-h.got; n != 0 {
				t.Fatalf("hostile connection %d was sent %d bytes", i, n)
			}
		}
		if want := fmt.Sprintf("only pid %d and its children may attach as the app", app.Process.Pid); strings.Count(server.out.String(), want) < len(conns) {
			t.Fatalf("want a refusal (%q) for each of %d connections:\n%s", want, len(conns), server.out.String())
		}
	})

	t.Run("app dies between its connects", func(t *testing.T) {
		// The server's first two starts connect to the receive port and
		// die before the send port; a stray connection sits on the
		// receive port too. No wedge: the third start pairs, the counter
		// is exact.
		server, client := pair(t, k)
		marker := filepath.Join(t.TempDir(), "starts")
		server.bin = testbin.Build(t, "./testdata/hostile/halfpair")
		server.appArgs = []string{marker, "2", counterBins.server}
		server.start()
		client.start()
		progress(t, server, k/3)
		server.killApp() // a later start: it connects normally
		checkExact(t, waitClient(t, client, server).Results, k)
		checkServerLog(t, server, map[string]int{"client": k})
		out := server.out.String()
		// Each dying start's half was dropped once: for the next start's,
		// after the timeout, or (had it died before ambr looked) refused.
		dropped := strings.Count(out, "never completed its pair of connections") + strings.Count(out, "did not connect to the send port within") +
			strings.Count(out, "that has exited or that this one cannot see")
		if dropped != 2 {
			t.Fatalf("%d half pairs dropped, want the 2 of the dying starts:\n%s", dropped, out)
		}
		if b, _ := os.ReadFile(marker); len(b) < 4 {
			t.Fatalf("the app started %d times, want at least 4 (2 dying, 1 real, 1 after the kill)", len(b))
		}
	})
}
