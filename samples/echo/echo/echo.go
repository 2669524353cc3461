// Package echo is the failure suite's workload (scenarios.md): a job
// immortal sends a known stream of forks — each a sequence number plus
// padding — to a server immortal, which counts and checksums what it gets and
// can echo every message back. A run is correct only on an exact match: the
// server's count, bytes and digest equal the job's, the job's echoes equal
// what it sent, no gaps, no duplicates.
//
// The server can also fire a self-impulse every few milliseconds (ticks,
// retried by their source and counted once by their handler) and carry a
// ballast in its state, to make its checkpoints large.
package echo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/ambr-dev/ambr/engine/immortal"
)

// Payload returns message seq of size bytes: the sequence number, then a
// pattern that depends on it.
func Payload(seq uint64, size int) []byte {
	p := make([]byte, max(size, 8))
	binary.LittleEndian.PutUint64(p, seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(seq + uint64(i))
	}
	return p
}

// Chain extends a digest over payloads, in order.
func Chain(d uint64, p []byte) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], d)
	h := xxhash.New()
	h.Write(b[:])
	h.Write(p)
	return h.Sum64()
}

// ExpectedDigest is the digest of messages 1..n of size bytes.
func ExpectedDigest(n, size int) string {
	var d uint64
	for s := 1; s <= n; s++ {
		d = Chain(d, Payload(uint64(s), size))
	}
	return fmt.Sprintf("%016x", d)
}

// Data is one message of the stream.
type Data struct {
	Job     string `json:"job"`
	Total   int    `json:"total"`
	Echo    bool   `json:"echo"`
	Payload []byte `json:"p"`
}

// ServerArgs start a server.
type ServerArgs struct {
	BallastMiB int `json:"ballast_mib"`
	Ticks      int `json:"ticks"`
}

// ServerState is the server's checkpointed state.
type ServerState struct {
	Count      int    `json:"count"`
	Bytes      int64  `json:"bytes"`
	Digest     string `json:"digest"`
	Gaps       int    `json:"gaps"`
	Total      int    `json:"total"`
	Ticks      int    `json:"ticks"`
	TickTarget int    `json:"tick_target"`
	Ballast    []byte `json:"ballast,omitempty"`
}

// NewServer returns the server app.
func NewServer(args ServerArgs, out io.Writer) *immortal.App[ServerState] {
	app := immortal.New(func() ServerState { return ServerState{Digest: fmt.Sprintf("%016x", 0)} }, immortal.WithInitArgs(args))
	app.OnFirstStart(func(ctx *immortal.Ctx, s *ServerState, raw []byte) error {
		var a ServerArgs
		if err := ctx.Unmarshal(raw, &a); err != nil {
			return err
		}
		s.TickTarget = a.Ticks
		if a.BallastMiB > 0 {
			s.Ballast = make([]byte, a.BallastMiB<<20)
		}
		return nil
	})
	immortal.Handle(app, "data", func(ctx *immortal.Ctx, s *ServerState, d Data) (struct{}, error) {
		if len(d.Payload) < 8 {
			return struct{}{}, errors.New("echo: payload shorter than its sequence number")
		}
		if seq := binary.LittleEndian.Uint64(d.Payload); seq != uint64(s.Count+1) {
			s.Gaps++
		}
		s.Count++
		s.Bytes += int64(len(d.Payload))
		prev, _ := strconv.ParseUint(s.Digest, 16, 64)
		s.Digest = fmt.Sprintf("%016x", Chain(prev, d.Payload))
		s.Total = d.Total
		if d.Echo {
			if err := ctx.Fork(d.Job, "echo", d.Payload); err != nil {
				return struct{}{}, err
			}
		}
		if s.Count == s.Total {
			ctx.RequestCheckpoint()
			if !ctx.Replaying() && out != nil {
				fmt.Fprintf(out, "received all %d messages, %d bytes, digest %s\n", s.Count, s.Bytes, s.Digest)
			}
		}
		return struct{}{}, nil
	})
	immortal.Handle(app, "tick", func(ctx *immortal.Ctx, s *ServerState, k int) (struct{}, error) {
		if k == s.Ticks && s.Ticks < s.TickTarget {
			s.Ticks++
			if s.Ticks == s.TickTarget {
				ctx.RequestCheckpoint()
			}
		}
		return struct{}{}, nil
	})
	return app
}

// Tick fires the server's self-impulses every interval until it has counted
// its tick target; a tick lost in a crash is sent again.
func Tick(ctx context.Context, app *immortal.App[ServerState], every time.Duration) {
	immortal.Every(ctx, app, every, func(s ServerState) (string, any, bool) {
		if s.Ticks >= s.TickTarget {
			return "", nil, false
		}
		return "tick", s.Ticks, false
	})
}

// JobArgs start a job.
type JobArgs struct {
	Server string `json:"server"`
	Count  int    `json:"count"`
	Size   int    `json:"size"`
	Echo   bool   `json:"echo"`
	// Window is how many messages may await their echo (echo only).
	Window int `json:"window"`
	// Burst, without echo, sends the messages Burst at a time, one record
	// each (a self-call asks for the next burst), instead of all from the
	// first record: a stream the coordinator can slow down between records.
	Burst int `json:"burst,omitempty"`
}

// JobState is the job's checkpointed state.
type JobState struct {
	JobArgs
	Sent      int   `json:"sent"`
	Echoes    int   `json:"echoes"`
	EchoBytes int64 `json:"echo_bytes"`
	EchoGaps  int   `json:"echo_gaps"`
	Done      bool  `json:"done"`
}

// NewJob returns the job app.
func NewJob(args JobArgs, out io.Writer) *immortal.App[JobState] {
	app := immortal.New(func() JobState { return JobState{} }, immortal.WithInitArgs(args))
	var burst func(ctx *immortal.Ctx, s *JobState) error
	send := func(ctx *immortal.Ctx, s *JobState, upTo int) error {
		for s.Sent < upTo && s.Sent < s.Count {
			s.Sent++
			d := Data{Job: ctx.Self(), Total: s.Count, Echo: s.Echo, Payload: Payload(uint64(s.Sent), s.Size)}
			if err := ctx.Fork(s.Server, "data", d); err != nil {
				return err
			}
		}
		if !s.Echo && s.Sent == s.Count {
			s.Done = true
		}
		return nil
	}
	app.OnFirstStart(func(ctx *immortal.Ctx, s *JobState, raw []byte) error {
		if err := ctx.Unmarshal(raw, &s.JobArgs); err != nil {
			return err
		}
		if s.Window <= 0 || !s.Echo {
			s.Window = s.Count
		}
		if s.Burst > 0 && !s.Echo {
			return burst(ctx, s)
		}
		return send(ctx, s, s.Window)
	})
	burst = func(ctx *immortal.Ctx, s *JobState) error {
		if err := send(ctx, s, s.Sent+s.Burst); err != nil {
			return err
		}
		if s.Sent < s.Count {
			return ctx.Fork(ctx.Self(), "burst", struct{}{})
		}
		return nil
	}
	immortal.Handle(app, "burst", func(ctx *immortal.Ctx, s *JobState, _ struct{}) (struct{}, error) {
		return struct{}{}, burst(ctx, s)
	})
	immortal.Handle(app, "echo", func(ctx *immortal.Ctx, s *JobState, p []byte) (struct{}, error) {
		if len(p) < 8 || binary.LittleEndian.Uint64(p) != uint64(s.Echoes+1) {
			s.EchoGaps++
		}
		s.Echoes++
		s.EchoBytes += int64(len(p))
		if err := send(ctx, s, s.Echoes+s.Window); err != nil {
			return struct{}{}, err
		}
		if s.Echoes == s.Count {
			s.Done = true
			ctx.RequestCheckpoint()
			if !ctx.Replaying() && out != nil {
				fmt.Fprintf(out, "all %d echoes back, %d bytes\n", s.Echoes, s.EchoBytes)
			}
		}
		return struct{}{}, nil
	})
	return app
}
