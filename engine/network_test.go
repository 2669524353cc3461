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
	"github.com/ambr-dev/ambr/engine/immortal"
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

// TestMutualStreamedRecovery (found in review): two instances that talk to
// each other restart together, each replaying a log longer than its
// read-ahead whose regenerated output to the other is over its output
// budget. The other acknowledges that output only once it listens, which
// it does only after its own replay: held to the budget during the replay,
// neither replay ended. Both recover, and the client's results are exactly
// 1..k.
func TestMutualStreamedRecovery(t *testing.T) {
	const k = 60
	mem := vfs.NewMem()
	reg := engine.FileRegistry{Dir: filepath.Join(t.TempDir(), "registry")}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(name string, budget int64) engine.Options {
		return engine.Options{Dir: "/home/" + name, Name: name, FS: mem, Registry: reg, Logger: quiet, AppBudget: budget}
	}
	type pair struct {
		client            *immortal.App[counter.ClientState]
		stop              func()
		server, clientErr chan error
	}
	start := func(budget int64) pair {
		ctx, cancel := context.WithCancel(context.Background())
		p := pair{client: counter.NewClient(counter.ClientArgs{Server: "server", Count: k}, nil), stop: cancel,
			server: make(chan error, 1), clientErr: make(chan error, 1)}
		go func() {
			p.server <- hosted.Run(ctx, func() hosted.App { return counter.NewServer(nil) }, opts("server", budget))
		}()
		go func() { p.clientErr <- hosted.Run(ctx, func() hosted.App { return p.client }, opts("client", budget)) }()
		return p
	}
	stop := func(p pair) {
		p.stop()
		for _, c := range []chan error{p.server, p.clientErr} {
			if err := <-c; err != nil {
				t.Error(err)
			}
		}
	}
	wait := func(p pair, done func(counter.ClientState) bool) bool {
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if s, ok := p.client.State(); ok && done(s) {
				return true
			}
		}
		return false
	}
	p := start(0)
	if !wait(p, func(s counter.ClientState) bool { return len(s.Results) >= k/2 }) {
		t.Fatal("the first run made no progress")
	}
	stop(p)

	defer engine.ShrinkReplayAheadForTest()()
	p = start(1)
	ok := wait(p, func(s counter.ClientState) bool { return s.Done })
	s, _ := p.client.State()
	stop(p)
	if !ok {
		t.Fatalf("after restarting both: the client has %d of %d results and is not done", len(s.Results), k)
	}
	for i, r := range s.Results {
		if r != i+1 {
			t.Fatalf("results %v; want exactly 1..%d", s.Results, k)
		}
	}
}
