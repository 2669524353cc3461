package engine

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// TestTCPListenerBothFamilies connects an app over 127.0.0.1 and, where the
// machine has IPv6, over [::1]: clients resolve localhost either way.
func TestTCPListenerBothFamilies(t *testing.T) {
	l, err := ListenTCP(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	hosts := []string{"127.0.0.1"}
	if c, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		c.Close()
		hosts = append(hosts, "::1")
	} else {
		t.Logf("no IPv6 loopback on this machine (%v); testing IPv4 only", err)
	}
	for _, host := range hosts {
		recv, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(l.RecvPort)))
		if err != nil {
			t.Fatalf("dial receive port on %s: %v", host, err)
		}
		send, err := net.Dial("tcp", net.JoinHostPort(host, strconv.Itoa(l.SendPort)))
		if err != nil {
			t.Fatalf("dial send port on %s: %v", host, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := l.Accept(ctx)
		cancel()
		if err != nil {
			t.Fatalf("accept over %s: %v", host, err)
		}
		// Bytes flow both ways.
		go recv.Write([]byte("ping"))
		buf := make([]byte, 4)
		if _, err := conn.Recv.Read(buf); err != nil || string(buf) != "ping" {
			t.Fatalf("over %s: read %q, %v", host, buf, err)
		}
		go conn.Send.Write([]byte("pong"))
		if _, err := send.Read(buf); err != nil || string(buf) != "pong" {
			t.Fatalf("over %s: read %q, %v", host, buf, err)
		}
		conn.Close()
		recv.Close()
		send.Close()
	}
}
