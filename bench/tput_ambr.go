package bench

import (
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
