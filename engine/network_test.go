package engine_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// TestNetworkInProcess runs the counter's server and client as two hosted
// coordinators (the in-memory filesystem, real loopback TCP between them),
// stops the server twice mid-run and starts it again on a new port, and
// checks the client's results are exactly 1..k. The package's TestMain
// (goleak) fails the run if any goroutine of either coordinator is left.
func TestNetworkInProcess(t *testing.T) {
	const k = 60
	mem := vfs.NewMem()
	reg := engine.FileRegistry{Dir: filepath.Join(t.TempDir(), "registry")}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(name string) engine.Options {
		return engine.Options{Dir: "/home/" + name, Name: name, FS: mem, Registry: reg, Logger: quiet}
	}
	runServer := func(ctx context.Context) chan error {
		done := make(chan error, 1)
		go func() {
			done <- hosted.Run(ctx, func() hosted.App { return counter.NewServer(nil) }, opts("server"))
		}()
		return done
	}
	client := counter.NewClient(counter.ClientArgs{Server: "server", Count: k}, nil)
	cctx, cstop := context.WithCancel(context.Background())
	clientDone := make(chan error, 1)
	go func() {
		clientDone <- hosted.Run(cctx, func() hosted.App { return client }, opts("client"))
	}()

	results := func() int {
		s, _ := client.State()
		return len(s.Results)
	}
	for round := 0; round < 3; round++ {
		sctx, sstop := context.WithCancel(context.Background())
		serverDone := runServer(sctx)
		if round < 2 {
			// Let it make progress, then stop it mid-run.
			want := (round + 1) * k / 3
			deadline := time.Now().Add(20 * time.Second)
			for results() < want && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if results() < want {
				t.Fatalf("round %d: the client has %d results, waited for %d", round, results(), want)
			}
		} else {
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if s, ok := client.State(); ok && s.Done {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		sstop()
		if err := <-serverDone; err != nil {
			t.Fatalf("server round %d: %v", round, err)
		}
	}
	cstop()
	if err := <-clientDone; err != nil {
		t.Fatal(err)
	}
	s, _ := client.State()
	if len(s.Results) != k {
		t.Fatalf("%d results, want %d: %v", len(s.Results), k, s.Results)
	}
	for i, r := range s.Results {
		if r != i+1 {
			t.Fatalf("results[%d] = %d: %v", i, r, s.Results)
		}
	}
}
