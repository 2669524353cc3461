package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/bench"
)

type benchOptions struct {
	smoke, json, quiet bool
	chart, cpuprofile  string
	trace              string
	report             string
	dir                string
	runs               int
	sizes, volume      string
	maxMsgs            int64
	modes, systems     string
	window             string
	windowMsgs         int64
	grpcInFlight       int
	latencyCalls       int
	latencyWarmup      int
	latencyInFlight    string
	latencyHalfPeak    bool
	latencyHops        bool
	latencyProcesses   bool
	syncProbes         int
	requests, conc     int
	pgBin              string
	logMiB, ckptMiB    int
	recMsg             string
	giantSize          string
	giantCount         int
}

func newBenchCmd(g *globals) *cobra.Command {
	var o benchOptions
	def := bench.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "bench [throughput|latency|conventional|recovery|giant]...",
		Short: "Run the benchmark suites, each against its baselines in the same run",
		Long: `Run benchmark suites (all five if none is named) and print a table of figures
and ratios. Every figure is measured next to a baseline or a limit of this
machine measured in the same run, repeated --runs times, and shown as the
median (min–max).

  throughput    a job immortal sends forks of S bytes to a server immortal,
                one-way and echo, for each size of --sizes; two coordinators
                in this process, instances on disk under --dir, loopback TCP,
                durable logging on both sides. Baselines: gRPC-Go unary
                (--grpc-inflight calls in flight) and streaming, raw TCP with
                ambr's batching and window and no logging, and ambr with its
                log discarded (ambr-nolog) or not fdatasynced (ambr-nosync,
                not run unless named in --systems).
  latency       a call with a result (samples/counter's Inc), client →
                server → client, p50/p99/p99.9, ambr vs gRPC-Go unary, next
                to the disk's fdatasync latency; at each --latency-inflight,
                then released at half each system's best rate (open loop).
  conventional  the counter as a stateless gRPC handler doing a read-modify-
                write transaction in PostgreSQL with an idempotency-key table,
                vs the ambr counter: requests/s and p50. Starts a throw-away
                PostgreSQL if its server is installed (apt-get install
                postgresql), as the postgres user when run as root; skipped
                with that advice when it is not.
  recovery      recover an instance with a --ckpt-mib checkpoint and
                --log-mib of log after it, from a cold page cache: time,
                records/s and MB/s next to the disk's cold sequential read.
  giant         a job immortal forks --giant-count messages of --giant-size
                one-way to a server immortal; both coordinators and both apps
                run as processes of their own (this executable again), TLS,
                durable. Peak RSS (VmHWM, reset once the links are up) of
                each, as a ratio to the message's size, next to its RSS
                before and to raw TCP sending the same bytes; each message's
                length and SHA-256 are checked on arrival.

Defaults are a meaningful local run (minutes); --smoke is a run of seconds for
CI, and the other flags override either. Results and the command that produced
them belong in BENCHMARKS.md.

Exit codes: 0 the suites ran (whether targets were met is in the report); 1 a
suite failed; 2 bad usage.`,
		Example: `  ambr bench --smoke
  ambr bench throughput --sizes 64KiB,4KiB,256B,16B --volume 64MiB --chart sweep.png
  ambr bench latency conventional --runs 5 --json > bench.json
  ambr bench giant --giant-size 1000MiB --runs 1
  ambr bench --report bench.json --chart sweep.png`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBench(cmd, g, args, o)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.smoke, "smoke", false, "small sizes for a run of seconds (CI); other flags override it")
	f.BoolVar(&o.json, "json", false, "print the report as JSON instead of tables")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no progress lines on stderr")
	f.StringVar(&o.chart, "chart", "", "also draw the throughput sweep to FILE (PNG; .svg for SVG)")
	f.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the whole run to FILE (go tool pprof)")
	f.StringVar(&o.trace, "trace", "", "write an execution trace of the whole run to FILE (go tool trace): where goroutines wait and wake; keep the run short")
	f.StringVar(&o.report, "report", "", "run nothing: print the tables (and --chart) of a report saved with --json in FILE")
	f.StringVar(&o.dir, "dir", "", "where instances, probes and databases go, on the disk to measure (default: the home)")
	f.IntVar(&o.runs, "runs", def.Runs, "measurements per figure")
	f.StringVar(&o.sizes, "sizes", benchSizeList(def.Sizes), "throughput: message sizes")
	f.StringVar(&o.volume, "volume", bench.SizeName(def.Volume), "throughput: bytes sent per size and system")
	f.Int64Var(&o.maxMsgs, "max-msgs", def.MaxMsgs, "throughput: at most this many messages per size (0: no limit)")
	f.StringVar(&o.modes, "modes", strings.Join(def.Modes, ","), "throughput: oneway, echo")
	f.StringVar(&o.systems, "systems", strings.Join(def.Systems, ","), "throughput: of "+strings.Join(bench.AllSystems, ", "))
	f.StringVar(&o.window, "window", bench.SizeName(def.WindowBytes), "throughput: bytes unacknowledged at most (ambr, raw TCP)")
	f.Int64Var(&o.windowMsgs, "window-msgs", def.WindowMsgs, "throughput: messages unacknowledged at most (ambr, raw TCP)")
	f.IntVar(&o.grpcInFlight, "grpc-inflight", def.GRPCInFlight, "throughput: gRPC unary calls in flight")
	f.IntVar(&o.latencyCalls, "latency-calls", def.LatencyCalls, "latency: calls measured per run (also conventional's 1-in-flight phase)")
	f.IntVar(&o.latencyWarmup, "latency-warmup", def.LatencyWarmup, "latency, conventional: calls before measuring")
	f.StringVar(&o.latencyInFlight, "latency-inflight", benchIntList(def.LatencyInFlight), "latency: calls in flight, one row each")
	f.BoolVar(&o.latencyHops, "latency-hops", def.LatencyHops, "latency: also trace one run of ambr calls at 1 in flight and show the median of each hop (not counted in the rows)")
	f.BoolVar(&o.latencyHalfPeak, "latency-half-peak", def.LatencyHalfPeak, "latency: also release calls at half each system's best rate (open loop)")
	f.BoolVar(&o.latencyProcesses, "latency-processes", def.LatencyProcesses, "latency: also run ambr's calls with each coordinator and each app a process of its own, as ambr run runs them")
	f.IntVar(&o.syncProbes, "sync-probes", def.SyncProbes, "fdatasyncs timed for the disk's figures")
	f.IntVar(&o.requests, "requests", def.ConvRequests, "conventional: requests per run")
	f.IntVar(&o.conc, "concurrency", def.ConvConcurrency, "conventional: requests in flight")
	f.StringVar(&o.pgBin, "pg-bin", "", "conventional: directory of initdb and pg_ctl (default: PATH, then /usr/lib/postgresql/*/bin)")
	f.IntVar(&o.logMiB, "log-mib", def.RecLogMiB, "recovery: MiB of log after the checkpoint")
	f.IntVar(&o.ckptMiB, "ckpt-mib", def.RecCkptMiB, "recovery: MiB of checkpoint")
	f.StringVar(&o.recMsg, "rec-msg", bench.SizeName(int64(def.RecMsgSize)), "recovery: size of the logged messages")
	f.StringVar(&o.giantSize, "giant-size", bench.SizeName(def.GiantSize), "giant: the message's size (up to 1023MiB)")
	f.IntVar(&o.giantCount, "giant-count", def.GiantCount, "giant: messages sent, one after the other")
	cmd.AddCommand(newBenchFailoverCmd(g))
	return cmd
}

func benchSizeList(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, bench.SizeName(int64(x)))
	}
	return strings.Join(s, ",")
}

func benchIntList(xs []int) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.Itoa(x))
	}
	return strings.Join(s, ",")
}

func benchSplitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// benchConfig is the defaults (or --smoke's), with the flags given applied.
func benchConfig(cmd *cobra.Command, g *globals, o benchOptions) (bench.Config, error) {
	cfg := bench.DefaultConfig()
	if o.smoke {
		cfg = bench.SmokeConfig()
	}
	set := cmd.Flags().Changed
	if set("runs") {
		if o.runs < 1 {
			return cfg, usageErrorf("--runs must be ≥ 1")
		}
		cfg.Runs = o.runs
	}
	if set("sizes") {
		cfg.Sizes = nil
		for _, s := range benchSplitList(o.sizes) {
			n, err := bench.ParseSize(s)
			if err != nil || n < 8 || n > 16<<20 {
				return cfg, usageErrorf("--sizes: %q is not a size from 8B to 16MiB", s)
			}
			cfg.Sizes = append(cfg.Sizes, int(n))
		}
	}
	if set("volume") {
		n, err := bench.ParseSize(o.volume)
		if err != nil {
			return cfg, usageErrorf("--volume: %v", err)
		}
		cfg.Volume = n
	}
	if set("max-msgs") {
		cfg.MaxMsgs = o.maxMsgs
	}
	if set("modes") {
		cfg.Modes = benchSplitList(o.modes)
	}
	if set("systems") {
		cfg.Systems = benchSplitList(o.systems)
	}
	if set("window") {
		n, err := bench.ParseSize(o.window)
		if err != nil {
			return cfg, usageErrorf("--window: %v", err)
		}
		cfg.WindowBytes = n
	}
	if set("window-msgs") {
		cfg.WindowMsgs = o.windowMsgs
	}
	if set("grpc-inflight") {
		cfg.GRPCInFlight = o.grpcInFlight
	}
	if set("latency-calls") {
		cfg.LatencyCalls = o.latencyCalls
	}
	if set("latency-warmup") {
		cfg.LatencyWarmup = o.latencyWarmup
	}
	if set("latency-inflight") {
		cfg.LatencyInFlight = nil
		for _, s := range benchSplitList(o.latencyInFlight) {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return cfg, usageErrorf("--latency-inflight: %q is not a number ≥ 1", s)
			}
			cfg.LatencyInFlight = append(cfg.LatencyInFlight, n)
		}
	}
	if set("latency-half-peak") {
		cfg.LatencyHalfPeak = o.latencyHalfPeak
	}
	if set("latency-hops") {
		cfg.LatencyHops = o.latencyHops
	}
	if set("latency-processes") {
		cfg.LatencyProcesses = o.latencyProcesses
	}
	if set("sync-probes") {
		cfg.SyncProbes = o.syncProbes
	}
	if set("requests") {
		cfg.ConvRequests = o.requests
	}
	if set("concurrency") {
		cfg.ConvConcurrency = o.conc
	}
	cfg.PGBin = o.pgBin
	if set("log-mib") {
		cfg.RecLogMiB = o.logMiB
	}
	if set("ckpt-mib") {
		cfg.RecCkptMiB = o.ckptMiB
	}
	if set("rec-msg") {
		n, err := bench.ParseSize(o.recMsg)
		if err != nil {
			return cfg, usageErrorf("--rec-msg: %v", err)
		}
		cfg.RecMsgSize = int(n)
	}
	if set("giant-size") {
		n, err := bench.ParseSize(o.giantSize)
		if err != nil || n < 8 || n > 1023<<20 {
			return cfg, usageErrorf("--giant-size: %q is not a size from 8B to 1023MiB", o.giantSize)
		}
		cfg.GiantSize = n
	}
	if set("giant-count") {
		if o.giantCount < 1 {
			return cfg, usageErrorf("--giant-count must be ≥ 1")
		}
		cfg.GiantCount = o.giantCount
	}
	for _, s := range cfg.Systems {
		if !slices.Contains(bench.AllSystems, s) {
			return cfg, usageErrorf("--systems: no system %q (systems: %s)", s, strings.Join(bench.AllSystems, ", "))
		}
	}
	for _, m := range cfg.Modes {
		if m != "oneway" && m != "echo" {
			return cfg, usageErrorf("--modes: no mode %q (modes: oneway, echo)", m)
		}
	}
	cfg.Dir = o.dir
	if cfg.Dir == "" {
		cfg.Dir = g.Home()
	}
	if !o.quiet {
		cfg.Progress = g.stderr
	}
	return cfg, nil
}

func runBench(cmd *cobra.Command, g *globals, suites []string, o benchOptions) error {
	for _, s := range suites {
		if !slices.Contains(bench.Suites, s) {
			return usageErrorf("no suite %q (suites: %s)", s, strings.Join(bench.Suites, ", "))
		}
	}
	if o.report != "" {
		return showBenchReport(g, o)
	}
	cfg, err := benchConfig(cmd, g, o)
	if err != nil {
		return err
	}
	if o.chart != "" && len(suites) > 0 && !slices.Contains(suites, bench.SuiteThroughput) {
		return usageErrorf("--chart draws the throughput sweep: run the throughput suite too")
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return usageErrorf("--cpuprofile: %v", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return problemErrorf("--cpuprofile: %v", err)
		}
		defer pprof.StopCPUProfile()
	}
	if o.trace != "" {
		f, err := os.Create(o.trace)
		if err != nil {
			return usageErrorf("--trace: %v", err)
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return problemErrorf("--trace: %v", err)
		}
		defer trace.Stop()
	}
	rep, runErr := bench.Run(cmd.Context(), cfg, suites...)
	if rep != nil {
		if o.json {
			if err := bench.WriteJSON(g.stdout, rep); err != nil {
				return problemErrorf("%v", err)
			}
		} else {
			fmt.Fprintf(g.stdout, "command: ambr %s\n", strings.Join(os.Args[1:], " "))
			bench.WriteText(g.stdout, rep)
		}
		if o.chart != "" && rep.Throughput != nil {
			if err := bench.WriteChart(o.chart, rep); err != nil {
				runErr = errors.Join(runErr, fmt.Errorf("chart: %w", err))
			} else if !o.quiet {
				abs, _ := filepath.Abs(o.chart)
				fmt.Fprintf(g.stderr, "chart written to %s\n", abs)
			}
		}
	}
	if runErr != nil {
		if cmd.Context().Err() != nil {
			return usageErrorf("interrupted: %v", runErr)
		}
		return problemErrorf("bench: %v", runErr)
	}
	return nil
}

// showBenchReport prints a saved report's tables and draws its chart.
func showBenchReport(g *globals, o benchOptions) error {
	b, err := os.ReadFile(o.report)
	if err != nil {
		return usageErrorf("--report: %v", err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return usageErrorf("--report: %s is not a report saved with --json: %v", o.report, err)
	}
	if o.chart != "" {
		if err := bench.WriteChart(o.chart, &rep); err != nil {
			return problemErrorf("chart: %v", err)
		}
	}
	if o.json {
		if err := bench.WriteJSON(g.stdout, &rep); err != nil {
			return problemErrorf("%v", err)
		}
		return nil
	}
	bench.WriteText(g.stdout, &rep)
	return nil
}
