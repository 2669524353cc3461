package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testDir = "/home/counter"

// testClock is a deterministic clock: each call is one millisecond later.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func quietLogger() *slog.Logger {
	if os.Getenv("AMBR_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// runRaw runs a coordinator on fsys with app until the app's count reaches
// its target live, or the coordinator stops. It returns the coordinator's
// error (nil when the target was reached).
func runRaw(t *testing.T, fsys vfs.FS, app *rawApp, segSize int64) error {
	t.Helper()
	return runRawLogged(t, fsys, app, segSize, nil)
}

// runRawLogged is runRaw with the coordinator's log written to logs.
func runRawLogged(t *testing.T, fsys vfs.FS, app *rawApp, segSize int64, logs io.Writer) error {
	t.Helper()
	opts := Options{SegmentSize: segSize}
	if logs != nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	return runRawOpts(t, fsys, app, opts)
}

// runRawOpts is runRaw with options (the test fills in the rest).
func runRawOpts(t *testing.T, fsys vfs.FS, app *rawApp, opts Options) error {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	pl := NewPipeListener()
	var last atomic.Value
	opts.Dir, opts.Name, opts.FS, opts.Listener = testDir, "counter", fsys, pl
	if opts.Registry == nil {
		// The instance is in memory but the registry and its CA are real
		// files: give each run its own, or test binaries running at once
		// race on one directory.
		opts.Registry = FileRegistry{Dir: t.TempDir()}
	}
	opts.OnStatus = func(s Status) { last.Store(s) }
	opts.Now = (&testClock{t: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}).Now
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	dialCtx, dialCancel := context.WithCancel(ctx)
	go func() {
		err := c.Run(ctx)
		dialCancel() // a Run that ends before it accepts must not leave Dial waiting
		errc <- err
	}()
	toIC, fromIC, err := pl.Dial(dialCtx)
	if err != nil {
		runErr := <-errc
		t.Fatalf("the coordinator did not take the app (%v): %v", err, runErr)
	}
	appDone := make(chan error, 1)
	go func() { appDone <- app.run(ctx, toIC, fromIC) }()
	var result error
	select {
	case <-app.reachedCh:
		// Let the coordinator finish the checkpoint it is taking (a
		// recovery's own, say), so that a run always leaves it durable.
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if st, ok := last.Load().(Status); ok && st.Phase == "live" && !st.CheckpointBusy {
				break
			}
		}
	case err := <-errc:
		result = err
		if result == nil {
			result = errors.New("coordinator returned before the app reached its target")
		}
		cancel()
		<-appDone
		return result
	case <-time.After(20 * time.Second):
		if os.Getenv("AMBR_TEST_STACKS") != "" {
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		var appErr error
		select {
		case appErr = <-appDone:
		default:
		}
		app.mu.Lock()
		t.Fatalf("timed out: app at %d of %d, last record %d (app error: %v); coordinator %+v", app.count, app.target, app.lastSeq, appErr, last.Load())
	}
	cancel()
	if err := <-errc; err != nil {
		result = err
	}
	<-appDone
	pl.Close()
	return result
}

// logSummary reads an instance's log read-only.
type logSummary struct {
	seqs      []int64
	incs      int // Inc RPCs logged
	selfSeqs  []int64
	impulses  int
	initial   int
	records   map[int64]string // seq → messages, to compare logs
	tornNotes error
}

func summarize(t *testing.T, fsys vfs.FS) (*logSummary, error) {
	t.Helper()
	in, err := layout.Open(fsys, testDir)
	if err != nil {
		return nil, err
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	s := &logSummary{records: map[int64]string{}}
	for {
		r, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		s.seqs = append(s.seqs, r.Seq)
		s.records[r.Seq] = string(r.Messages)
		for _, src := range r.Sources {
			if src.FirstSeq != 0 {
				for i := int64(0); i < int64(src.Count); i++ {
					s.selfSeqs = append(s.selfSeqs, src.FirstSeq+i)
				}
			}
		}
		it := logfmt.NewMessageIter(r.Messages)
		for {
			m, ok := it.Next()
			if !ok {
				break
			}
			switch m.Type {
			case logfmt.TypeInitialMessage:
				s.initial++
			case logfmt.TypeRPC:
				rpc, _ := logfmt.ParseRPC(m.Data)
				if rpc.Kind == logfmt.RPCImpulse {
					s.impulses++
				} else {
					s.incs++
				}
			}
		}
	}
	s.tornNotes = lr.TornTail()
	return s, nil
}

// checkExactLog asserts the log a complete run must leave: one
// InitialMessage, exactly target Incs whose self-call sequence numbers are
// 1..target once each, records numbered without gaps.
func checkExactLog(t *testing.T, s *logSummary, target int, impulses int) {
	t.Helper()
	if s.initial != 1 || s.incs != target || s.impulses != impulses {
		t.Fatalf("log holds %d InitialMessages, %d Incs, %d impulses; want 1, %d, %d", s.initial, s.incs, s.impulses, target, impulses)
	}
	for i, seq := range s.selfSeqs {
		if seq != int64(i+1) {
			t.Fatalf("self-call sequence numbers %v: want 1..%d once each", s.selfSeqs, target)
		}
	}
	for i, seq := range s.seqs {
		if seq != int64(i+1) {
			t.Fatalf("record numbers %v have a gap", s.seqs)
		}
	}
}

func TestFirstStartAndRecovery(t *testing.T) {
	mem := vfs.NewMem()
	app := newRawApp(25)
	if err := runRaw(t, mem, app, 300); err != nil {
		t.Fatal(err)
	}
	s, err := summarize(t, mem)
	if err != nil {
		t.Fatal(err)
	}
	checkExactLog(t, s, 25, 0)
	in, _ := layout.Open(mem, testDir)
	ckpts, _ := in.Checkpoints()
	if len(ckpts) < 2 {
		t.Fatalf("segment size 300 should have rolled several times, checkpoints %v", ckpts)
	}
	// Recover into a new app: it must reach the same state by replay alone,
	// and the log must not grow by a single Inc.
	again := newRawApp(25)
	if err := runRaw(t, mem, again, 300); err != nil {
		t.Fatal(err)
	}
	if again.count != 25 {
		t.Fatalf("recovered count %d, want 25", again.count)
	}
	s2, _ := summarize(t, mem)
	checkExactLog(t, s2, 25, 0)
}

// TestCrashAfterEveryFSOperation takes the state after a crash right after
// every single filesystem operation of a run (with no, all, a prefix of, and
// scattered sectors of the unsynced data surviving), checks that every
// record the app had been given is in it, then recovers it and checks the
// run completes exactly as a run without failure. With small segments the
// writer rolls often (a roll drains the pipeline); with large ones it
// writes whatever has come while the previous sync runs.
func TestCrashAfterEveryFSOperation(t *testing.T) {
	for _, segSize := range []int64{250, 1 << 20} {
		t.Run(fmt.Sprintf("segment=%d", segSize), func(t *testing.T) { crashAfterEveryFSOperation(t, segSize) })
	}
}

func crashAfterEveryFSOperation(t *testing.T, segSize int64) {
	const target = 12
	if segSize > 1<<16 {
		saved := pipelineBytes
		pipelineBytes = 0 // write whatever has come while a sync runs
		defer func() { pipelineBytes = saved }()
	}
	mem := vfs.NewMem()
	app := newRawApp(target)
	type crashState struct {
		fs        *vfs.MemFS
		delivered int64
		op        vfs.Op
		keep      vfs.Keep
	}
	var crashes []crashState
	rng := rand.New(rand.NewPCG(1, 2))
	mem.SetHook(func(op vfs.Op) {
		d := app.delivered.Load()
		for _, keep := range []vfs.Keep{vfs.KeepNone, vfs.KeepAll, vfs.KeepRandom, vfs.KeepScattered} {
			crashes = append(crashes, crashState{mem.CrashClone(vfs.CrashOptions{KeepUnsynced: keep, KeepUnsyncedDirs: keep, Rand: rng}), d, op, keep})
		}
	})
	if err := runRaw(t, mem, app, segSize); err != nil {
		t.Fatal(err)
	}
	mem.SetHook(nil)
	base, _ := summarize(t, mem)
	checkExactLog(t, base, target, 0)
	t.Logf("%d crash states over %d operations", len(crashes), mem.OpCount())
	for i, c := range crashes {
		name := fmt.Sprintf("crash %d after op %d (%v, keep %d)", i, c.op.Index, c.op, c.keep)
		s, err := summarize(t, c.fs)
		if err != nil && !errors.Is(err, layout.ErrNoInstance) {
			t.Fatalf("%s: reading the crashed log: %v", name, err)
		}
		if c.delivered > 0 {
			if s == nil {
				t.Fatalf("%s: the app had record %d but the instance is gone", name, c.delivered)
			}
			// Everything delivered is durable, and identical to the run's.
			for seq := int64(1); seq <= c.delivered; seq++ {
				got, ok := s.records[seq]
				if !ok || got != base.records[seq] {
					t.Fatalf("%s: the app had been given record %d, but after the crash the log %s", name, seq, map[bool]string{true: "holds different bytes", false: "lacks it"}[ok])
				}
			}
		}
		again := newRawApp(target)
		if testing.Verbose() {
			t.Logf("%s: recovering", name)
		}
		if err := runRaw(t, c.fs, again, segSize); err != nil {
			t.Fatalf("%s: recovery: %v", name, err)
		}
		after, err := summarize(t, c.fs)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		checkExactLog(t, after, target, 0)
		if again.count != target {
			t.Fatalf("%s: recovered count %d", name, again.count)
		}
	}
}

// TestDiskFaults injects EIO and ENOSPC into chosen operations: the
// coordinator stops with an error naming the operation, gives the app
// nothing that is not durable, and after the fault clears recovers exactly.
func TestDiskFaults(t *testing.T) {
	cases := []struct {
		name  string
		fault func() *vfs.Fault
	}{
		{"log sync EIO", func() *vfs.Fault { return vfs.ErrorAfter(6, syscall.EIO, vfs.OpSync) }},
		{"log write ENOSPC", func() *vfs.Fault { return vfs.ErrorAfter(5, syscall.ENOSPC, vfs.OpWrite) }},
		{"checkpoint create ENOSPC", func() *vfs.Fault { return vfs.ErrorOn(vfs.OpCreate, "chkpt-2", syscall.ENOSPC) }},
		{"manifest rename EIO", func() *vfs.Fault { return vfs.ErrorAfter(1, syscall.EIO, vfs.OpRename) }},
		{"segment roll EIO", func() *vfs.Fault { return vfs.ErrorOn(vfs.OpCreate, "log-2", syscall.EIO) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			fault := tc.fault()
			efs := vfs.NewErrorFS(mem, fault)
			// A target the run cannot reach: only the fault ends it.
			app := newRawApp(1 << 40)
			err := runRaw(t, efs, app, 250)
			if err == nil || !errors.Is(err, ErrFatal) {
				t.Fatalf("run with %s: err %v, want a fatal error", tc.name, err)
			}
			if fault.Hits() == 0 {
				t.Fatalf("the run stopped (%v) but the fault never struck", err)
			}
			if !strings.Contains(err.Error(), "vfs: ") || !(errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC)) {
				t.Fatalf("error %q does not say which operation failed and how", err)
			}
			// What the app was given survives a crash right now.
			crashed := mem.CrashClone(vfs.CrashOptions{})
			if d := app.delivered.Load(); d > 0 {
				s, err := summarize(t, crashed)
				if err != nil {
					t.Fatal(err)
				}
				if len(s.seqs) < int(d) {
					t.Fatalf("the app was given record %d but only %d records are durable", d, len(s.seqs))
				}
			}
			// The fault clears: recovery is exact, and the counter goes on
			// to a target past where it stopped.
			fault.Disable()
			app.mu.Lock()
			target := app.count + 30
			app.mu.Unlock()
			again := newRawApp(target)
			if err := runRaw(t, efs, again, 250); err != nil {
				t.Fatalf("after the fault cleared: %v", err)
			}
			s, err := summarize(t, mem)
			if err != nil {
				t.Fatal(err)
			}
			checkExactLog(t, s, int(target), 0)
		})
	}
}

// TestImpulsesLoggedOnce: impulses sent once primary are logged once and
// replayed, never regenerated.
func TestImpulsesLoggedOnce(t *testing.T) {
	mem := vfs.NewMem()
	app := newRawApp(10)
	app.impulses = 3
	if err := runRaw(t, mem, app, 200); err != nil {
		t.Fatal(err)
	}
	// Recover with an app that sends no impulses of its own: the three
	// logged ones come back through the checkpoint and the replay.
	again := newRawApp(10)
	if err := runRaw(t, mem, again, 200); err != nil {
		t.Fatal(err)
	}
	if again.impulsed != 3 {
		t.Fatalf("recovered app has processed %d impulses, want 3", again.impulsed)
	}
	s, _ := summarize(t, mem)
	checkExactLog(t, s, 10, 3)
}
