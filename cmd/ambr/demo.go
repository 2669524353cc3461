package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
)

type demoOptions struct {
	kills  int
	target int
	seed   uint64
}

// demoInstance is the name the demo runs its immortal under.
const demoInstance = "demo"

func newDemoCmd(g *globals) *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [accumulator]",
		Short: "Watch an immortal survive kill -9, again and again",
		Long: `The one-command showcase. Builds the accumulator sample (it adds 1..N through
a chain of self-calls, each logged before it runs, while a ticker feeds it
impulses), runs it under 'ambr run', and kills it with SIGKILL at random
moments: sometimes only the app (its coordinator restarts it), sometimes the
whole 'ambr run' process (a machine failure; the demo runs the same command
again). At the end it checks that the final state is exactly what a run
without failures gives, and that every step was logged exactly once.

The instance is left under the home as '` + demoInstance + `' for 'ambr log', 'ambr
checkpoints' and 'ambr ls' to look at. Run it from the ambr repository (it
builds ./samples/accumulator).

Exit codes: 0 the check passed; 1 it failed; 2 the demo could not run.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"accumulator"},
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && args[0] != "accumulator" {
				return usageErrorf("unknown demo %q; the demo available is: accumulator", args[0])
			}
			if o.kills < 0 || o.target < 1 {
				return usageErrorf("--kills must be ≥ 0 and --target ≥ 1")
			}
			return runDemo(cmd.Context(), g, o)
		},
	}
	cmd.Flags().IntVar(&o.kills, "kills", 12, "how many times to kill -9")
	cmd.Flags().IntVar(&o.target, "target", 20000, "the accumulator adds 1..target")
	cmd.Flags().Uint64Var(&o.seed, "seed", 0, "random seed for the kill times (0: from the clock)")
	return cmd
}

func runDemo(ctx context.Context, g *globals, o demoOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	out := g.stdout
	home := g.Home()
	samplePath := filepath.Join(".", "samples", "accumulator")
	if st, err := os.Stat(samplePath); err != nil || !st.IsDir() {
		return usageErrorf("ambr demo builds %s: run it from the root of the ambr repository", samplePath)
	}
	self, err := os.Executable()
	if err != nil {
		return problemErrorf("find the ambr executable: %v", err)
	}
	build, err := supervise.Resolve(ctx, "./"+filepath.ToSlash(samplePath), home, g.stderr)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	dir := filepath.Join(home, demoInstance)
	if supervise.Locked(dir) {
		return usageErrorf("instance %s under %s is running; stop it first", demoInstance, home)
	}
	if err := os.RemoveAll(dir); err != nil {
		return problemErrorf("remove the previous demo: %v", err)
	}
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	args := accum.InitArgs{Target: o.target, Ticks: 10}
	fmt.Fprintf(out, "ambr demo: the accumulator adds 1..%d, one logged self-call per step, and waits for %d ticks (impulses).\n", args.Target, args.Ticks)
	fmt.Fprintf(out, "It will be killed with SIGKILL %d times. Home: %s, instance: %s, seed %d.\n\n", o.kills, home, demoInstance, seed)

	var mu sync.Mutex
	printf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format, a...)
	}
	type proc struct {
		cmd  *exec.Cmd
		done chan struct{} // closed when the process has exited
	}
	start := func() (*proc, error) {
		cmd := exec.Command(self, "--home", home, "run", build.Path, "--name", demoInstance, "-q", "--segment-size", "262144", "--",
			"--target", strconv.Itoa(args.Target), "--ticks", strconv.Itoa(args.Ticks), "--tick-every", "40ms",
			"--print-every", strconv.Itoa(max(1, args.Target/8)))
		r, w := io.Pipe()
		cmd.Stdout, cmd.Stderr = w, w
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				printf("   │ %s\n", sc.Text())
			}
		}()
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		p := &proc{cmd: cmd, done: make(chan struct{})}
		go func() { cmd.Wait(); w.Close(); close(p.done) }()
		return p, nil
	}
	killed := map[int]bool{} // pids already killed: the status file lags a restart
	waitApp := func() (int, error) {
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if st, ok := supervise.ReadRunStatus(dir); ok && st.AppPid != 0 && !killed[st.AppPid] && supervise.Alive(st.AppPid) {
				return st.AppPid, nil
			}
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
		return 0, errors.New("the app did not come up within 30 s")
	}
	cur, err := start()
	if err != nil {
		return problemErrorf("start ambr run: %v", err)
	}
	defer func() { _ = cur.cmd.Process.Signal(syscall.SIGKILL) }()
	for i := 1; i <= o.kills; i++ {
		pid, err := waitApp()
		if err != nil {
			return problemErrorf("%v", err)
		}
		select {
		case <-ctx.Done():
			return usageErrorf("interrupted")
		case <-time.After(time.Duration(150+rng.IntN(450)) * time.Millisecond):
		}
		s, _ := accum.NewestState(dir)
		killed[pid] = true
		if rng.IntN(2) == 0 {
			printf("✗ kill %2d/%d: kill -9 the app (pid %d), last checkpoint at step %d — its coordinator restarts it; it recovers from checkpoint + log\n", i, o.kills, pid, s.Count)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			continue
		}
		printf("✗ kill %2d/%d: kill -9 'ambr run' (pid %d), last checkpoint at step %d — a machine failure; running the same command again\n", i, o.kills, cur.cmd.Process.Pid, s.Count)
		_ = cur.cmd.Process.Signal(syscall.SIGKILL)
		<-cur.done
		if cur, err = start(); err != nil {
			return problemErrorf("start ambr run: %v", err)
		}
	}
	if _, err := waitApp(); err != nil {
		return problemErrorf("%v", err)
	}
	printf("… no more kills; letting it finish\n")
	var final accum.State
	for {
		if s, ok := accum.NewestState(dir); ok && s.Done {
			final = s
			break
		}
		select {
		case <-ctx.Done():
			return usageErrorf("interrupted")
		case <-time.After(20 * time.Millisecond):
		}
	}
	_ = cur.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-cur.done:
	case <-time.After(10 * time.Second):
	}
	want := accum.Expected(args)
	adds, err := accum.LoggedAdds(dir)
	if err != nil {
		return problemErrorf("read the log: %v", err)
	}
	dup, missing := 0, 0
	for i := 1; i <= args.Target; i++ {
		switch n := adds[strconv.Itoa(i)]; {
		case n == 0:
			missing++
		case n > 1:
			dup++
		}
	}
	printf("\nfinal state:    count %d, sum %d, ticks %d\n", final.Count, final.Sum, final.Ticks)
	printf("without a crash: count %d, sum %d, ticks %d\n", want.Count, want.Sum, want.Ticks)
	if final != want || dup != 0 || missing != 0 {
		return problemErrorf("check failed: state %+v, want %+v; %d steps missing and %d logged twice in the log", final, want, missing, dup)
	}
	printf("✓ exactly the same after %d kills: every step 1..%d logged once, nothing lost, nothing repeated.\n\n", o.kills, args.Target)
	printf("Look around: ambr ls · ambr log %s --from end · ambr checkpoints %s\n", demoInstance, demoInstance)
	return nil
}
