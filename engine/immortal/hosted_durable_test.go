package immortal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
)

// With a real coordinator in the process (engine/hosted: a real log,
// checkpoints and recovery), stopped and started again mid-run: five
// transfers on one instance lock two accounts, debit, sleep on a durable
// timer and credit. Each must finish once, the money must add up, no lock
// may be left and every timer must have fired.

type hostedState struct {
	Results []string `json:"results"`
	Done    bool     `json:"done"`
}

const hostedTransfers = 5

func newHostedApp() *immortal.App[hostedState] {
	app := immortal.New(func() hostedState { return hostedState{Results: []string{}} }, immortal.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	acct := immortal.NewEntity(app, "acct", func() int64 { return 100 })
	immortal.HandleOp(acct, "add", func(ec *immortal.EntityCtx, balance *int64, n int64) (int64, error) {
		*balance += n
		return *balance, nil
	})
	immortal.Orchestrate(app, "xfer", func(o *immortal.Orch, i int) (string, error) {
		a, b := acct.ID("", "a"), acct.ID("", "b")
		cs, err := o.Lock(a, b)
		if err != nil {
			return "", err
		}
		defer cs.Unlock()
		if _, err := immortal.CallEntityAsync[int64](o, a, "add", -10).Await(); err != nil {
			return "", err
		}
		if err := o.Sleep(20 * time.Millisecond); err != nil {
			return "", err
		}
		v, err := immortal.CallEntityAsync[int64](o, b, "add", 10).Await()
		return fmt.Sprintf("xfer %d: b=%d", i, v), err
	})
	app.OnFirstStart(func(ctx *immortal.Ctx, s *hostedState, _ []byte) error {
		for i := range hostedTransfers {
			if err := ctx.Call("", "xfer", i, "done", nil); err != nil {
				return err
			}
		}
		return nil
	})
	immortal.HandleResult(app, "done", func(ctx *immortal.Ctx, s *hostedState, r string, callErr error, _ []byte) error {
		if callErr != nil {
			r = callErr.Error()
		}
		s.Results = append(s.Results, r)
		if len(s.Results) == hostedTransfers {
			s.Done = true
			ctx.RequestCheckpoint()
		}
		return nil
	})
	return app
}

func TestHostedTransfersWithTimersAcrossRestarts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bank")
	opts := engine.Options{Dir: dir, Name: "bank", SegmentSize: 4 << 10, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	run := func(ctx context.Context) chan error {
		errc := make(chan error, 1)
		go func() { errc <- hosted.Run(ctx, func() hosted.App { return newHostedApp() }, opts) }()
		return errc
	}
	midRun := 0
	for round := range 3 { // stopped mid-run three times
		ctx, cancel := context.WithCancel(context.Background())
		errc := run(ctx)
		time.Sleep(time.Duration(10+round*15) * time.Millisecond)
		cancel()
		if err := <-errc; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if s, ok := newestHosted(dir); ok && !s.Done {
			midRun++
		}
	}
	if midRun == 0 {
		t.Fatal("no stop came mid-run (with a checkpoint to recover from); the test proves nothing")
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := run(ctx)
	var s hostedState
	var d *immortal.DurableState
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ok bool
		if d, ok = immortal.NewestDurable(dir, &s); ok && s.Done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not done after 60 s: %+v", s)
		}
		select {
		case err := <-errc:
			t.Fatalf("stopped: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(s.Results) != hostedTransfers {
		t.Errorf("results %v, want %d", s.Results, hostedTransfers)
	}
	balances := map[string]int64{}
	for k, e := range d.Entities {
		if e.LockedBy != "" || len(e.Queue) > 0 {
			t.Errorf("%s left locked by %q with %d queued", k, e.LockedBy, len(e.Queue))
		}
		var v int64
		json.Unmarshal(e.State, &v)
		balances[k] = v
	}
	if balances["acct@a"] != 50 || balances["acct@b"] != 150 {
		t.Errorf("balances %v, want a 50, b 150", balances)
	}
	if len(d.Orchestrations) != 0 || len(d.Timers) != 0 {
		t.Errorf("%d orchestrations and %d timers left", len(d.Orchestrations), len(d.Timers))
	}
	_, fired, err := immortal.LoggedCalls(dir, "ambr.timer")
	if err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= hostedTransfers; id++ {
		if fired[fmt.Sprintf("%q", fmt.Sprint(id))] == 0 {
			t.Errorf("timer %d never fired (logged firings: %v)", id, fired)
		}
	}
}

func newestHosted(dir string) (hostedState, bool) {
	var s hostedState
	ok := immortal.NewestState(dir, &s)
	return s, ok
}
