package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/samples/accumulator/accum"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

type demoOptions struct {
	kills    int
	count    int
	target   int
	seed     uint64
	interval time.Duration
}

// Instance names the demos run under.
const (
	demoServer      = "demo-server"
	demoClient      = "demo-client"
	demoAccumulator = "demo"
)

func newDemoCmd(g *globals) *cobra.Command {
	var o demoOptions
	var bank *bankDemoOptions // the bank demo's flags, see demo_bank.go
	cmd := &cobra.Command{
		Use:   "demo [counter|accumulator|bank]",
		Short: "Watch immortals survive kill -9, again and again",
		Long: `The one-command showcase.

counter (the default): the seeds' example. A client immortal calls Inc() on a
server immortal --count times, one after the other; both run under 'ambr run'.
The demo kills them with SIGKILL at random moments — sometimes only an app
(its coordinator restarts it), sometimes a whole 'ambr run' process (a
machine failure; the demo runs the same command again) — while the client's
results arrive. At the end it checks that the results are exactly 1..count
and that the server logged each call once.

accumulator: one immortal adding 1..N through a chain of self-calls while a
ticker feeds it impulses, killed the same way.

bank: accounts as entities, transfers as orchestrations that lock both
accounts, a driver making --transfers random transfers; all three killed
the same way; checks from the logs that money is conserved, each transfer
has exactly one outcome and no lock is left held (--json for a report).

The instances stay under the home (` + demoServer + `, ` + demoClient + `, ` + demoAccumulator + `) for 'ambr ls',
'ambr log' and 'ambr checkpoints'. Run it from the root of the ambr repository
(it builds the samples).

Exit codes: 0 the check passed; 1 it failed; 2 the demo could not run.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{"counter", "accumulator", "bank"},
		RunE: func(cmd *cobra.Command, args []string) error {
			which := "counter"
			if len(args) == 1 {
				which = args[0]
			}
			if err := bank.misusedBy(cmd, which); err != nil {
				return err
			}
			if o.kills < 0 || o.count < 1 || o.target < 1 {
				return usageErrorf("--kills must be ≥ 0, --count and --target ≥ 1")
			}
			d, err := newDemoRun(cmd.Context(), g, o)
			if err != nil {
				return err
			}
			defer d.cleanup()
			switch which {
			case "counter":
				return d.counter()
			case "accumulator":
				return d.accumulator()
			case "bank":
				return d.bank(bank)
			}
			return usageErrorf("unknown demo %q; the demos are: counter, accumulator, bank", which)
		},
	}
	bank = addBankDemoFlags(cmd)
	cmd.Flags().IntVar(&o.kills, "kills", 12, "how many times to kill -9")
	cmd.Flags().IntVar(&o.count, "count", 100, "counter: how many times the client calls Inc()")
	cmd.Flags().IntVar(&o.target, "target", 20000, "accumulator: add 1..target")
	cmd.Flags().DurationVar(&o.interval, "interval", 25*time.Millisecond, "counter: pause between the client's calls (0: as fast as it can)")
	cmd.Flags().Uint64Var(&o.seed, "seed", 0, "random seed for the kills (0: from the clock)")
	return cmd
}

// demoRun holds what a demo needs: where things are, randomness, output.
type demoRun struct {
	g     *globals
	ctx   context.Context
	o     demoOptions
	home  string
	self  string
	seed  uint64
	rng   *rand.Rand
	mu    sync.Mutex
	procs []*demoProc
	// printedResults counts the client's "result" lines seen live.
	printedResults int
}

func newDemoRun(ctx context.Context, g *globals, o demoOptions) (*demoRun, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	self, err := os.Executable()
	if err != nil {
		return nil, problemErrorf("find the ambr executable: %v", err)
	}
	seed := o.seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	return &demoRun{g: g, ctx: ctx, o: o, home: g.Home(), self: self, seed: seed, rng: rand.New(rand.NewPCG(seed, 1))}, nil
}

func (d *demoRun) printf(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.g.stdout, format, a...)
}

// build builds a sample of the repository and keeps its binary.
func (d *demoRun) build(sample string) (string, error) {
	path := "./" + filepath.ToSlash(filepath.Join("samples", sample))
	if st, err := os.Stat(path); err != nil || !st.IsDir() {
		return "", usageErrorf("ambr demo builds %s: run it from the root of the ambr repository", path)
	}
	b, err := supervise.Resolve(d.ctx, path, d.home, d.g.stderr)
	if err != nil {
		return "", &exitError{code: exitUsage, err: err}
	}
	return b.Path, nil
}

// fresh removes what an earlier demo left under the instance's name.
func (d *demoRun) fresh(name string) error {
	dir := filepath.Join(d.home, name)
	if supervise.Locked(dir) {
		return usageErrorf("instance %s under %s is running; stop it first", name, d.home)
	}
	if err := os.RemoveAll(dir); err != nil {
		return problemErrorf("remove the previous demo: %v", err)
	}
	return nil
}

// demoProc is one immortal the demo runs with `ambr run`.
type demoProc struct {
	d       *demoRun
	name    string
	bin     string
	appArgs []string
	prefix  string // output lines shown with this prefix; "" hides them
	cmd     *exec.Cmd
	done    chan struct{}
	killed  map[int64]bool // app processes killed, by start time (pids are reused)
	started int64          // start time of the app appPid last returned
}

func (d *demoRun) proc(name, bin, prefix string, appArgs ...string) *demoProc {
	p := &demoProc{d: d, name: name, bin: bin, appArgs: appArgs, prefix: prefix, killed: map[int64]bool{}}
	d.procs = append(d.procs, p)
	return p
}

func (p *demoProc) dir() string { return filepath.Join(p.d.home, p.name) }

func (p *demoProc) start() error {
	args := append([]string{"--home", p.d.home, "run", p.bin, "--name", p.name, "-q", "--"}, p.appArgs...)
	cmd := exec.Command(p.d.self, args...)
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if p.prefix != "" {
				p.d.printf("%s │ %s\n", p.prefix, sc.Text())
			}
			if p.name == demoClient && strings.HasPrefix(sc.Text(), "result ") {
				p.d.mu.Lock()
				p.d.printedResults++
				p.d.mu.Unlock()
			}
		}
	}()
	if err := cmd.Start(); err != nil {
		return problemErrorf("start ambr run: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); w.Close(); close(done) }()
	p.cmd, p.done = cmd, done
	return nil
}

// appPid waits for the instance's current app process (not one already
// killed: the status file lags a restart).
func (p *demoProc) appPid() (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, ok := supervise.ReadRunStatus(p.dir()); ok && st.AppPid != 0 && !p.killed[st.AppStarted] && supervise.Alive(st.AppPid) {
			p.started = st.AppStarted
			return st.AppPid, nil
		}
		select {
		case <-p.d.ctx.Done():
			return 0, usageErrorf("interrupted")
		case <-time.After(3 * time.Millisecond):
		}
	}
	return 0, problemErrorf("%s: the app did not come up within 30 s", p.name)
}

// kill SIGKILLs the app alone or the whole ambr run (then runs it again),
// and says so.
func (p *demoProc) kill(n, of int, whole bool, at string) error {
	pid, err := p.appPid()
	if err != nil {
		return err
	}
	if !whole {
		p.d.printf("✗ kill %2d/%d: kill -9 %s's app (pid %d) %s — its coordinator restarts it; it recovers from checkpoint + log\n", n, of, p.name, pid, at)
		p.killed[p.started] = true
		_ = syscall.Kill(pid, syscall.SIGKILL)
		return nil
	}
	p.d.printf("✗ kill %2d/%d: kill -9 %s's 'ambr run' (pid %d) %s — a machine failure; running the same command again\n", n, of, p.name, p.cmd.Process.Pid, at)
	p.killed[p.started] = true
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return p.start()
}

func (p *demoProc) stop() {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (d *demoRun) cleanup() {
	for _, p := range d.procs {
		p.stop()
	}
}

func (d *demoRun) sleep(dur time.Duration) error {
	select {
	case <-d.ctx.Done():
		return usageErrorf("interrupted")
	case <-time.After(dur):
		return nil
	}
}

// counter runs the seeds' example.
func (d *demoRun) counter() error {
	k := d.o.count
	serverBin, err := d.build("counter/server")
	if err != nil {
		return err
	}
	clientBin, err := d.build("counter/client")
	if err != nil {
		return err
	}
	for _, n := range []string{demoServer, demoClient} {
		if err := d.fresh(n); err != nil {
			return err
		}
	}
	d.printf("ambr demo: %s calls Inc() on %s %d times, one after the other. Both are killed with SIGKILL %d times.\n", demoClient, demoServer, k, d.o.kills)
	d.printf("Whatever happens, the client must receive exactly 1, 2, …, %d. (home %s, seed %d)\n\n", k, d.home, d.seed)
	server := d.proc(demoServer, serverBin, "")
	client := d.proc(demoClient, clientBin, "client", "--server", demoServer, "--count", strconv.Itoa(k), "--interval", d.o.interval.String())
	if err := server.start(); err != nil {
		return err
	}
	if err := client.start(); err != nil {
		return err
	}
	// Kill at random points of progress, so every kill lands mid-run.
	points := make([]int, d.o.kills)
	for i := range points {
		points[i] = 1 + d.rng.IntN(max(1, k-1))
	}
	sort.Ints(points)
	for i, at := range points {
		if err := d.waitCalls(server, at); err != nil {
			return err
		}
		if err := d.sleep(time.Duration(d.rng.IntN(30)) * time.Millisecond); err != nil {
			return err
		}
		victim := []*demoProc{server, client}[d.rng.IntN(2)]
		if err := victim.kill(i+1, d.o.kills, d.rng.IntN(2) == 0, fmt.Sprintf("after call %d", at)); err != nil {
			return err
		}
	}
	if d.o.kills > 0 {
		d.printf("… no more kills; letting it finish\n")
	}
	var s counter.ClientState
	for !(newestState(client.dir(), &s) && s.Done) {
		if err := d.sleep(10 * time.Millisecond); err != nil {
			return err
		}
	}
	client.stop()
	server.stop()
	calls, err := loggedCalls(server.dir(), "Inc")
	if err != nil {
		return problemErrorf("read %s's log: %v", demoServer, err)
	}
	exact := len(s.Results) == k
	for i, r := range s.Results {
		exact = exact && r == i+1
	}
	d.printf("\nthe client received: %s\n", summarizeInts(s.Results))
	d.printf("the server logged %d Inc() calls from the client\n", calls[demoClient])
	d.mu.Lock()
	printed := d.printedResults
	d.mu.Unlock()
	if printed < k {
		d.printf("(%d results were printed as they arrived; the other %d arrived just before a crash and were applied while\n the recovered client replayed its log, where it prints nothing: side effects outside an immortal happen at most once.)\n", printed, k-printed)
	}
	if !exact || calls[demoClient] != k {
		return problemErrorf("check failed: want exactly 1..%d and %d logged calls", k, k)
	}
	d.printf("✓ exactly 1..%d after %d kills: nothing lost, nothing repeated.\n\n", k, d.o.kills)
	d.printf("Look around: ambr ls · ambr log %s --from end · ambr checkpoints %s\n", demoServer, demoClient)
	return nil
}

// waitCalls waits until the server has logged n Inc() calls.
func (d *demoRun) waitCalls(server *demoProc, n int) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		calls, _ := loggedCalls(server.dir(), "Inc")
		if calls[demoClient] >= n {
			return nil
		}
		if err := d.sleep(2 * time.Millisecond); err != nil {
			return err
		}
	}
	return problemErrorf("the server did not reach %d calls within 60 s", n)
}

// summarizeInts prints 1..k runs compactly: "1, 2, 3, …, 100 (100 values)".
func summarizeInts(v []int) string {
	if len(v) <= 8 {
		return fmt.Sprint(v)
	}
	return fmt.Sprintf("%d, %d, %d, …, %d, %d (%d values)", v[0], v[1], v[2], v[len(v)-2], v[len(v)-1], len(v))
}

// accumulator runs the single-immortal demo.
func (d *demoRun) accumulator() error {
	bin, err := d.build("accumulator")
	if err != nil {
		return err
	}
	if err := d.fresh(demoAccumulator); err != nil {
		return err
	}
	args := accum.InitArgs{Target: d.o.target, Ticks: 10}
	d.printf("ambr demo accumulator: adds 1..%d, one logged self-call per step, and waits for %d ticks (impulses).\n", args.Target, args.Ticks)
	d.printf("It will be killed with SIGKILL %d times. (home %s, seed %d)\n\n", d.o.kills, d.home, d.seed)
	p := d.proc(demoAccumulator, bin, "   ", "--target", strconv.Itoa(args.Target), "--ticks", strconv.Itoa(args.Ticks),
		"--tick-every", "40ms", "--print-every", strconv.Itoa(max(1, args.Target/8)))
	if err := p.start(); err != nil {
		return err
	}
	for i := 1; i <= d.o.kills; i++ {
		if _, err := p.appPid(); err != nil {
			return err
		}
		if err := d.sleep(time.Duration(150+d.rng.IntN(450)) * time.Millisecond); err != nil {
			return err
		}
		s, _ := accum.NewestState(p.dir())
		if err := p.kill(i, d.o.kills, d.rng.IntN(2) == 0, fmt.Sprintf("(last checkpoint at step %d)", s.Count)); err != nil {
			return err
		}
	}
	d.printf("… no more kills; letting it finish\n")
	var final accum.State
	for {
		if s, ok := accum.NewestState(p.dir()); ok && s.Done {
			final = s
			break
		}
		if err := d.sleep(20 * time.Millisecond); err != nil {
			return err
		}
	}
	p.stop()
	want := accum.Expected(args)
	adds, err := accum.LoggedAdds(p.dir())
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
	d.printf("\nfinal state:     count %d, sum %d, ticks %d\n", final.Count, final.Sum, final.Ticks)
	d.printf("without a crash: count %d, sum %d, ticks %d\n", want.Count, want.Sum, want.Ticks)
	if final != want || dup != 0 || missing != 0 {
		return problemErrorf("check failed: state %+v, want %+v; %d steps missing and %d logged twice", final, want, missing, dup)
	}
	d.printf("✓ exactly the same after %d kills: every step 1..%d logged once, nothing lost, nothing repeated.\n\n", d.o.kills, args.Target)
	d.printf("Look around: ambr ls · ambr log %s --from end · ambr checkpoints %s\n", demoAccumulator, demoAccumulator)
	return nil
}
