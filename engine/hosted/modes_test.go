package hosted_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
)

// The test binary doubles as the app process of the separate-process mode.
func TestMain(m *testing.M) {
	if os.Getenv("AMBR_TEST_AS_APP") == "1" {
		target, _ := strconv.Atoi(os.Getenv("AMBR_TEST_TARGET"))
		ticks, _ := strconv.Atoi(os.Getenv("AMBR_TEST_TICKS"))
		app := accum.New(accum.InitArgs{Target: target, Ticks: ticks}, io.Discard, 1)
		go accum.Tick(context.Background(), app, 5*time.Millisecond)
		immortal.Main(app)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var args = accum.InitArgs{Target: 300, Ticks: 5}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// waitDone polls the checkpoints until the state says done.
func waitDone(t *testing.T, dir string, failed <-chan error) accum.State {
	t.Helper()
	deadline := time.After(60 * time.Second)
	for {
		if s, ok := accum.NewestState(dir); ok && s.Done {
			return s
		}
		select {
		case err := <-failed:
			t.Fatalf("stopped before done: %v", err)
		case <-deadline:
			s, _ := accum.NewestState(dir)
			t.Fatalf("not done after 60s; newest checkpoint state %+v", s)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkLog asserts the log holds each add exactly once.
func checkLog(t *testing.T, dir string) {
	t.Helper()
	adds, err := accum.LoggedAdds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) != args.Target {
		t.Fatalf("log holds %d distinct adds, want %d", len(adds), args.Target)
	}
	for arg, n := range adds {
		if n != 1 {
			t.Fatalf("add %s logged %d times", arg, n)
		}
	}
}

func TestSeparateProcessWithAppKills(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "acc")
	l, err := engine.ListenTCP(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := engine.New(engine.Options{Dir: dir, Name: "acc", Listener: l, SegmentSize: 4 << 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	icErr := make(chan error, 1)
	go func() { icErr <- c.Run(ctx) }()
	start := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), append(l.Env(), "AMBR_TEST_AS_APP=1", "AMBR_INSTANCE=acc",
			"AMBR_TEST_TARGET="+strconv.Itoa(args.Target), "AMBR_TEST_TICKS="+strconv.Itoa(args.Ticks))...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	// Kill the app process with SIGKILL five times, once it has made
	// progress each time, and start it again; the coordinator stays.
	cmd := start()
	killedMidRun := 0
	for kill := 0; kill < 5; kill++ {
		time.Sleep(time.Duration(20+kill*15) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		cmd.Wait()
		if s, _ := accum.NewestState(dir); !s.Done {
			killedMidRun++
		}
		cmd = start()
	}
	if killedMidRun == 0 {
		t.Fatal("every kill came after the run was done; the test proves nothing (raise the target)")
	}
	s := waitDone(t, dir, icErr)
	cancel()
	if err := <-icErr; err != nil {
		t.Fatal(err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if want := accum.Expected(args); s != want {
		t.Fatalf("final state %+v, want %+v", s, want)
	}
	checkLog(t, dir)
}

func TestInProcessWithRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "acc")
	// Stop the whole process's worth of coordinator and app four times
	// mid-run (a clean stop here; kill -9 is the process tests' job), then
	// let it finish.
	for round := 0; ; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			errc <- hosted.Run(ctx, func() hosted.App {
				app := accum.New(args, io.Discard, 1)
				go accum.Tick(ctx, app, 5*time.Millisecond)
				return app
			}, engine.Options{Dir: dir, Name: "acc", SegmentSize: 4 << 10, Logger: quiet()})
		}()
		if round == 4 {
			s := waitDone(t, dir, errc)
			cancel()
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if want := accum.Expected(args); s != want {
				t.Fatalf("final state %+v, want %+v", s, want)
			}
			break
		}
		time.Sleep(time.Duration(15+round*10) * time.Millisecond)
		cancel()
		if err := <-errc; err != nil {
			t.Fatal(fmt.Errorf("round %d: %w", round, err))
		}
	}
	checkLog(t, dir)
}
