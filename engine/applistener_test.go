package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/connowner"
	"github.com/ambr-dev/ambr/logfmt"
)

// logBuffer collects a listener's warnings.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listenForTest(t *testing.T, cfg TCPConfig) (*TCPListener, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	l, err := ListenApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, logs
}

func dialPort(t *testing.T, port int) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByPeer waits until the listener closed c: a read ends without data.
func closedByPeer(t *testing.T, c net.Conn, what string) {
	t.Helper()
	var b [1]byte
	n, err := c.Read(b[:])
	if n != 0 || err == nil {
		t.Fatalf("%s: read %d bytes, %v; want it closed by the listener", what, n, err)
	}
}

func skipUnlessLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the app listener identifies processes on Linux only")
	}
}

// TestAppListenerRefusesOtherProcesses: a connection from a process the
// policy does not admit is closed at once, with one warning line, and never
// handed out as the app.
func TestAppListenerRefusesOtherProcesses(t *testing.T) {
	skipUnlessLinux(t)
	l, logs := listenForTest(t, TCPConfig{Policy: AppsOfUser(os.Getuid() + 1)})
	closedByPeer(t, dialPort(t, l.RecvPort), "receive port")
	closedByPeer(t, dialPort(t, l.SendPort), "send port")
	out := logs.String()
	for _, port := range []string{"receive", "send"} {
		want := fmt.Sprintf("refused a connection to the app's %s port from pid %d (uid %d)", port, os.Getpid(), os.Getuid())
		if strings.Count(out, want) != 1 {
			t.Errorf("want one warning %q; log:\n%s", want, out)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if c, err := l.Accept(ctx); err == nil {
		c.Close()
		t.Fatal("a refused pair was handed out as the app")
	}
}

// TestAppListenerHalfPairTimesOut: the receive half of a pair whose send
// half never comes is closed after the pair timeout, with a warning, and a
// fresh pair is accepted after it: no wedge.
func TestAppListenerHalfPairTimesOut(t *testing.T) {
	skipUnlessLinux(t)
	l, logs := listenForTest(t, TCPConfig{PairTimeout: 20 * time.Millisecond})
	closedByPeer(t, dialPort(t, l.RecvPort), "a receive half alone")
	if want := "did not connect to the send port within 20ms"; !strings.Contains(logs.String(), want) {
		t.Fatalf("no warning %q; log:\n%s", want, logs.String())
	}
	// A whole pair still pairs. Under load the two dials can be more than
	// the 20 ms apart, and the receive half is then closed as above: dial
	// again rather than wait for ever.
	var conn AppConn
	var recv, send net.Conn
	for attempt := 1; ; attempt++ {
		recv, send = dialPort(t, l.RecvPort), dialPort(t, l.SendPort)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		c, err := l.Accept(ctx)
		cancel()
		if err == nil {
			conn = c
			break
		}
		recv.Close()
		send.Close()
		if attempt == 10 {
			t.Fatalf("no pair accepted in %d attempts: %v", attempt, err)
		}
	}
	defer conn.Close()
	checkPair(t, conn, recv, send)
	if conn.Pid != os.Getpid() {
		t.Fatalf("pair from pid %d, want this process %d", conn.Pid, os.Getpid())
	}
}

// TestAppListenerSecondConnectionSamePort: one receive connection per app
// start; a second one from the same process is refused and the first pairs.
func TestAppListenerSecondConnectionSamePort(t *testing.T) {
	skipUnlessLinux(t)
	l, logs := listenForTest(t, TCPConfig{})
	recv := dialPort(t, l.RecvPort)
	// The second connection is refused once the first is admitted; the
	// first's arrival is serialised with it by the accept loop.
	extra := dialPort(t, l.RecvPort)
	closedByPeer(t, extra, "a second receive connection")
	if !strings.Contains(logs.String(), "a second connection to the same port") {
		t.Fatalf("no warning; log:\n%s", logs.String())
	}
	send := dialPort(t, l.SendPort)
	conn, err := l.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	checkPair(t, conn, recv, send)
}

// checkPair proves conn is the pair (recv, send) dialed: bytes written on
// the dialed receive connection arrive on conn.Recv, and bytes written on
// conn.Send arrive on the dialed send connection.
func checkPair(t *testing.T, conn AppConn, recv, send net.Conn) {
	t.Helper()
	tag := []byte(fmt.Sprintf("tag-%p", recv))
	go recv.Write(tag)
	got := make([]byte, len(tag))
	if _, err := io.ReadFull(conn.Recv, got); err != nil || !bytes.Equal(got, tag) {
		t.Fatalf("the receive stream is not the dialed one: %q, %v", got, err)
	}
	go conn.Send.Write(tag)
	if _, err := io.ReadFull(send, got); err != nil || !bytes.Equal(got, tag) {
		t.Fatalf("the send stream is not the dialed one: %q, %v", got, err)
	}
}

// FuzzAppPairing drives a listener with a script of connects and closes on
// both ports (each byte: bit 0 the port, bit 1 close it right away), each
// connection tagged with its port, then dials fresh pairs and takes what
// the listener hands out until the fresh one comes. Whatever the script,
// every pair handed out is one receive-port and one send-port connection,
// and a fresh pair always gets through: the pairing never wedges.
func FuzzAppPairing(f *testing.F) {
	if runtime.GOOS != "linux" {
		f.Skip("linux only")
	}
	for _, seed := range [][]byte{{}, {0}, {1}, {0, 1}, {1, 0}, {0, 0, 1}, {2, 0, 1}, {0, 3, 1}, {0, 1, 0, 1}, {1, 1, 0, 2, 0}, {0, 0, 0, 1, 1, 1}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		if len(script) > 16 {
			script = script[:16]
		}
		l, _ := listenForTest(t, TCPConfig{PairTimeout: time.Hour})
		dial := func(port int, tag string) net.Conn {
			c := dialPort(t, [2]int{l.RecvPort, l.SendPort}[port])
			c.Write([]byte(tag))
			return c
		}
		for i, op := range script {
			c := dial(int(op&1), fmt.Sprintf("%c%03d", "rs"[op&1], i))
			if op&2 != 0 {
				c.Close()
			}
		}
		for round := 0; ; round++ {
			if round > len(script)+2 {
				t.Fatalf("the fresh pair did not get through after %d rounds", round)
			}
			dial(0, "rNEW")
			dial(1, "sNEW")
			conn, err := l.Accept(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			recvTag, sendTag := make([]byte, 4), make([]byte, 4)
			_, err1 := io.ReadFull(conn.Recv, recvTag)
			_, err2 := io.ReadFull(conn.Send.(net.Conn), sendTag)
			conn.Close()
			if err1 != nil || err2 != nil || recvTag[0] != 'r' || sendTag[0] != 's' {
				t.Fatalf("a pair of %q (%v) and %q (%v): not one receive and one send connection", recvTag, err1, sendTag, err2)
			}
			if string(recvTag) == "rNEW" {
				return
			}
		}
	})
}

// FuzzAppFirstBytes feeds any bytes as what an app sends, through the
// receive connection's wrapper and the coordinator's message reader as
// readApp does. An oversize message is named exactly when the reader
// stopped at a size field over the limit, with that size.
func FuzzAppFirstBytes(f *testing.F) {
	giant := binary.AppendVarint(nil, 1_100_000_000)
	f.Add(append(append([]byte(nil), giant...), byte(logfmt.TypeRPC), 0, 0, 2, 1, 'x'))
	f.Add(append(logfmt.AppendInitialMessage(nil, []byte("hi")), giant...))
	f.Add(append(logfmt.AppendCheckpointMessage(nil, 3), 'a', 'b', 'c', 0xff, 0xff, 0xff, 0xff, 0x0f))
	f.Add([]byte{0})
	f.Add([]byte{0x80, 0x80})
	f.Add(binary.AppendVarint(nil, -5))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() { b.Write(data); b.Close() }()
		r := &appRecvConn{Conn: a}
		mr := logfmt.NewMessageReader(r)
		var start int64
		var err error
		for {
			start = mr.Offset()
			var m logfmt.Message
			if m, err = mr.Next(); err != nil {
				break
			}
			if m.Type == logfmt.TypeCheckpoint {
				if _, err = io.Copy(io.Discard, mr.State()); err != nil {
					break
				}
			}
		}
		explained := explainAppReadError(r, start, mr.Offset(), err)
		size, n := binary.Varint(data[start:min(len(data), int(mr.Offset()))])
		oversize := n > 0 && size > logfmt.MaxMessageSize && errors.Is(err, logfmt.ErrMalformed)
		var o *OversizeMessage
		if errors.As(explained, &o) != oversize {
			t.Fatalf("oversize %v, explained as %v (read error %v)", oversize, explained, err)
		}
		if oversize && (o.Size != size || o.Limit != logfmt.MaxMessageSize) {
			t.Fatalf("named size %d, limit %d; the stream says %d", o.Size, o.Limit, size)
		}
	})
}

// TestAppPolicyAdmits: each policy admits what it says, also for root,
// whose uid 0 once made "any process of uid 0" read as the default.
func TestAppPolicyAdmits(t *testing.T) {
	skipUnlessLinux(t)
	self := connowner.Owner{UID: os.Getuid(), PIDs: []int{os.Getpid()}}
	initProc := connowner.Owner{UID: 0, PIDs: []int{1}}
	for _, tc := range []struct {
		policy AppPolicy
		owner  connowner.Owner
		want   bool
	}{
		{SupervisedApp(), self, true},
		{SupervisedApp(), initProc, false},
		{AppPolicy{}, initProc, false},
		{AppsOfUser(0), initProc, true},
		{AppsOfUser(os.Getuid() + 1), self, false},
		{AppProcess(os.Getpid()), self, true},
		{AppProcess(os.Getpid()), initProc, false},
		{AppProcess(1), self, true}, // everything descends from init
		{SupervisedApp(), connowner.Owner{UID: os.Getuid()}, false},
	} {
		if got := tc.policy.admits(tc.owner); got != tc.want {
			t.Errorf("%s admits %s: %v, want %v", tc.policy, tc.owner, got, tc.want)
		}
	}
}

// TestAppListenerOnePairPerStart: an app process (bash, a child of this
// test, so admitted) opens a receive and a send connection, then a second
// pair. The first pair is the app; the second pair is refused, each
// connection with one warning, whatever order the accept loops see them in.
func TestAppListenerOnePairPerStart(t *testing.T) {
	skipUnlessLinux(t)
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("needs bash for its /dev/tcp")
	}
	l, logs := listenForTest(t, TCPConfig{PairTimeout: time.Hour})
	script := fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%[1]d; printf r1 >&3; exec 4<>/dev/tcp/127.0.0.1/%[2]d
exec 5<>/dev/tcp/127.0.0.1/%[1]d; printf r2 >&5; exec 6<>/dev/tcp/127.0.0.1/%[2]d
read -r line`, l.RecvPort, l.SendPort) // read, a builtin: no child holds the sockets
	cmd := exec.Command(bash, "-c", script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	conn, err := l.Accept(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tag := make([]byte, 2)
	if _, err := io.ReadFull(conn.Recv, tag); err != nil || string(tag) != "r1" || conn.Pid != cmd.Process.Pid {
		t.Fatalf("the app pair is %q (%v) from pid %d; want the first one, r1, from bash %d", tag, err, conn.Pid, cmd.Process.Pid)
	}
	deadline := time.Now().Add(30 * time.Second)
	for strings.Count(logs.String(), "refused a connection to the app's") < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	out := logs.String()
	if strings.Count(out, "refused a connection to the app's receive port") != 1 || strings.Count(out, "refused a connection to the app's send port") != 1 {
		t.Fatalf("want one refusal per port for the second pair; log:\n%s", out)
	}
	if !strings.Contains(out, fmt.Sprintf("from pid %d", cmd.Process.Pid)) {
		t.Fatalf("the refusals do not name bash's pid %d:\n%s", cmd.Process.Pid, out)
	}
}
