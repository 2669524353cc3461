package engine_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/vfs"
)

// giantSizes straddle the sizes from which large messages travel by
// reference: the binding's payload (64 KiB), the peer queue's Message frame
// (128 KiB), the peer reader's buffer of its own and the record of its own
// (1 MiB).
var giantSizes = []int{100, 64<<10 - 1, 64 << 10, 200 << 10, 1<<20 - 30, 1<<20 + 30, 3 << 20}

func giantPayload(i, n int) []byte {
	p := make([]byte, n)
	for k := range p {
		p[k] = byte(i*31 + k*7 + k>>9)
	}
	return p
}

type giantSums struct{ Sums, Again []string }

// giantCodec passes a []byte as it is, so that the sizes on the wire are
// giantSizes (and an envelope's few bytes), and everything else as JSON.
type giantCodec struct{}

func (giantCodec) Name() string { return "giant-test" }

func (giantCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
	}
	return json.Marshal(v)
}

func (giantCodec) Unmarshal(data []byte, v any) error {
	if b, ok := v.(*[]byte); ok {
		*b = data
		return nil
	}
	return json.Unmarshal(data, v)
}

// TestGiantMessagesEndToEnd sends messages of giantSizes from one hosted
// immortal to another, through two coordinators over loopback TCP and their
// logs, and the receiver forks each to itself; it checks the receiver got
// each one's bytes both times; then it restarts the receiver, whose
// recovery replays them from its log (records written with the giant ones
// by reference), and checks the replay got the same bytes.
func TestGiantMessagesEndToEnd(t *testing.T) {
	mem := vfs.NewMem()
	reg := engine.FileRegistry{Dir: filepath.Join(t.TempDir(), "registry")}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := func(name string) engine.Options {
		return engine.Options{Dir: "/home/" + name, Name: name, FS: mem, Registry: reg, Logger: quiet}
	}
	var want []string
	for i, n := range giantSizes {
		sum := sha256.Sum256(giantPayload(i, n))
		want = append(want, hex.EncodeToString(sum[:]))
	}
	newJob := func() *immortal.App[struct{}] {
		app := immortal.New(func() struct{} { return struct{}{} }, immortal.WithLogger(quiet), immortal.WithCodec(giantCodec{}))
		app.OnFirstStart(func(ctx *immortal.Ctx, _ *struct{}, _ []byte) error {
			for i, n := range giantSizes {
				if err := ctx.Fork("srv", "data", giantPayload(i, n)); err != nil {
					return err
				}
			}
			return nil
		})
		return app
	}
	var replayed atomic.Int64
	newSrv := func() *immortal.App[giantSums] {
		app := immortal.New(func() giantSums { return giantSums{Sums: []string{}, Again: []string{}} }, immortal.WithLogger(quiet), immortal.WithCodec(giantCodec{}))
		immortal.Handle(app, "data", func(ctx *immortal.Ctx, s *giantSums, p []byte) (struct{}, error) {
			if ctx.Replaying() {
				replayed.Add(1)
			}
			sum := sha256.Sum256(p)
			s.Sums = append(s.Sums, hex.EncodeToString(sum[:]))
			return struct{}{}, ctx.Fork("", "again", p) // and to itself
		})
		immortal.Handle(app, "again", func(ctx *immortal.Ctx, s *giantSums, p []byte) (struct{}, error) {
			if ctx.Replaying() {
				replayed.Add(1)
			}
			sum := sha256.Sum256(p)
			s.Again = append(s.Again, hex.EncodeToString(sum[:]))
			return struct{}{}, nil
		})
		return app
	}
	run := func(ctx context.Context, name string, app hosted.App) chan error {
		done := make(chan error, 1)
		go func() { done <- hosted.Run(ctx, func() hosted.App { return app }, opts(name)) }()
		return done
	}
	waitSums := func(srv *immortal.App[giantSums], what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			s, ok := srv.State()
			if ok && len(s.Sums) >= len(want) && len(s.Again) >= len(want) {
				for i := range want {
					if s.Sums[i] != want[i] {
						t.Fatalf("%s: message %d of %d bytes arrived with other bytes", what, i, giantSizes[i])
					}
					if s.Again[i] != want[i] {
						t.Fatalf("%s: self-call %d of %d bytes arrived with other bytes", what, i, giantSizes[i])
					}
				}
				if len(s.Sums) > len(want) || len(s.Again) > len(want) {
					t.Fatalf("%s: %d messages and %d self-calls, want %d", what, len(s.Sums), len(s.Again), len(want))
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of %d messages after 60 s", what, len(s.Sums), len(want))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	jctx, jstop := context.WithCancel(context.Background())
	jobDone := run(jctx, "job", newJob())
	sctx, sstop := context.WithCancel(context.Background())
	srv := newSrv()
	srvDone := run(sctx, "srv", srv)
	waitSums(srv, "live")
	sstop()
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
	jstop()
	if err := <-jobDone; err != nil {
		t.Fatal(err)
	}

	// The receiver again, alone: its state comes from replaying its log.
	sctx, sstop = context.WithCancel(context.Background())
	srv = newSrv()
	srvDone = run(sctx, "srv", srv)
	waitSums(srv, "replayed")
	sstop()
	if err := <-srvDone; err != nil {
		t.Fatal(err)
	}
	if n := replayed.Load(); n != 2*int64(len(want)) {
		t.Fatalf("%d messages and self-calls replayed from the log, want %d", n, 2*len(want))
	}
}
