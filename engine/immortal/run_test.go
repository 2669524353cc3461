package immortal

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func portOf(l net.Listener) string {
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

func TestRun(t *testing.T) {
	recv := listen(t, "127.0.0.1:0")
	spare := listen(t, "127.0.0.1:0") // a free port for the send port, opened late
	sendPort := portOf(spare)
	spare.Close()
	t.Setenv(EnvReceivePort, portOf(recv))
	t.Setenv(EnvSendPort, sendPort)
	t.Setenv(EnvInstance, "alice")

	app := newTestApp(&observer{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx) }()

	toIC, err := recv.Accept() // the app connects to the receive port first
	if err != nil {
		t.Fatal(err)
	}
	defer toIC.Close()
	// The send port opens only now: Run keeps trying until it is up.
	send := listen(t, "127.0.0.1:"+sendPort)
	fromIC, err := send.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer fromIC.Close()

	if _, err := fromIC.Write(logfmt.AppendWireRecord(nil, 1, logfmt.SeqControl, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint))); err != nil {
		t.Fatal(err)
	}
	mr := logfmt.NewMessageReader(toIC)
	for _, want := range []logfmt.MessageType{logfmt.TypeInitialMessage, logfmt.TypeCheckpoint} {
		m, err := mr.Next()
		if err != nil || m.Type != want {
			t.Fatalf("app sent %v (%v), want %v", m.Type, err, want)
		}
	}
	if app.Name() != "alice" {
		t.Errorf("name %q, want alice from %s", app.Name(), EnvInstance)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v when canceled, want nil", err)
	}
}

func TestRunWithoutPorts(t *testing.T) {
	t.Setenv(EnvReceivePort, "")
	t.Setenv(EnvSendPort, "")
	err := newTestApp(&observer{}).Run(t.Context())
	if err == nil || !strings.Contains(err.Error(), EnvReceivePort) {
		t.Errorf("Run without ports: %v", err)
	}
}
