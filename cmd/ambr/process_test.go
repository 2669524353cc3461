package main

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

var (
	killsFlag  = flag.Int("kills", 20, "process test: SIGKILLs of the app, and as many of the whole ambr run")
	targetFlag = flag.Int("target", 15000, "process test: the accumulator's target")
)

var (
	buildOnce sync.Once
	builtBins struct {
		ambr, acc string
		err       error
	}
)

// binaries builds the ambr command and the accumulator sample once per test
// run, as real executables.
func binaries(t *testing.T) (ambr, acc string) {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ambr-bins-")
		if err != nil {
			builtBins.err = err
			return
		}
		builtBins.ambr, builtBins.acc = filepath.Join(dir, "ambr"), filepath.Join(dir, "accumulator")
		for pkg, out := range map[string]string{".": builtBins.ambr, "../../samples/accumulator": builtBins.acc} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				builtBins.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if builtBins.err != nil {
		t.Fatal(builtBins.err)
	}
	return builtBins.ambr, builtBins.acc
}

// TestKillLoopProcesses runs the accumulator under the real ambr binary and
// SIGKILLs the app process and the whole `ambr run` process at random
// moments, restarting ambr run each time as a user would. The final state
// must equal a failure-free run's, with every add logged exactly once.
func TestKillLoopProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for several seconds; go test without -short runs it")
	}
	ambr, acc := binaries(t)
	home := t.TempDir()
	dir := filepath.Join(home, "acc")
	args := accum.InitArgs{Target: *targetFlag, Ticks: 10}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	t.Logf("seed %d, %d kills of each kind, target %d", seed, *killsFlag, args.Target)

	var out syncBuffer
	start := func() *exec.Cmd {
		cmd := exec.Command(ambr, "--home", home, "run", acc, "--name", "acc", "-q", "--segment-size", "32768", "--",
			"--target", strconv.Itoa(args.Target), "--ticks", strconv.Itoa(args.Ticks), "--tick-every", "3ms", "--print-every", "1000000000")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	killed := map[int64]bool{} // by start time: pids are reused
	var started int64
	waitApp := func() int {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if st, ok := supervise.ReadRunStatus(dir); ok && st.AppPid != 0 && !killed[st.AppStarted] && supervise.Alive(st.AppPid) {
				started = st.AppStarted
				return st.AppPid
			}
			time.Sleep(2 * time.Millisecond)
		}
		t.Fatalf("no app process came up; ambr output:\n%s", out.String())
		return 0
	}
	cmd := start()
	midRun := 0
	for i := 0; i < 2**killsFlag; i++ {
		pid := waitApp()
		time.Sleep(time.Duration(5+rng.IntN(60)) * time.Millisecond)
		if s, _ := accum.NewestState(dir); !s.Done {
			midRun++
		}
		killed[started] = true
		if i%2 == 0 {
			// The app only: its coordinator restarts it and it recovers.
			_ = syscall.Kill(pid, syscall.SIGKILL)
			continue
		}
		// The whole ambr run: a machine failure. Run the same command again.
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		cmd = start()
	}
	waitApp() // the last ambr run is up (and handles SIGINT) before we wait
	deadline := time.Now().Add(90 * time.Second)
	var final accum.State
	for {
		if s, ok := accum.NewestState(dir); ok && s.Done {
			final = s
			break
		}
		if time.Now().After(deadline) {
			s, _ := accum.NewestState(dir)
			t.Fatalf("not done 90s after the last kill; newest state %+v; output:\n%s", s, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatal(err)
		}
		t.Fatalf("ambr run did not stop cleanly on SIGINT: %v\n%s", err, out.String())
	}
	if want := accum.Expected(args); final != want {
		t.Fatalf("final state %+v, want %+v", final, want)
	}
	adds, err := accum.LoggedAdds(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(adds) != args.Target {
		t.Fatalf("log holds %d distinct adds, want %d", len(adds), args.Target)
	}
	for a, n := range adds {
		if n != 1 {
			t.Fatalf("add %s logged %d times", a, n)
		}
	}
	if midRun < *killsFlag {
		t.Fatalf("only %d of %d kills came before the run was done; raise -target", midRun, 2**killsFlag)
	}
	t.Logf("%d kills, %d of them mid-run", 2**killsFlag, midRun)
}

// syncBuffer collects the output of processes.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}

// TestDemo runs `ambr demo` (counter) and `ambr demo accumulator` as a user
// does, from the repository root.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes for several seconds; go test without -short runs it")
	}
	ambr, _ := binaries(t)
	home := t.TempDir()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"demo", "--kills", "10", "--count", "100"}, []string{"kill 10/10: kill -9 demo-", "✓ exactly 1..100 after 10 kills: nothing lost, nothing repeated."}},
		{[]string{"demo", "accumulator", "--kills", "4", "--target", "3000"}, []string{"kill  4/4: kill -9 demo's", "✓ exactly the same after 4 kills: every step 1..3000 logged once"}},
	} {
		cmd := exec.Command(ambr, append([]string{"--home", home}, tc.args...)...)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ambr %v: %v\n%s", tc.args, err, out)
		}
		for _, want := range tc.want {
			if !strings.Contains(string(out), want) {
				t.Fatalf("ambr %v output lacks %q:\n%s", tc.args, want, out)
			}
		}
	}
	var s counter.ClientState
	if !newestState(filepath.Join(home, demoClient), &s) || len(s.Results) != 100 || s.Results[99] != 100 {
		t.Fatalf("the counter demo left client state %+v", s)
	}
	if a, ok := accum.NewestState(filepath.Join(home, demoAccumulator)); !ok || a != accum.Expected(accum.InitArgs{Target: 3000, Ticks: 10}) {
		t.Fatalf("the accumulator demo left state %+v", a)
	}
}
