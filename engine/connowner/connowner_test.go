package connowner

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// The test binary doubles as a helper process that connects to a port and
// waits: CONNOWNER_DIAL=addr.
func TestMain(m *testing.M) {
	if addr := os.Getenv("CONNOWNER_DIAL"); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println("connected")
		var b [1]byte
		c.Read(b[:]) // until the test closes its end
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func skipUnlessLinux(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("connowner resolves connections on Linux only")
	}
}

func accept(t *testing.T, network, addr string, dial func(string)) net.Conn {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	defer l.Close()
	go dial(l.Addr().String())
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestLookupOwnProcess(t *testing.T) {
	skipUnlessLinux(t)
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		dialed := make(chan net.Conn, 1)
		c := accept(t, tc.network, tc.addr, func(a string) {
			d, err := net.Dial("tcp", a)
			if err != nil {
				panic(err)
			}
			dialed <- d
		})
		d := <-dialed
		o, err := Lookup(c)
		if err != nil {
			t.Fatalf("%s: %v", tc.network, err)
		}
		if len(o.PIDs) != 1 || o.PIDs[0] != os.Getpid() || o.UID != os.Getuid() {
			t.Fatalf("%s: owner %v, want pid %d uid %d", tc.network, o, os.Getpid(), os.Getuid())
		}
		// Once the other end is closed and gone, nobody holds it.
		d.Close()
		d = nil
		if o, err := Lookup(c); err == nil && len(o.PIDs) != 0 {
			t.Fatalf("%s: after close, owner %v", tc.network, o)
		}
	}
}

func TestLookupChildProcess(t *testing.T) {
	skipUnlessLinux(t)
	var child *exec.Cmd
	started := make(chan error, 1)
	c := accept(t, "tcp4", "127.0.0.1:0", func(a string) {
		child = exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), "CONNOWNER_DIAL="+a)
		started <- child.Start()
	})
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	defer child.Wait()
	defer c.Close()
	o, err := Lookup(c)
	if err != nil {
		t.Fatal(err)
	}
	if o.Pid() != child.Process.Pid || len(o.PIDs) != 1 {
		t.Fatalf("owner %v, want the child %d", o, child.Process.Pid)
	}
	if !o.AllDescendants(os.Getpid()) || !IsDescendant(child.Process.Pid, child.Process.Pid) {
		t.Fatalf("the child %d is not counted as this process's descendant", child.Process.Pid)
	}
	if IsDescendant(os.Getpid(), child.Process.Pid) || (Owner{UID: 0}).AllDescendants(os.Getpid()) {
		t.Fatal("the parent counted as its child's descendant, or no pids as all descendants")
	}
	if IsDescendant(os.Getppid(), os.Getpid()) {
		t.Fatal("this process's parent counted as its descendant")
	}
}

func TestLookupNotTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := Lookup(a); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("a pipe: err %v, want a 'not a TCP connection' error", err)
	}
}

// BenchmarkLookup measures one resolution on this machine (it scans every
// process's descriptors).
func BenchmarkLookup(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("linux only")
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	d, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	c, err := l.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for b.Loop() {
		if _, err := Lookup(c); err != nil {
			b.Fatal(err)
		}
	}
}
