package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/supervise"
)

type failoverOptions struct {
	kills             int
	replicas          int
	smoke, json       bool
	dir               string
	serverApp, cliApp string
	leaseTTL          time.Duration
	keep              bool
	load              time.Duration
	stall             bool
	registry          string
	warm              bool
	warmup            time.Duration
	checkpointer      bool
}

// failoverReport is what `ambr bench failover --json` prints.
type failoverReport struct {
	Command  string  `json:"command"`
	Replicas int     `json:"replicas"`
	Kills    int     `json:"kills"`
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MinMs    float64 `json:"min_ms"`
	MaxMs    float64 `json:"max_ms"`
	// The intervals failover waits on.
	LockPollMs      float64   `json:"lock_poll_ms"`
	LeaseRenewMs    float64   `json:"lease_renew_ms"`
	LeaseTTLMs      float64   `json:"lease_ttl_ms"`
	RegistryCheckMs float64   `json:"registry_check_ms"`
	PeerBackoffMs   []float64 `json:"peer_backoff_ms"`
	SamplesMs       []float64 `json:"samples_ms"`
	// Stall: the primary was stopped (SIGSTOP), not killed: its successor
	// took over by the lease's TTL.
	Stall bool `json:"stall,omitempty"`
	// Standbys are "hot" (their apps follow the log; a takeover feeds the
	// last records and sends BecomingPrimary) or "warm" (--warm: recovery
	// from the checkpoint when elected). CallsBeforeKills is how many calls
	// the log held at the first kill (--warmup).
	Standbys         string `json:"standbys"`
	Checkpointer     bool   `json:"checkpointer,omitempty"`
	CallsBeforeKills int    `json:"calls_before_kills"`
	// FirstMs is the first kill's takeover, right after the warmup: the
	// one with the longest log since a checkpoint (a warm standby's
	// recovery ends with a checkpoint, so later ones replay only --load).
	FirstMs float64 `json:"first_ms"`
	// MaxLeaseGapMs is the longest the primaries' lease went without a
	// renewal while they served: how far below the TTL a busy primary
	// stays.
	MaxLeaseGapMs float64 `json:"max_lease_gap_ms"`
}

func newBenchFailoverCmd(g *globals) *cobra.Command {
	var o failoverOptions
	cmd := &cobra.Command{
		Use:   "failover",
		Short: "Time from SIGKILL of the primary to the first call its successor serves",
		Long: `Run --replicas replicas of the counter server (ambr run --replica N) and a
counter client calling Inc() back to back through them, as real processes
under a fresh home in --dir. Then, --kills times: SIGKILL the primary's ambr
run and app at a random moment, time until a standby has taken over (a hot
standby feeds its app the rest of the log; with --warm it recovers it from the
checkpoint) and served the first Inc() (the first line its app prints), and
restart the killed replica as a standby. --warmup grows the log first, which
is what a warm standby's takeover depends on. Prints p50/p99 next to the intervals a failover
waits on (lock poll, lease, registry check, peer reconnect backoff).

Builds the samples: run it from the root of the ambr repository, or give
--server-app and --client-app.

Exit codes: 0 measured; 1 a failover did not happen within 30 s (the output
says which); 2 could not run.`,
		Example: `  ambr bench failover --smoke
  ambr bench failover --kills 50 --dir /work/benchtmp --json
  ambr bench failover --kills 10 --warmup 120s --load 5s --warm   # then without --warm: hot vs warm`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.smoke && !cmd.Flags().Changed("kills") {
				o.kills = 3
			}
			return runBenchFailover(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.IntVar(&o.kills, "kills", 30, "primary kills to time")
	f.IntVar(&o.replicas, "replicas", 3, "replicas of the server")
	f.BoolVar(&o.smoke, "smoke", false, "3 kills (CI); --kills overrides it")
	f.BoolVar(&o.json, "json", false, "print the report as JSON")
	f.StringVar(&o.dir, "dir", "", "where the run's home goes, on the disk to measure (default: the home)")
	f.StringVar(&o.serverApp, "server-app", "./samples/counter/server", "the counter server (package path or executable)")
	f.StringVar(&o.cliApp, "client-app", "./samples/counter/client", "the counter client (package path or executable)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", engine.DefaultLeaseTTL, "the replicas' --lease-ttl")
	f.DurationVar(&o.load, "load", 200*time.Millisecond, "how long the primary serves before each kill (±50%, at random): the log its successor replays grows with it")
	f.BoolVar(&o.stall, "stall", false, "SIGSTOP the primary instead of killing it: the successor takes over when the lease is older than --lease-ttl (then SIGCONT: it stops, deposed, and is restarted)")
	f.StringVar(&o.registry, "registry", "", "etcd://HOST:PORT: the replicas elect their primary with etcd leases and find each other there (default: the file lock and the directory registry)")
	f.BoolVar(&o.warm, "warm", false, "warm standbys (ambr run --warm-standby): a standby recovers its app from the checkpoint and the whole log after it when elected, as before hot standbys; to compare")
	f.DurationVar(&o.warmup, "warmup", 0, "let the client call for this long before the first kill: the log a warm standby replays grows with it (a hot standby's takeover does not)")
	f.BoolVar(&o.checkpointer, "checkpointer", false, "make the last replica the checkpointer (ambr run --checkpointer); it is never killed")
	f.BoolVar(&o.keep, "keep", false, "keep the run's home afterwards (its path is printed)")
	return cmd
}

// failoverProc is one ambr run of the failover bench; served receives the
// time of each line its app prints about a call it handled.
type failoverProc struct {
	args []string
	cmd  *exec.Cmd
	done chan struct{}
	out  *syncLines
}

// syncLines keeps the last lines of a process's output for messages.
type syncLines struct {
	mu    sync.Mutex
	lines []string
}

func (s *syncLines) add(l string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, l)
	if len(s.lines) > 40 {
		s.lines = s.lines[len(s.lines)-40:]
	}
}

func (s *syncLines) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

func runBenchFailover(ctx context.Context, g *globals, o failoverOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.kills < 1 || o.replicas < 2 || o.load < 0 {
		return usageErrorf("give --kills ≥ 1, --replicas ≥ 2 and --load ≥ 0")
	}
	self, err := os.Executable()
	if err != nil {
		return problemErrorf("find the ambr executable: %v", err)
	}
	base := o.dir
	if base == "" {
		base = g.Home()
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return usageErrorf("--dir: %v", err)
	}
	home, err := os.MkdirTemp(base, "failover-")
	if err != nil {
		return usageErrorf("--dir: %v", err)
	}
	if o.keep {
		fmt.Fprintf(g.stderr, "home of the run: %s\n", home)
	} else {
		defer os.RemoveAll(home)
	}
	var apps [2]string
	for i, app := range []string{o.serverApp, o.cliApp} {
		if _, err := os.Stat(app); err != nil {
			return usageErrorf("%s not found: run from the root of the ambr repository, or give --server-app and --client-app", app)
		}
		b, err := supervise.Resolve(ctx, app, home, g.stderr)
		if err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		apps[i] = b.Path
	}

	// served gets (replica, time) for each Inc() a server app prints.
	type servedLine struct {
		replica int
		at      time.Time
	}
	served := make(chan servedLine, 4096)
	start := func(replica int, args ...string) (*failoverProc, error) {
		p := &failoverProc{args: args, done: make(chan struct{}), out: &syncLines{}}
		p.cmd = exec.Command(self, args...)
		r, w := io.Pipe()
		p.cmd.Stdout, p.cmd.Stderr = w, w
		if err := p.cmd.Start(); err != nil {
			return nil, problemErrorf("start ambr run: %v", err)
		}
		go func() {
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				line := sc.Text()
				if replica >= 0 && strings.HasPrefix(line, "Inc() →") {
					select {
					case served <- servedLine{replica, time.Now()}:
					default: // nobody is timing now
					}
					continue
				}
				p.out.add(line)
			}
			io.Copy(io.Discard, r)
		}()
		go func() { p.cmd.Wait(); w.Close(); close(p.done) }()
		return p, nil
	}
	stop := func(p *failoverProc) {
		if p == nil {
			return
		}
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	runArgs := func(n int) []string {
		args := []string{"--home", home, "run", apps[0], "--name", "server", "-q", "--replica", strconv.Itoa(n), "--lease-ttl", o.leaseTTL.String()}
		if o.registry != "" {
			args = append(args, "--registry", o.registry)
		}
		if o.warm {
			args = append(args, "--warm-standby")
		}
		if o.checkpointer && n == o.replicas-1 {
			args = append(args, "--checkpointer")
		}
		return args
	}
	dir := filepath.Join(home, "server")
	procs := make([]*failoverProc, o.replicas)
	var client *failoverProc
	defer func() {
		stop(client)
		for _, p := range procs {
			stop(p)
		}
	}()
	for n := range procs {
		if procs[n], err = start(n, runArgs(n)...); err != nil {
			return err
		}
	}
	failed := func(format string, args ...any) error {
		var b strings.Builder
		fmt.Fprintf(&b, format, args...)
		for n, p := range procs {
			fmt.Fprintf(&b, "\n--- replica %d:\n%s", n, p.out.String())
		}
		if client != nil {
			fmt.Fprintf(&b, "\n--- client:\n%s", client.out.String())
		}
		return problemErrorf("%s", b.String())
	}
	// waitFor polls the replicas' status until ok says yes.
	waitFor := func(what string, ok func([]supervise.ReplicaStatus) bool) error {
		deadline := time.Now().Add(30 * time.Second)
		for !ok(supervise.ReadReplicaStatuses(dir)) {
			if time.Now().After(deadline) {
				return failed("bench failover: %s did not happen within 30 s", what)
			}
			if ctx.Err() != nil {
				return usageErrorf("interrupted")
			}
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	if err := waitFor("a first primary", func(rs []supervise.ReplicaStatus) bool {
		return len(rs) == o.replicas && slices.ContainsFunc(rs, func(r supervise.ReplicaStatus) bool { return r.Role == "primary" })
	}); err != nil {
		return err
	}
	callsBefore := 0
	clientArgs := []string{"--home", home, "run", apps[1], "--name", "client", "-q"}
	if o.registry != "" {
		clientArgs = append(clientArgs, "--registry", o.registry)
	}
	if client, err = start(-1, append(clientArgs, "--", "--server", "server", "--count", "1000000000")...); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 17))
	// The lease's renewals, watched while primaries serve.
	var gapMu sync.Mutex
	var maxGap time.Duration
	watching := true
	monitorDone := make(chan struct{})
	defer close(monitorDone)
	go func() {
		var lastEpoch uint64
		var lastNs int64
		for {
			select {
			case <-monitorDone:
				return
			case <-time.After(2 * time.Millisecond):
			}
			epoch, _, ns, ok := engine.ReadLease(dir)
			if !ok || ns == lastNs {
				continue
			}
			gapMu.Lock()
			if epoch == lastEpoch && watching && lastNs != 0 {
				maxGap = max(maxGap, time.Duration(ns-lastNs))
			}
			gapMu.Unlock()
			lastEpoch, lastNs = epoch, ns
		}
	}()
	watch := func(on bool) { gapMu.Lock(); watching = on; gapMu.Unlock() }
	if o.warmup > 0 {
		end := time.After(o.warmup)
	warmup:
		for {
			select {
			case <-served:
				callsBefore++
			case <-end:
				break warmup
			}
		}
		if !o.json {
			fmt.Fprintf(g.stderr, "warmup: %d calls logged before the first kill\n", callsBefore)
		}
	}
	var samples []time.Duration
	for i := 0; i < o.kills; i++ {
		// Under load: the primary serves calls.
		var primary supervise.ReplicaStatus
		if err := waitFor("a primary serving", func(rs []supervise.ReplicaStatus) bool {
			for _, r := range rs {
				if r.Role == "primary" && r.AppPid != 0 {
					primary = r
					return true
				}
			}
			return false
		}); err != nil {
			return err
		}
		drainServed(served)
		select {
		case s := <-served:
			if s.replica != primary.Replica {
				i--
				continue
			}
		case <-time.After(30 * time.Second):
			return failed("bench failover: the primary (replica %d) served no call within 30 s", primary.Replica)
		}
		time.Sleep(o.load/2 + time.Duration(rng.Int64N(int64(o.load)+1)))
		victim := procs[primary.Replica]
		watch(false)
		t0 := time.Now()
		if o.stall {
			_ = victim.cmd.Process.Signal(syscall.SIGSTOP)
		} else {
			_ = victim.cmd.Process.Signal(syscall.SIGKILL)
			if supervise.Alive(primary.AppPid) {
				_ = syscall.Kill(primary.AppPid, syscall.SIGKILL)
			}
		}
		var took time.Duration
	wait:
		for {
			select {
			case s := <-served:
				if s.replica != primary.Replica && s.at.After(t0) {
					took = s.at.Sub(t0)
					break wait
				}
			case <-time.After(30 * time.Second):
				return failed("bench failover: no standby served a call within 30 s of kill %d (replica %d)", i+1, primary.Replica)
			}
		}
		if o.stall {
			_ = victim.cmd.Process.Signal(syscall.SIGCONT)
			select {
			case <-victim.done:
			case <-time.After(30 * time.Second):
				return failed("bench failover: the stalled primary (replica %d) did not stop within 30 s of SIGCONT", primary.Replica)
			}
			if code := victim.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(victim.out.String(), "deposed at epoch") {
				return failed("bench failover: the stalled primary (replica %d) exited %d without saying it was deposed", primary.Replica, code)
			}
		}
		<-victim.done
		samples = append(samples, took)
		if !o.json {
			verb := "killed"
			if o.stall {
				verb = "stopped"
			}
			fmt.Fprintf(g.stderr, "kill %d/%d: replica %d %s, next call served after %.1f ms\n", i+1, o.kills, primary.Replica, verb, durMs(took))
		}
		if procs[primary.Replica], err = start(primary.Replica, runArgs(primary.Replica)...); err != nil {
			return err
		}
		n := primary.Replica
		if err := waitFor("the killed replica's restart as a standby", func(rs []supervise.ReplicaStatus) bool {
			return slices.ContainsFunc(rs, func(r supervise.ReplicaStatus) bool { return r.Replica == n && r.Role == "standby" && r.AppPid != 0 })
		}); err != nil {
			return err
		}
		watch(true)
	}
	rep := failoverReport{Command: "ambr " + strings.Join(os.Args[1:], " "), Replicas: o.replicas, Kills: len(samples),
		LockPollMs: durMs(engine.DefaultLockPoll), LeaseRenewMs: durMs(engine.DefaultLeaseRenew), LeaseTTLMs: durMs(o.leaseTTL),
		RegistryCheckMs: durMs(engine.PeerRegistryCheck), PeerBackoffMs: []float64{durMs(engine.PeerBackoffMin), durMs(engine.PeerBackoffMax)},
		Standbys: "hot", Checkpointer: o.checkpointer, CallsBeforeKills: callsBefore}
	if o.warm {
		rep.Standbys = "warm"
	}
	gapMu.Lock()
	rep.Stall, rep.MaxLeaseGapMs = o.stall, durMs(maxGap)
	gapMu.Unlock()
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	for _, s := range samples {
		rep.SamplesMs = append(rep.SamplesMs, durMs(s))
	}
	rep.P50Ms, rep.P99Ms = durMs(failoverQuantile(sorted, 0.5)), durMs(failoverQuantile(sorted, 0.99))
	rep.MinMs, rep.MaxMs = durMs(sorted[0]), durMs(sorted[len(sorted)-1])
	rep.FirstMs = durMs(samples[0])
	if o.json {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	fmt.Fprintf(g.stdout, "command: %s\n", rep.Command)
	how := "SIGKILL"
	if o.stall {
		how = "SIGSTOP"
	}
	fmt.Fprintf(g.stdout, "failover, %s of the primary → first call served by its successor, %d kills, %d replicas, %s standbys, %d calls in the log at the first kill:\n", how, rep.Kills, rep.Replicas, rep.Standbys, rep.CallsBeforeKills)
	fmt.Fprintf(g.stdout, "  p50 %.1f ms   p99 %.1f ms   min %.1f ms   max %.1f ms   first (after the warmup) %.1f ms\n", rep.P50Ms, rep.P99Ms, rep.MinMs, rep.MaxMs, rep.FirstMs)
	fmt.Fprintf(g.stdout, "  waits on: lock poll %.0f ms, lease renew %.0f ms (TTL %.0f ms, a stalled primary only), registry check %.0f ms, peer reconnect backoff %.0f–%.0f ms\n",
		rep.LockPollMs, rep.LeaseRenewMs, rep.LeaseTTLMs, rep.RegistryCheckMs, rep.PeerBackoffMs[0], rep.PeerBackoffMs[1])
	fmt.Fprintf(g.stdout, "  longest lease renewal gap of a serving primary: %.1f ms (TTL %.0f ms)\n", rep.MaxLeaseGapMs, rep.LeaseTTLMs)
	return nil
}

func drainServed[T any](c chan T) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func durMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile of sorted samples (nearest rank).
func failoverQuantile(sorted []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
