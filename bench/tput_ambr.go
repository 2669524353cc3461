package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
)

// The throughput workload, as immortals: a job sends forks of Size bytes to
// a server, keeping at most window messages unacknowledged. One-way, the
// server acknowledges with a fork "progress" (the count received) every
// window/4 messages; echo, it forks each message back. Both sides log every
// input durably, so the job's acknowledgements and echoes are logged too.

type tputServerArgs struct {
	Job      string `json:"job"`
	Echo     bool   `json:"echo"`
	AckEvery int64  `json:"ack_every"`
	Total    int64  `json:"total"`
}

type tputServerState struct {
	Args  tputServerArgs `json:"args"`
	Msgs  int64          `json:"msgs"`
	Bytes int64          `json:"bytes"`
	Acked int64          `json:"acked"`
}

type tputJobArgs struct {
	Server string `json:"server"`
	Size   int    `json:"size"`
	Total  int64  `json:"total"`
	Echo   bool   `json:"echo"`
	Window int64  `json:"window"`
}

type tputJobState struct {
	Args  tputJobArgs `json:"args"`
	Sent  int64       `json:"sent"`
	Acked int64       `json:"acked"`
}

func newTputServer(args tputServerArgs, done *signal) *immortal.App[tputServerState] {
	app := immortal.New(func() tputServerState { return tputServerState{} },
		immortal.WithCodec(rawCodec{}), immortal.WithInitArgs(args), immortal.WithLogger(quiet))
	app.OnFirstStart(func(ctx *immortal.Ctx, s *tputServerState, raw []byte) error {
		return ctx.Unmarshal(raw, &s.Args)
	})
	immortal.Handle(app, "warm", func(ctx *immortal.Ctx, s *tputServerState, _ int64) (struct{}, error) {
		return struct{}{}, ctx.Fork(s.Args.Job, "warmed", int64(0))
	})
	immortal.Handle(app, "data", func(ctx *immortal.Ctx, s *tputServerState, p []byte) (struct{}, error) {
		s.Msgs++
		s.Bytes += int64(len(p))
		if s.Args.Echo {
			return struct{}{}, ctx.Fork(s.Args.Job, "echo", p)
		}
		if s.Msgs-s.Acked >= s.Args.AckEvery || s.Msgs == s.Args.Total {
			s.Acked = s.Msgs
			if err := ctx.Fork(s.Args.Job, "progress", s.Msgs); err != nil {
				return struct{}{}, err
			}
		}
		if s.Msgs == s.Args.Total && !ctx.Replaying() {
			done.raise()
		}
		return struct{}{}, nil
	})
	return app
}

func newTputJob(args tputJobArgs, warmed, done *signal) *immortal.App[tputJobState] {
	app := immortal.New(func() tputJobState { return tputJobState{} },
		immortal.WithCodec(rawCodec{}), immortal.WithInitArgs(args), immortal.WithLogger(quiet))
	payload := make([]byte, args.Size)
	for i := range payload {
		payload[i] = byte(i)
	}
	send := func(ctx *immortal.Ctx, s *tputJobState) error {
		for s.Sent < s.Args.Total && s.Sent-s.Acked < s.Args.Window {
			if err := ctx.Fork(s.Args.Server, "data", payload); err != nil {
				return err
			}
			s.Sent++
		}
		return nil
	}
	app.OnFirstStart(func(ctx *immortal.Ctx, s *tputJobState, raw []byte) error {
		return ctx.Unmarshal(raw, &s.Args)
	})
	immortal.Handle(app, "warm", func(ctx *immortal.Ctx, s *tputJobState, _ int64) (struct{}, error) {
		return struct{}{}, ctx.Fork(s.Args.Server, "warm", int64(0))
	})
	immortal.Handle(app, "warmed", func(ctx *immortal.Ctx, s *tputJobState, _ int64) (struct{}, error) {
		if !ctx.Replaying() {
			warmed.raise()
		}
		return struct{}{}, nil
	})
	immortal.Handle(app, "start", func(ctx *immortal.Ctx, s *tputJobState, _ int64) (struct{}, error) {
		return struct{}{}, send(ctx, s)
	})
	immortal.Handle(app, "progress", func(ctx *immortal.Ctx, s *tputJobState, n int64) (struct{}, error) {
		s.Acked = max(s.Acked, n)
		return struct{}{}, send(ctx, s)
	})
	immortal.Handle(app, "echo", func(ctx *immortal.Ctx, s *tputJobState, _ []byte) (struct{}, error) {
		s.Acked++
		if s.Acked == s.Args.Total && !ctx.Replaying() {
			done.raise()
		}
		return struct{}{}, send(ctx, s)
	})
	return app
}

// runAmbrThroughput runs one measurement: fresh job and server instances
// under dir, with the given logging mode; it returns the time from the
// start impulse to the last message processed (one-way: by the server;
// echo: its echo by the job).
func runAmbrThroughput(ctx context.Context, dir, logMode string, plaintext bool, size int, total, window int64, echo bool) (time.Duration, error) {
	home, err := os.MkdirTemp(dir, "tput-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(home)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	warmed, done := newSignal(), newSignal()
	srv := newTputServer(tputServerArgs{Job: "job", Echo: echo, AckEvery: max(1, window/4), Total: total}, done)
	job := newTputJob(tputJobArgs{Server: "srv", Size: size, Total: total, Echo: echo, Window: window}, warmed, done)
	fsys := fsFor(logMode)
	runCtx, stop := context.WithCancel(ctx)
	ns := startNode(runCtx, home, "srv", fsys, 0, plaintext, func() hosted.App { return srv })
	nj := startNode(runCtx, home, "job", fsys, 0, plaintext, func() hosted.App { return job })
	elapsed, err := func() (time.Duration, error) {
		for _, n := range []*node{ns, nj} {
			if err := n.waitLive(ctx); err != nil {
				return 0, err
			}
		}
		// A round trip job → srv → job first: links up, both sides primary.
		if err := impulse(ctx, job, "warm", int64(0)); err != nil {
			return 0, err
		}
		if err := warmed.wait(ctx, "the warm-up round trip", ns, nj); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := impulse(ctx, job, "start", int64(0)); err != nil {
			return 0, err
		}
		if err := done.wait(ctx, fmt.Sprintf("%d messages of %s", total, SizeName(int64(size))), ns, nj); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}()
	if serr := stopNodes(stop, ns, nj); err == nil && serr != nil {
		err = serr
	}
	return elapsed, err
}

// The throughput workload with processes: two coordinators (the giant
// suite's "ic" children) and the server and the job, each an app process
// of its own connected to its coordinator over loopback TCP, as ambr run
// runs them. The arguments come in the environment.
const envTputArgs = "AMBR_BENCH_TPUT_ARGS" // size total window echo(0|1)

func tputArgsFromEnv() (size int, total, window int64, echo bool, err error) {
	var e int
	if _, err = fmt.Sscan(os.Getenv(envTputArgs), &size, &total, &window, &e); err != nil {
		err = fmt.Errorf("%s: %v", envTputArgs, err)
	}
	return size, total, window, e == 1, err
}

// tputServerApp is the server as an app process: it prints "done" once it
// has all the messages (one-way).
func tputServerApp(ctx context.Context) error {
	_, total, window, echo, err := tputArgsFromEnv()
	if err != nil {
		return err
	}
	done := newSignal()
	srv := newTputServer(tputServerArgs{Job: "job", Echo: echo, AckEvery: max(1, window/4), Total: total}, done)
	go func() {
		if done.wait(ctx, "the messages") == nil {
			say("done")
		}
	}()
	return srv.Run(ctx)
}

// tputJobApp is the job as an app process: "warm" and "start" on its stdin
// are its impulses; it prints "warmed" after the warm-up round trip and,
// echo, "done" once every echo is back.
func tputJobApp(ctx context.Context) error {
	size, total, window, echo, err := tputArgsFromEnv()
	if err != nil {
		return err
	}
	warmed, done := newSignal(), newSignal()
	job := newTputJob(tputJobArgs{Server: "srv", Size: size, Total: total, Echo: echo, Window: window}, warmed, done)
	go func() {
		if warmed.wait(ctx, "the warm-up") == nil {
			say("warmed")
		}
		if done.wait(ctx, "the echoes") == nil {
			say("done")
		}
	}()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if cmd := sc.Text(); cmd == "warm" || cmd == "start" {
				if err := impulse(ctx, job, cmd, int64(0)); err != nil {
					say("error %v", err)
				}
			}
		}
	}()
	return job.Run(ctx)
}

// runAmbrProcThroughput is runAmbrThroughput (durable, TLS) with each
// coordinator and each app a process; the time runs from the start
// impulse being asked for to the "done" line.
func runAmbrProcThroughput(ctx context.Context, dir string, size int, total, window int64, echo bool) (time.Duration, error) {
	r, err := newProcRun(ctx, dir, "tput-procs-")
	if err != nil {
		return 0, err
	}
	defer r.close()
	ctx, home := r.ctx, r.home
	e := 0
	if echo {
		e = 1
	}
	args := []string{fmt.Sprintf("%s=%d %d %d %d", envTputArgs, size, total, window, e)}
	procs, err := startInstances(ctx, home, &r.all, []instProcs{
		{"srv", "srv coordinator", "srv app", "tput-srv", args},
		{"job", "job coordinator", "job app", "tput-job", args}})
	if err != nil {
		return 0, err
	}
	job, srv := procs["job app"], procs["srv app"]
	fmt.Fprintln(job.stdin, "warm")
	if _, err := job.expect(ctx, "warmed", r.all, nil); err != nil {
		return 0, err
	}
	start := time.Now()
	fmt.Fprintln(job.stdin, "start")
	last := srv
	if echo {
		last = job
	}
	if _, err := last.expect(ctx, "done", r.all, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
