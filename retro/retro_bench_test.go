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
)

var retroRecords = flag.Int("retro-records", 20000, "BenchmarkRetro: records in the synthetic counter log")

// BenchmarkRetro measures records/s replayed into a candidate (the counter
// server against itself: both builds fed, both asked for their state after
// every record, messages and states compared).
//
//	go test ./retro -run '^$' -bench Retro -benchtime 3x
func BenchmarkRetro(b *testing.B) {
	dir := b.TempDir()
	app := filepath.Join(dir, "server")
	if out, err := exec.Command("go", "build", "-o", app, "../samples/counter/server").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	inst := filepath.Join(dir, "inst")
	if err := counter.WriteServerLog(inst, *retroRecords, 1<<20, app); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	var rate float64
	for i := 0; i < b.N; i++ {
		start := time.Now()
		rep, err := Run(context.Background(), Options{Dir: inst, Candidate: app, Stderr: os.Stderr})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Divergent != 0 || rep.Records != int64(*retroRecords) {
			b.Fatalf("report: %+v", rep)
		}
		rate = float64(rep.Records) / time.Since(start).Seconds()
	}
	b.ReportMetric(rate, "records/s")
}
