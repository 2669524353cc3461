package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

// CallRow is one system's calls with a result at a number of calls in
// flight: the rate over the measured calls and their latency percentiles
// (milliseconds), each a summary over the runs.
type CallRow struct {
	System   string `json:"system"`
	InFlight int    `json:"in_flight"`
	// Offered is the rate calls were released at, for an open-loop row
	// (InFlight is then the most in flight at once); 0 for a closed loop.
	Offered float64 `json:"offered_per_s,omitempty"`
	Calls   int     `json:"calls"`
	PerSec  Summary `json:"per_sec"`
	P50ms   Summary `json:"p50_ms"`
	P99ms   Summary `json:"p99_ms"`
	P999ms  Summary `json:"p99_9_ms"`
}

// callSample is one run's calls.
type callSample struct {
	perSec float64
	lat    []time.Duration
}

// rowOf summarizes runs into a row.
func rowOf(system string, inflight, calls int, runs []callSample) CallRow {
	var rate, p50, p99, p999 []float64
	for _, r := range runs {
		rate = append(rate, r.perSec)
		p50 = append(p50, ms(Percentile(r.lat, 50)))
		p99 = append(p99, ms(Percentile(r.lat, 99)))
		p999 = append(p999, ms(Percentile(r.lat, 99.9)))
	}
	return CallRow{System: system, InFlight: inflight, Calls: calls, PerSec: Summarize(rate), P50ms: Summarize(p50), P99ms: Summarize(p99), P999ms: Summarize(p999)}
}

// The ambr side: samples/counter's server and a client immortal that keeps
// InFlight calls of Inc() in flight until Total have returned. The client
// times each call from the handler that made it to the handler of its
// result (live only; a side effect outside the state).

type callArgs struct {
	Server   string `json:"server"`
	Total    int64  `json:"total"`
	InFlight int64  `json:"in_flight"`
	// Paced: calls are issued as "release" impulses allow (open loop),
	// at most InFlight at once; otherwise InFlight are kept in flight.
	Paced bool `json:"paced,omitempty"`
}

type callState struct {
	Args   callArgs `json:"args"`
	Issued int64    `json:"issued"`
	Done   int64    `json:"done"`
	Owed   int64    `json:"owed"` // released, not yet issued (paced)
}

// callClock is the client's stopwatch, written by its handlers only.
type callClock struct {
	warmup        int64
	sent          []time.Time
	lat           []time.Duration
	warmEnd, last time.Time
}

func newCallClient(args callArgs, clk *callClock, done *signal) *immortal.App[callState] {
	app := immortal.New(func() callState { return callState{} }, immortal.WithInitArgs(args), immortal.WithLogger(quiet))
	call := func(ctx *immortal.Ctx, s *callState) error {
		s.Issued++
		if !ctx.Replaying() && !s.Args.Paced {
			clk.sent[s.Issued] = time.Now() // paced: the release time, set by the driver
		}
		return ctx.Call(s.Args.Server, "Inc", struct{}{}, "incResult", s.Issued)
	}
	issueOwed := func(ctx *immortal.Ctx, s *callState) error {
		for s.Owed > 0 && s.Issued-s.Done < s.Args.InFlight {
			s.Owed--
			if err := call(ctx, s); err != nil {
				return err
			}
		}
		return nil
	}
	app.OnFirstStart(func(ctx *immortal.Ctx, s *callState, raw []byte) error { return ctx.Unmarshal(raw, &s.Args) })
	immortal.Handle(app, "go", func(ctx *immortal.Ctx, s *callState, _ struct{}) (struct{}, error) {
		for s.Issued < s.Args.Total && s.Issued-s.Done < s.Args.InFlight {
			if err := call(ctx, s); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, nil
	})
	immortal.Handle(app, "release", func(ctx *immortal.Ctx, s *callState, n int64) (struct{}, error) {
		s.Owed += n
		return struct{}{}, issueOwed(ctx, s)
	})
	immortal.HandleResult(app, "incResult", func(ctx *immortal.Ctx, s *callState, n int, callErr error, note []byte) error {
		if callErr != nil {
			return callErr
		}
		var idx int64
		if err := ctx.Unmarshal(note, &idx); err != nil {
			return err
		}
		s.Done++
		if !ctx.Replaying() {
			now := time.Now()
			if idx > clk.warmup {
				clk.lat = append(clk.lat, now.Sub(clk.sent[idx]))
			}
			if s.Done == clk.warmup {
				clk.warmEnd = now
			}
			if s.Done == s.Args.Total {
				clk.last = now
				done.raise()
			}
		}
		if s.Args.Paced {
			return issueOwed(ctx, s)
		}
		if s.Issued < s.Args.Total {
			return call(ctx, s)
		}
		return nil
	})
	return app
}

// releaseTick is how often an open-loop driver releases the calls due.
const releaseTick = time.Millisecond

// pace calls release(first, n, at) every releaseTick with the calls due by
// then at rate per second, numbered from 1, until total are released or
// ctx ends.
func pace(ctx context.Context, rate float64, total int64, release func(first, n int64, at time.Time) error) error {
	t := time.NewTicker(releaseTick)
	defer t.Stop()
	start := time.Now()
	var sent int64
	for sent < total {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case now := <-t.C:
			due := min(total, int64(now.Sub(start).Seconds()*rate)) - sent
			if due <= 0 {
				continue
			}
			if err := release(sent+1, due, now); err != nil {
				return err
			}
			sent += due
		}
	}
	return nil
}

// runAmbrCalls runs fresh counter server and client instances under dir and
// measures total calls (after warmup more) with inflight in flight; with
// rate > 0, calls are released at rate per second instead (open loop, at
// most inflight at once), and each call's latency counts from its release.
func runAmbrCalls(ctx context.Context, dir string, total, warmup, inflight int, rate float64) (callSample, error) {
	home, err := os.MkdirTemp(dir, "calls-")
	if err != nil {
		return callSample{}, err
	}
	defer os.RemoveAll(home)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	all := int64(total + warmup)
	clk := &callClock{warmup: int64(warmup), sent: make([]time.Time, all+1), lat: make([]time.Duration, 0, total)}
	done := newSignal()
	srv := counter.NewServer(nil)
	cli := newCallClient(callArgs{Server: "counter", Total: all, InFlight: int64(inflight), Paced: rate > 0}, clk, done)
	runCtx, stop := context.WithCancel(ctx)
	ns := startNode(runCtx, home, "counter", fsFor(logDurable), 0, false, func() hosted.App { return srv })
	nc := startNode(runCtx, home, "client", fsFor(logDurable), 0, false, func() hosted.App { return cli })
	sample, err := func() (callSample, error) {
		for _, n := range []*node{ns, nc} {
			if err := n.waitLive(ctx); err != nil {
				return callSample{}, err
			}
		}
		start := time.Now()
		if rate > 0 {
			pctx, stopPace := context.WithCancel(ctx)
			paced := make(chan error, 1)
			go func() {
				paced <- pace(pctx, rate, all, func(first, n int64, at time.Time) error {
					for i := first; i < first+n; i++ {
						clk.sent[i] = at
					}
					return impulse(pctx, cli, "release", n)
				})
			}()
			defer func() { stopPace(); <-paced }()
		} else if err := impulse(ctx, cli, "go", struct{}{}); err != nil {
			return callSample{}, err
		}
		if err := done.wait(ctx, fmt.Sprintf("%d calls", all), ns, nc); err != nil {
			return callSample{}, err
		}
		from := clk.warmEnd
		if warmup == 0 {
			from = start
		}
		return callSample{perSec: float64(total) / clk.last.Sub(from).Seconds(), lat: clk.lat}, nil
	}()
	if serr := stopNodes(stop, ns, nc); err == nil && serr != nil {
		err = serr
	}
	return sample, err
}

// runGRPCCalls makes total calls of Inc (after warmup more) on conn from
// inflight goroutines, each with a fresh idempotency key; with rate > 0 the
// calls are released at rate per second (open loop) and each one's latency
// counts from its release.
func runGRPCCalls(ctx context.Context, conn *grpc.ClientConn, total, warmup, inflight int, rate float64) (callSample, error) {
	var prefix [8]byte
	_, _ = rand.Read(prefix[:])
	call := func(i int64) error {
		key := binary.LittleEndian.AppendUint64(append([]byte(nil), prefix[:]...), uint64(i))
		return conn.Invoke(ctx, "/"+grpcService+"/Inc", &wrapperspb.BytesValue{Value: key}, new(wrapperspb.Int64Value))
	}
	for i := 0; i < warmup; i++ {
		if err := call(int64(total + 1 + i)); err != nil {
			return callSample{}, err
		}
	}
	var next atomic.Int64
	lats := make([][]time.Duration, inflight)
	errs := make(chan error, inflight)
	// Open loop: the pacer puts each call's release time in released.
	var released chan time.Time
	pctx, stopPace := context.WithCancel(ctx)
	defer stopPace()
	if rate > 0 {
		released = make(chan time.Time, total)
		go func() {
			_ = pace(pctx, rate, int64(total), func(_, n int64, at time.Time) error {
				for range n {
					released <- at
				}
				return nil
			})
		}()
	}
	var wg sync.WaitGroup
	start := time.Now()
	for g := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(total) {
					return
				}
				t := time.Now()
				if released != nil {
					select {
					case t = <-released:
					case <-ctx.Done():
						errs <- ctx.Err()
						return
					}
				}
				if err := call(i); err != nil {
					errs <- err
					return
				}
				lats[g] = append(lats[g], time.Since(t))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return callSample{}, err
	}
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	return callSample{perSec: float64(total) / el.Seconds(), lat: all}, nil
}

// The latency suite with processes: two coordinators (the giant suite's
// "ic" children) and, each a process of its own connected to its
// coordinator over loopback TCP, the counter server and the call client,
// which times the calls and prints them. The client's arguments come in
// the environment.
const envCallsArgs = "AMBR_BENCH_CALLS_ARGS" // total warmup inflight

// callsServerApp is samples/counter's server as an app process.
func callsServerApp(ctx context.Context) error {
	return counter.NewServer(nil).Run(ctx)
}

// callsClientApp is the call client as an app process: on "go" from its
// stdin it makes the calls, then prints "lat" and each measured call's
// latency in nanoseconds, and "rate" and the calls per second.
func callsClientApp(ctx context.Context) error {
	var total, warmup, inflight int64
	if _, err := fmt.Sscan(os.Getenv(envCallsArgs), &total, &warmup, &inflight); err != nil {
		return fmt.Errorf("%s: %v", envCallsArgs, err)
	}
	all := total + warmup
	clk := &callClock{warmup: warmup, sent: make([]time.Time, all+1), lat: make([]time.Duration, 0, total)}
	done := newSignal()
	cli := newCallClient(callArgs{Server: "counter", Total: all, InFlight: inflight}, clk, done)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() != "go" {
				continue
			}
			if err := impulse(ctx, cli, "go", struct{}{}); err != nil {
				say("error %v", err)
				return
			}
			if err := done.wait(ctx, "the calls"); err != nil {
				say("error %v", err)
				return
			}
			say("lat %d", len(clk.lat))
			for at := 0; at < len(clk.lat); at += 500 { // lines a scanner takes
				var b strings.Builder
				b.WriteString("l")
				for _, d := range clk.lat[at:min(at+500, len(clk.lat))] {
					fmt.Fprintf(&b, " %d", d.Nanoseconds())
				}
				say("%s", b.String())
			}
			from := clk.warmEnd
			if warmup == 0 || from.IsZero() {
				from = clk.sent[1]
			}
			say("rate %g", float64(total)/clk.last.Sub(from).Seconds())
		}
	}()
	return cli.Run(ctx)
}

// runAmbrProcCalls is runAmbrCalls (closed loop) with each coordinator and
// each app a process.
func runAmbrProcCalls(ctx context.Context, cfg Config, dir string, total, warmup, inflight int) (callSample, error) {
	r, err := newProcRun(ctx, dir, "calls-procs-")
	if err != nil {
		return callSample{}, err
	}
	defer r.close()
	ctx, home := r.ctx, r.home
	args := []string{fmt.Sprintf("%s=%d %d %d", envCallsArgs, total, warmup, inflight)}
	procs, err := startInstances(ctx, home, &r.all, []instProcs{
		{"counter", "counter coordinator", "counter app", "calls-srv", nil},
		{"client", "client coordinator", "client app", "calls-cli", args}})
	if err != nil {
		return callSample{}, err
	}
	watch := r.all
	cli := procs["client app"]
	fmt.Fprintln(cli.stdin, "go")
	n, err := cli.expect(ctx, "lat", watch, nil)
	if err != nil {
		return callSample{}, err
	}
	count := 0
	if len(n) == 1 {
		count, _ = strconv.Atoi(n[0])
	}
	if count <= 0 {
		return callSample{}, fmt.Errorf("client app: no calls timed (%q)", n)
	}
	s := callSample{lat: make([]time.Duration, 0, count)}
	for len(s.lat) < count {
		lat, err := cli.expect(ctx, "l ", watch, nil)
		if err != nil {
			return callSample{}, err
		}
		for _, f := range lat {
			ns, err := strconv.ParseInt(f, 10, 64)
			if err != nil {
				return callSample{}, fmt.Errorf("client app: latency %q", f)
			}
			s.lat = append(s.lat, time.Duration(ns))
		}
	}
	rate, err := cli.expect(ctx, "rate", watch, nil)
	if err != nil || len(rate) != 1 {
		return callSample{}, fmt.Errorf("client app: no rate (%v)", err)
	}
	if s.perSec, err = strconv.ParseFloat(rate[0], 64); err != nil {
		return callSample{}, fmt.Errorf("client app: rate %q", rate[0])
	}
	return s, nil
}
