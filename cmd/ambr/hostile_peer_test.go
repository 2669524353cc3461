package main

import (
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
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
	"github.com/ambr-dev/ambr/engine/trust"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/samples/echo/echo"
)

// The scenarios of scenarios.md where a neighbour, not a crash, is the
// threat: forged peers and results, hostile bytes, idle peers, a stopped
// app under load, lost acknowledged input. Real processes; exact outcomes.

var (
	idlePeers    = flag.Int("idle-peers", 1000, "hostile scenarios: idle authenticated peers held open on one coordinator")
	stoppedMiB   = flag.Int("stopped-mib", 96, "hostile scenarios: MiB the job sends while the server's app is stopped")
	stoppedBudMB = flag.Int("stopped-budget-mib", 8, "hostile scenarios: --app-budget of both coordinators in the stopped-app scenario, MiB")
)

// registeredAddr returns the peer address instance name registered under
// home's registry.
func registeredAddr(t *testing.T, home, name string) string {
	t.Helper()
	addr, err := engine.FileRegistry{Dir: engine.DefaultRegistryDir(home)}.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// loggedRPC returns the first RPC that instance dir logged from sender, framed
// as a coordinator sends it: a real message to replay as a forgery.
func loggedRPC(t *testing.T, dir, sender string) []byte {
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
		if err != nil {
			t.Fatalf("no RPC from %s in %s: %v", sender, dir, err)
		}
		// logview attributes each message to its sender.
		views := logview.View(r, 0, 0, nil).Messages
		it := logfmt.NewMessageIter(r.Messages)
		for i := 0; ; i++ {
			m, ok := it.Next()
			if !ok || i >= len(views) {
				break
			}
			if m.Type == logfmt.TypeRPC && views[i].From == sender {
				return logfmt.AppendMessage(nil, m.Type, m.Data)
			}
		}
	}
}

// attempt is one hostile connection: optional TLS, then raw bytes; it
// returns what the coordinator answered before closing (or a timeout).
func attempt(addr string, conf *tls.Config, payload []byte) (answer string) {
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(8 * time.Second))
	if conf != nil {
		tc := tls.Client(conn, conf)
		if err := tc.Handshake(); err != nil {
			return "handshake: " + err.Error()
		}
		conn = tc
	}
	if _, err := conn.Write(payload); err != nil {
		return "write: " + err.Error()
	}
	r := logfmt.NewPeerReader(conn)
	f, err := r.Next()
	if err != nil {
		return "closed: " + err.Error()
	}
	switch f.Kind {
	case logfmt.PeerWelcome:
		return fmt.Sprintf("welcome %d", f.Seq)
	case logfmt.PeerReject:
		return "reject: " + f.Reason
	}
	return fmt.Sprintf("frame %d", f.Kind)
}

// certConfig is a client TLS configuration with the certificate in
// dir/certs/name.{crt,key}, checking nothing of the server.
func certConfig(t *testing.T, dir, name string) *tls.Config {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "certs", name+".crt"), filepath.Join(dir, "certs", name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	// Offered whatever CAs the server asks for: an attacker does not
	// politely keep another CA's certificate to itself.
	return &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }}
}

// copyCA copies the registry's CA (certificate and key) to a directory of
// the test's, where it can issue certificates without touching the real
// instances' ones.
func copyCA(t *testing.T, home string) *trust.Authority {
	t.Helper()
	src := filepath.Join(engine.DefaultRegistryDir(home), trust.LocalDirName)
	dst := t.TempDir()
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	a, err := trust.Open(dst)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func rssKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			n, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(line, field+":"))[0])
			return n
		}
	}
	return -1
}

// TestForgedPeers: while a counter client calls the server, other
// processes connect to both coordinators' peer ports and try to pass for a
// peer: plaintext, no certificate, another CA's certificate for the real
// name, the right CA's certificate for another name with a hello that
// claims the real one, an expired certificate; and bytes that are no
// hello at all, including headers that claim 1 GiB. Each carries a real
// logged message (an Inc call; a result) to land if it were taken. None
// gets a Welcome; nothing of theirs is logged; the results are exactly
// 1..k; the server logged exactly k Inc calls, all from the client; the
// claimed gigabytes cost no memory.
func TestForgedPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 60
	server, client := pair(t, k)
	client.appArgs = append(client.appArgs, "--interval", "20ms")
	server.start()
	client.start()
	progress(t, server, 3)
	home := server.home
	inc := loggedRPC(t, server.dir(), "client")
	result := loggedRPC(t, client.dir(), "server")

	// Certificates to attack with: another CA's for the real names; the
	// right CA's for another name; the right CA's for the real name, expired.
	other, err := trust.Init(t.TempDir(), "mallory's CA")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"client", "server"} {
		if err := other.Issue(n, time.Now().Add(-time.Hour), time.Hour*24); err != nil {
			t.Fatal(err)
		}
	}
	stolen := copyCA(t, home) // the CA key, as a process of the same user could read it
	if err := stolen.Issue("mallory", time.Now().Add(-time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := stolen.Issue("client", time.Now().Add(-72*time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := stolen.Issue("server", time.Now().Add(-72*time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	noCert := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	frames := func(from, to string, msg []byte) []byte {
		return logfmt.AppendPeerMessage(logfmt.AppendPeerHello(nil, from, to), 1<<40, msg)
	}
	giant := binary.LittleEndian.AppendUint32(nil, 1<<30)
	giant = append(giant, logfmt.PeerMessage)
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rand.Uint32())
	}

	serverAddr, clientAddr := registeredAddr(t, home, "server"), registeredAddr(t, home, "client")
	rssBefore := rssKiB(server.cmd.Process.Pid, "VmRSS")
	for _, a := range []struct {
		what, addr string
		conf       *tls.Config
		payload    []byte
	}{
		{"plaintext hello as mallory with an Inc", serverAddr, nil, frames("mallory", "server", inc)},
		{"plaintext hello as client with an Inc", serverAddr, nil, frames("client", "server", inc)},
		{"TLS without a certificate, as client", serverAddr, noCert, frames("client", "server", inc)},
		{"another CA's certificate for client", serverAddr, certConfig(t, other.Dir(), "client"), frames("client", "server", inc)},
		{"mallory's certificate, hello as client", serverAddr, certConfig(t, stolen.Dir(), "mallory"), frames("client", "server", inc)},
		{"client's certificate, expired", serverAddr, certConfig(t, stolen.Dir(), "client"), frames("client", "server", inc)},
		{"plaintext forged result as server", clientAddr, nil, frames("server", "client", result)},
		{"another CA's certificate for server, a result", clientAddr, certConfig(t, other.Dir(), "server"), frames("server", "client", result)},
		{"mallory's certificate, hello as server, a result", clientAddr, certConfig(t, stolen.Dir(), "mallory"), frames("server", "client", result)},
		{"server's certificate, expired, a result", clientAddr, certConfig(t, stolen.Dir(), "server"), frames("server", "client", result)},
		{"a header claiming 1 GiB", serverAddr, nil, giant},
		{"a header claiming 1 GiB, again", serverAddr, nil, giant},
		{"a header claiming 1 GiB, a third time", serverAddr, nil, giant},
		{"random bytes", serverAddr, nil, garbage},
		{"an HTTP request", serverAddr, nil, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
	} {
		if ans := attempt(a.addr, a.conf, a.payload); strings.HasPrefix(ans, "welcome") {
			t.Errorf("%s: the coordinator answered %q", a.what, ans)
		} else {
			t.Logf("%s: %s", a.what, ans)
		}
	}
	rssAfter := rssKiB(server.cmd.Process.Pid, "VmRSS")

	// A deposed primary of client (a valid certificate, an older epoch
	// than one seen since) is refused; the newer epoch is welcome.
	if err := stolen.Issue("client", time.Now().Add(-time.Hour), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ans := attempt(serverAddr, certConfig(t, stolen.Dir(), "client"), logfmt.AppendPeerHelloAt(nil, "client", "server", 9)); !strings.HasPrefix(ans, "welcome") {
		t.Fatalf("client at epoch 9: %q, want a welcome", ans)
	}
	if ans := attempt(serverAddr, certConfig(t, stolen.Dir(), "client"), logfmt.AppendPeerHelloAt(nil, "client", "server", 5)); !strings.Contains(ans, "not its primary: epoch 9 has said hello here since") {
		t.Fatalf("client at epoch 5 after epoch 9: %q, want a refusal", ans)
	}

	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()
	calls, err := loggedCalls(server.dir(), "Inc")
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls["client"] != k {
		t.Fatalf("the server logged Inc calls %v, want exactly %d from client", calls, k)
	}
	if !strings.Contains(server.out.String(), "refused a connection") || !strings.Contains(client.out.String(), "refused a connection") {
		t.Fatalf("no refusal was logged; server:\n%s\nclient:\n%s", server.out.String(), client.out.String())
	}
	// The 1 GiB claims: nothing near their size was allocated.
	if rssBefore > 0 && rssAfter-rssBefore > 64<<10 {
		t.Fatalf("the server's RSS grew from %d to %d KiB during the attacks", rssBefore, rssAfter)
	}
	t.Logf("server RSS %d KiB before the attacks, %d after", rssBefore, rssAfter)
	for _, line := range strings.Split(server.out.String()+client.out.String(), "\n") {
		if strings.Contains(line, "refused") {
			t.Log(line)
		}
	}
}

// TestPlaintextHelloLimit: with TLS off (hellos are then taken on trust),
// the frame limit before a hello still holds: headers claiming 1 GiB cost
// nothing, and the coordinator stays up and correct.
func TestPlaintextHelloLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 20
	server, client := pair(t, k)
	server.extra = []string{"--peer-tls", "off"}
	client.extra = []string{"--peer-tls", "off"}
	server.start()
	client.start()
	progress(t, server, 1)
	addr := registeredAddr(t, server.home, "server")
	before := rssKiB(server.cmd.Process.Pid, "VmRSS")
	giant := binary.LittleEndian.AppendUint32(nil, 1<<30)
	giant = append(append(giant, logfmt.PeerMessage), make([]byte, 10)...)
	for range 3 {
		if ans := attempt(addr, nil, giant); !strings.HasPrefix(ans, "closed") {
			t.Fatalf("a 1 GiB header before the hello: %q, want the connection closed", ans)
		}
	}
	after := rssKiB(server.cmd.Process.Pid, "VmRSS")
	checkExact(t, waitClient(t, client, server).Results, k)
	if before > 0 && after-before > 64<<10 {
		t.Fatalf("three 1 GiB headers grew the server's RSS from %d to %d KiB", before, after)
	}
	t.Logf("server RSS %d KiB before three 1 GiB headers, %d after", before, after)
}

// TestIdlePeers: a thousand authenticated peers (certificates from the
// registry's CA, hellos that match them) connect to one coordinator and
// then say nothing. Its memory stays bounded, and a real client then runs
// against it exactly.
func TestIdlePeers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 20
	server, client := pair(t, k)
	server.start()
	// Wait for its first start: the server registers once it listens.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := (engine.FileRegistry{Dir: engine.DefaultRegistryDir(server.home)}).Lookup("server"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server did not register; output:\n%s", server.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	server.appPid()
	addr := registeredAddr(t, server.home, "server")
	ca := copyCA(t, server.home)
	pid := server.cmd.Process.Pid
	before := rssKiB(pid, "VmRSS")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range *idlePeers {
		name := fmt.Sprintf("idle-%d", i)
		if err := ca.Issue(name, time.Now().Add(-time.Hour), 24*time.Hour); err != nil {
			t.Fatal(err)
		}
		var tc *tls.Conn
		for tries := 0; ; tries++ {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			tc = tls.Client(conn, certConfig(t, ca.Dir(), name))
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				t.Fatalf("peer %d: %v", i, err)
			}
			if _, err := tc.Write(logfmt.AppendPeerHello(nil, name, "server")); err != nil {
				t.Fatal(err)
			}
			f, err := logfmt.NewPeerReader(tc).Next()
			if err == nil && f.Kind == logfmt.PeerWelcome {
				break
			}
			tc.Close()
			// Until its first start is complete, the server says so.
			if err != nil || !strings.Contains(f.Reason, "not ready") || tries > 300 {
				t.Fatalf("peer %d: %+v, %v; want a welcome", i, f, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = tc.SetDeadline(time.Time{})
		conns = append(conns, tc)
	}
	time.Sleep(200 * time.Millisecond) // let the last links settle before reading RSS
	after := rssKiB(pid, "VmRSS")
	t.Logf("server coordinator RSS: %d KiB before, %d KiB with %d idle authenticated peers (%.1f KiB per peer)", before, after, len(conns), float64(after-before)/float64(len(conns)))
	// Each idle link holds a small read buffer, a TLS connection and three
	// goroutines: well under 128 KiB each, whatever the peers send next.
	if perPeer := (after - before) / max(len(conns), 1); perPeer > 128 {
		t.Fatalf("%d KiB of RSS per idle peer", perPeer)
	}
	client.start()
	checkExact(t, waitClient(t, client, server).Results, k)
}

// TestStoppedApp: the server's app is stopped (SIGSTOP) while a job streams
// to it. Both coordinators' memory stays within a bound set by their
// budget, not by what the job sends; after SIGCONT the totals are exact.
func TestStoppedApp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildEcho(t)
	const size = 32 << 10
	n := *stoppedMiB << 20 / size
	budget := fmt.Sprintf("%dMiB", *stoppedBudMB)
	server, job := echoPair(t, nil, "--count", strconv.Itoa(n), "--size", strconv.Itoa(size), "--burst", "16")
	server.extra = []string{"--app-budget", budget}
	job.extra = []string{"--app-budget", budget}
	server.start()
	job.start()
	progressed(t, server, 16)
	app := server.appPid()
	if err := syscall.Kill(app, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = syscall.Kill(app, syscall.SIGCONT)
		}
	}()
	// Until the job's log stops growing: the stream is held back.
	last, still := -1, 0
	for still < 10 {
		time.Sleep(200 * time.Millisecond)
		var js echo.JobState
		newestState(job.dir(), &js)
		calls, _ := loggedCalls(job.dir(), "burst")
		if calls["job"] == last {
			still++
		} else {
			last, still = calls["job"], 0
		}
	}
	serverPeak, jobPeak := rssKiB(server.cmd.Process.Pid, "VmHWM"), rssKiB(job.cmd.Process.Pid, "VmHWM")
	calls, _ := loggedCalls(server.dir(), "data")
	t.Logf("app stopped: the job got %d of %d bursts out, the server logged %d of %d messages; peak RSS: server's coordinator %d KiB, job's %d KiB (budget %s, %d MiB sent in all)",
		last, n/16, calls["job"], n, serverPeak, jobPeak, budget, *stoppedMiB)
	if calls["job"] >= n {
		t.Fatalf("the server logged all %d messages while its app was stopped: nothing held the stream back", n)
	}
	_ = syscall.Kill(app, syscall.SIGCONT)
	stopped = false
	checkTotals(t, waitServer(t, server, func(s echo.ServerState) bool { return s.Total > 0 && s.Count == s.Total }, job), n, size)
	serverPeak, jobPeak = rssKiB(server.cmd.Process.Pid, "VmHWM"), rssKiB(job.cmd.Process.Pid, "VmHWM")
	t.Logf("after SIGCONT, exact; peak RSS over the run: server's coordinator %d KiB, job's %d KiB", serverPeak, jobPeak)
	// The bound: a few budgets (input, output, the copies in flight) and
	// the process's own base, far below the stream.
	limit := (8**stoppedBudMB + 64) << 10
	if serverPeak > limit || jobPeak > limit {
		t.Fatalf("peak RSS server %d KiB, job %d KiB; want both under %d KiB", serverPeak, jobPeak, limit)
	}
}

// TestLostAcknowledgedInput: the server's log loses records it had
// acknowledged (its directory is restored from an older copy). Both sides
// name the loss, with the sequence numbers, and `ambr ls` shows it; neither
// wedges in silence.
func TestLostAcknowledgedInput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 200
	server, client := pair(t, k)
	client.appArgs = append(client.appArgs, "--interval", "5ms")
	server.start()
	client.start()
	progress(t, server, 10)
	server.stop()
	backup := t.TempDir()
	copyDir(t, server.dir(), backup)
	server.start()
	progress(t, server, 40)
	server.killAll()
	// Restore the old copy: the server forgets calls it acknowledged.
	if err := os.RemoveAll(server.dir()); err != nil {
		t.Fatal(err)
	}
	copyDir(t, backup, server.dir())
	server.start()
	deadline := time.Now().Add(*clientTimeout)
	for !(strings.Contains(server.out.String(), "lost input it had acknowledged") && strings.Contains(client.out.String(), "lost input it had acknowledged")) {
		if time.Now().After(deadline) {
			t.Fatalf("the loss was not named on both sides; server:\n%s\nclient:\n%s", server.out.String(), client.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, line := range strings.Split(client.out.String(), "\n") {
		if strings.Contains(line, "lost input") {
			t.Logf("client: %s", line)
		}
	}
	b, err := exec.Command(builtBins.ambr, "--home", server.home, "ls", "--json").Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("ls with lost acknowledged input: %v, want exit 1", err)
	}
	out := string(b)
	var views []instanceView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, out)
	}
	shown := 0
	for _, v := range views {
		if strings.Contains(v.Problems[map[string]string{"client": "server", "server": "client"}[v.Name]], "lost input") {
			shown++
		}
	}
	if shown != 2 {
		t.Fatalf("ls shows the loss on %d of the two instances:\n%s", shown, out)
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
}

// TestUserCA: instances run with --tls DIR trust that CA only: a client
// from it calls the server exactly; a client whose certificate comes from
// the registry's own CA (an instance started without --tls) is refused,
// and nothing of it is logged.
func TestUserCA(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 20
	server, client := pair(t, k)
	ca := filepath.Join(t.TempDir(), "ca")
	for _, args := range [][]string{{"certs", "init", ca}, {"certs", "issue", ca, "server", "client"}} {
		if out, err := exec.Command(builtBins.ambr, args...).CombinedOutput(); err != nil {
			t.Fatalf("ambr %v: %v\n%s", args, err, out)
		}
	}
	server.extra = []string{"--tls", ca}
	client.extra = []string{"--tls", ca}
	outsider := newInst(t, server.home, "outsider", counterBins.client, "--server", "server", "--count", "5")
	t.Cleanup(outsider.stop)
	server.start()
	client.start()
	outsider.start()
	checkExact(t, waitClient(t, client, server).Results, k)
	deadline := time.Now().Add(*clientTimeout)
	// Each side refuses the other's certificate; the outsider finds out first.
	for !strings.Contains(outsider.out.String(), "not from the CA this coordinator trusts") || !strings.Contains(server.out.String(), "refused a connection") {
		if time.Now().After(deadline) {
			t.Fatalf("the outsider's connections were not refused; server:\n%s\noutsider:\n%s", server.out.String(), outsider.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	outsider.stop()
	client.stop()
	server.stop()
	calls, err := loggedCalls(server.dir(), "Inc")
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls["client"] != k {
		t.Fatalf("the server logged Inc calls %v, want exactly %d from client", calls, k)
	}
}
