package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
)

// RecoveryResult is the recovery suite: an instance with a checkpoint of
// CheckpointBytes and LogBytes of log after it (Records records holding
// Messages impulses), recovered from a cold page cache, next to the disk's
// cold sequential read rate measured in the same runs.
type RecoveryResult struct {
	LogBytes        int64 `json:"log_bytes"`
	CheckpointBytes int64 `json:"checkpoint_bytes"`
	Records         int64 `json:"records"`
	Messages        int64 `json:"messages"`
	MessageSize     int   `json:"message_size"`
	// Seconds is from starting the coordinator until the app is primary
	// again; ReadSeconds until the coordinator had read and checked the
	// checkpoint and log (its first report).
	Seconds     Summary `json:"seconds"`
	ReadSeconds Summary `json:"read_seconds"`
	// Rates over Seconds: log records, messages, log MB/s, and log plus
	// checkpoint MB/s (10^6 bytes).
	RecordsPerSec Summary `json:"records_per_s"`
	MsgsPerSec    Summary `json:"msgs_per_s"`
	LogMBps       Summary `json:"log_mb_per_s"`
	TotalMBps     Summary `json:"total_mb_per_s"`
	// DiskReadMBps is a cold sequential read of a file as large as log and
	// checkpoint; Ratio is TotalMBps over it, per run.
	DiskReadMBps Summary `json:"disk_read_mb_per_s"`
	Ratio        Summary `json:"ratio"`
}

// recState is the recovery app's state: counters and a ballast that makes
// the checkpoint large. Binary, so the codec does not spend time on it.
type recState struct {
	Count, Bytes int64
	Ballast      []byte
}

func (s recState) MarshalBinary() ([]byte, error) {
	b := make([]byte, 16+len(s.Ballast))
	binary.LittleEndian.PutUint64(b, uint64(s.Count))
	binary.LittleEndian.PutUint64(b[8:], uint64(s.Bytes))
	copyChunked(b[16:], s.Ballast)
	return b, nil
}

func (s *recState) UnmarshalBinary(b []byte) error {
	if len(b) < 16 {
		return errors.New("recovery state too short")
	}
	s.Count, s.Bytes = int64(binary.LittleEndian.Uint64(b)), int64(binary.LittleEndian.Uint64(b[8:]))
	s.Ballast = make([]byte, len(b)-16)
	copyChunked(s.Ballast, b[16:])
	return nil
}

// copyChunked copies src to dst 1 MiB at a time. One copy of 64 MiB is one
// memmove, which the Go runtime cannot preempt: a garbage collection that
// starts meanwhile signals the copying thread over and over until it ends
// (profiles of the becoming-primary checkpoint showed 0.38 s in such a copy
// into fresh pages, against 30 ms otherwise), which is the app's codec
// cost, not recovery's.
func copyChunked(dst, src []byte) {
	for len(src) > 0 {
		n := copy(dst, src[:min(len(src), 1<<20)])
		dst, src = dst[n:], src[n:]
	}
}

func newRecApp(ballast int, target int64, done *signal) *immortal.App[recState] {
	app := immortal.New(func() recState {
		b := make([]byte, ballast)
		for i := range b {
			b[i] = byte(i * 31)
		}
		return recState{Ballast: b}
	}, immortal.WithCodec(rawCodec{}), immortal.WithLogger(quiet))
	immortal.Handle(app, "data", func(ctx *immortal.Ctx, s *recState, p []byte) (struct{}, error) {
		s.Count++
		s.Bytes += int64(len(p))
		if s.Count == target && !ctx.Replaying() {
			done.raise()
		}
		return struct{}{}, nil
	})
	return app
}

func runRecovery(ctx context.Context, cfg Config, dir string) (*RecoveryResult, error) {
	msgSize := max(cfg.RecMsgSize, 16)
	logBytes := int64(max(cfg.RecLogMiB, 1)) << 20
	n := max(logBytes/int64(msgSize), 1)
	// The checkpoint holds the state as its bytes (the binding's binary
	// form for a codec other than JSON; builds before it wrote base64,
	// where 3 bytes of ballast made 4): the ballast is the checkpoint.
	ballast := max(cfg.RecCkptMiB, 1) << 20
	res := &RecoveryResult{Messages: n, MessageSize: msgSize}

	home, err := os.MkdirTemp(dir, "recovery-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(home)
	cfg.progress("recovery: building an instance: a %d MiB checkpoint, then %d impulses of %s", max(cfg.RecCkptMiB, 1), n, SizeName(int64(msgSize)))
	if err := buildRecInstance(ctx, home, ballast, n, msgSize, res); err != nil {
		return nil, fmt.Errorf("build the instance: %w", err)
	}
	pristine := filepath.Join(home, "pristine")
	if err := copyTree(filepath.Join(home, "rec"), pristine); err != nil {
		return nil, err
	}
	var secs, read, recs, msgs, logMB, totMB, disk, ratio []float64
	var prof *os.File
	if path := os.Getenv(EnvRecoveryCPUProfile); path != "" {
		// One profile of the first run: a file holds one profile.
		if prof, err = os.Create(path); err != nil {
			return nil, fmt.Errorf("%s: %w", EnvRecoveryCPUProfile, err)
		}
		defer prof.Close()
	}
	for r := 0; r < cfg.Runs; r++ {
		if err := os.RemoveAll(filepath.Join(home, "rec")); err != nil {
			return nil, err
		}
		if err := copyTree(pristine, filepath.Join(home, "rec")); err != nil {
			return nil, err
		}
		if err := dropCacheTree(filepath.Join(home, "rec")); err != nil {
			return nil, err
		}
		runtime.GC()
		if prof != nil {
			if err := pprof.StartCPUProfile(prof); err != nil {
				return nil, fmt.Errorf("%s: %w", EnvRecoveryCPUProfile, err)
			}
		}
		el, rd, err := recoverOnce(ctx, home, ballast, n)
		if prof != nil {
			pprof.StopCPUProfile()
			prof = nil
		}
		if err != nil {
			return nil, fmt.Errorf("run %d: %w", r+1, err)
		}
		dr, err := ProbeSeqRead(home, max(res.LogBytes+res.CheckpointBytes, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("disk read probe: %w", err)
		}
		s := el.Seconds()
		secs, read = append(secs, s), append(read, rd.Seconds())
		recs, msgs = append(recs, float64(res.Records)/s), append(msgs, float64(n)/s)
		logMB = append(logMB, float64(res.LogBytes)/1e6/s)
		tot := float64(res.LogBytes+res.CheckpointBytes) / 1e6 / s
		totMB, disk, ratio = append(totMB, tot), append(disk, dr), append(ratio, tot/dr)
		cfg.progress("recovery run %d/%d: live after %s (read %s): %s records/s, %s MB/s of log, %s MB/s in all; disk reads %s MB/s cold",
			r+1, cfg.Runs, el.Round(time.Millisecond), rd.Round(time.Millisecond), si(float64(res.Records)/s), sig(float64(res.LogBytes)/1e6/s), sig(tot), sig(dr))
	}
	res.Seconds, res.ReadSeconds = Summarize(secs), Summarize(read)
	res.RecordsPerSec, res.MsgsPerSec, res.LogMBps, res.TotalMBps = Summarize(recs), Summarize(msgs), Summarize(logMB), Summarize(totMB)
	res.DiskReadMBps, res.Ratio = Summarize(disk), Summarize(ratio)
	return res, nil
}

// buildRecInstance makes the instance home/rec: its first checkpoint holds
// the ballast, and n impulses of size bytes follow it in the log (the
// segment size is too large for another checkpoint).
func buildRecInstance(ctx context.Context, home string, ballast int, n int64, size int, res *RecoveryResult) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	done := newSignal()
	app := newRecApp(ballast, n, done)
	runCtx, stop := context.WithCancel(ctx)
	nd := startNode(runCtx, home, "rec", fsFor(logDurable), 1<<50, false, func() hosted.App { return app })
	err := func() error {
		if err := nd.waitLive(ctx); err != nil {
			return err
		}
		p := make([]byte, size)
		for i := int64(0); i < n; i++ {
			binary.LittleEndian.PutUint64(p, uint64(i))
			if err := impulse(ctx, app, "data", p); err != nil {
				return err
			}
		}
		return done.wait(ctx, "the impulses", nd)
	}()
	if serr := stopNodes(stop, nd); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if st := nd.status.Load(); st != nil {
		res.Records = st.NextSeq - 1
	}
	v0 := filepath.Join(home, "rec", "v0")
	ents, err := os.ReadDir(v0)
	if err != nil {
		return err
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(e.Name(), "log-"):
			res.LogBytes += fi.Size()
		case e.Name() == "chkpt-1":
			res.CheckpointBytes = fi.Size()
		case strings.HasPrefix(e.Name(), "chkpt-"):
			return fmt.Errorf("unexpected checkpoint %s: the log is not all after checkpoint 1", e.Name())
		}
	}
	return nil
}

// EnvRecoveryCPUProfile, set to a file in the bench's environment, writes a
// CPU profile of the recovery runs alone (coordinator and app, from starting
// the coordinator until the app is primary), without building the instance,
// copying it or probing the disk. Not with --cpuprofile, which profiles the
// whole run.
const EnvRecoveryCPUProfile = "AMBR_BENCH_RECOVERY_CPUPROFILE"

// recoverOnce starts a coordinator on home/rec and returns the time until
// the app is primary again and until the coordinator's first report.
func recoverOnce(ctx context.Context, home string, ballast int, n int64) (time.Duration, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	app := newRecApp(ballast, n, newSignal())
	runCtx, stop := context.WithCancel(ctx)
	nd := startNode(runCtx, home, "rec", fsFor(logDurable), 1<<50, false, func() hosted.App { return app })
	err := func() error {
		for nd.phaseLiveAt.Load() == 0 {
			select {
			case err := <-nd.done:
				nd.done <- err
				return fmt.Errorf("the coordinator stopped while recovering: %v", err)
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Microsecond):
			}
		}
		return nil
	}()
	if serr := stopNodes(stop, nd); err == nil {
		err = serr
	}
	if err != nil {
		return 0, 0, err
	}
	if s, ok := app.State(); !ok || s.Count != n {
		return 0, 0, fmt.Errorf("recovered state counts %d impulses, want %d", s.Count, n)
	}
	start := nd.startAt.Load()
	return time.Duration(nd.phaseLiveAt.Load() - start), time.Duration(nd.firstStatus.Load() - start), nil
}

// copyTree copies the regular files and directories under src to dst.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		t := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(t, 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(t)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
