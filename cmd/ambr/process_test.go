package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
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

// newestAccState reads the newest valid checkpoint's accumulator state.
func newestAccState(dir string) (accum.State, bool) {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return accum.State{}, false
	}
	nums, _ := in.Checkpoints()
	for i := len(nums) - 1; i >= 0; i-- {
		if ck, err := in.ReadCheckpoint(nums[i]); err == nil {
			var wrap struct {
				State accum.State `json:"state"`
			}
			if json.Unmarshal(ck.State, &wrap) == nil {
				return wrap.State, true
			}
		}
	}
	return accum.State{}, false
}

// countAdds returns how often each add argument was logged.
func countAdds(t *testing.T, dir string) map[string]int {
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
	adds := map[string]int{}
	for {
		r, err := lr.Next()
		if err == io.EOF {
			return adds
		}
		if err != nil {
			t.Fatal(err)
		}
		it := logfmt.NewMessageIter(r.Messages)
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			if m.Type != logfmt.TypeRPC {
				continue
			}
			rpc, _ := logfmt.ParseRPC(m.Data)
			if method, _, payload, ok := immortal.DecodeArgs(rpc.Args, rpc.Reserved); ok && method == "add" {
				adds[string(payload)]++
			}
		}
	}
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
	waitApp := func() int {
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			if st, ok := supervise.ReadRunStatus(dir); ok && st.AppPid != 0 && supervise.Alive(st.AppPid) {
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
		if s, _ := newestAccState(dir); !s.Done {
			midRun++
		}
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
		if s, ok := newestAccState(dir); ok && s.Done {
			final = s
			break
		}
		if time.Now().After(deadline) {
			s, _ := newestAccState(dir)
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
	adds := countAdds(t, dir)
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
