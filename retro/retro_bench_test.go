package retro

import (
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/samples/counter/counter"
	"github.com/ambr-dev/ambr/timetravel"
)

var (
	retroRecords = flag.Int("retro-records", 20000, "BenchmarkRetro: records in the synthetic counter log")
	retroWindow  = flag.Int64("retro-window", 0, "BenchmarkRetro: records per comparison (0: DefaultWindow)")
	retroRepeat  = flag.Int64("retro-repeat", 0, "BenchmarkRetro: records the candidate runs twice (0: DefaultRepeat, -1: none)")
)

// BenchmarkRetro measures a retro-test's records/s next to a replay's of
// the same records in the same run, with the ratio of their times (the
// goal is ≤ 3): the counter server against itself, and a counter whose
// state is ~1 MiB (retro/testdata/bigstate; each Inc changes 1 KiB of it).
// Replay is one build fed every record and asked for its state at the end;
// retro-test is both builds (and for the first records the candidate's
// second run) fed every record, compared a window at a time.
//
//	go test ./retro -run '^$' -bench Retro -benchtime 3x
func BenchmarkRetro(b *testing.B) {
	dir := b.TempDir()
	apps := map[string]string{"counter": "../samples/counter/server", "state-1MiB": "./testdata/bigstate"}
	for _, name := range []string{"counter", "state-1MiB"} {
		b.Run(name, func(b *testing.B) {
			app := filepath.Join(dir, name)
			inst := filepath.Join(dir, "inst-"+name)
			if _, err := os.Stat(inst); err != nil { // once: b.Run calls this again for each b.N
				if out, err := exec.Command("go", "build", "-o", app, apps[name]).CombinedOutput(); err != nil {
					b.Fatalf("go build: %v\n%s", err, out)
				}
				if err := counter.WriteServerLog(inst, *retroRecords, 1<<20, app); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ResetTimer()
			var replayTime, retroTime time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				s, err := timetravel.Open(timetravel.Options{Dir: inst})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := s.Goto(ctx, int64(*retroRecords)); err != nil {
					b.Fatal(err)
				}
				s.Close()
				replayTime += time.Since(start)

				start = time.Now()
				rep, err := Run(ctx, Options{Dir: inst, Candidate: app, Stderr: os.Stderr, Window: *retroWindow, Repeat: *retroRepeat})
				if err != nil {
					b.Fatal(err)
				}
				retroTime += time.Since(start)
				if rep.Diverged() || rep.Records != int64(*retroRecords) {
					b.Fatalf("report: %+v", rep)
				}
			}
			records := float64(*retroRecords) * float64(b.N)
			replayRate, retroRate, ratio := records/replayTime.Seconds(), records/retroTime.Seconds(), retroTime.Seconds()/replayTime.Seconds()
			b.ReportMetric(replayRate, "replay-records/s")
			b.ReportMetric(retroRate, "retro-records/s")
			b.ReportMetric(ratio, "retro/replay")
		})
	}
}
