package timetravel

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

var ttRecords = flag.Int("tt-records", 10_000_000, "BenchmarkTimeTravel: records in the synthetic counter log")

var (
	scaleOnce sync.Once
	scaleDir  string
)

// scaleLog writes the synthetic counter-server log once per run.
func scaleLog(b *testing.B) string {
	scaleOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ambr-tt-scale-")
		if err != nil {
			b.Fatal(err)
		}
		scaleDir = filepath.Join(dir, "server")
		start := time.Now()
		writeCounterLog(b, scaleDir, *ttRecords, 1<<20, counterServer(b))
		b.Logf("wrote %d records in %v", *ttRecords, time.Since(start).Round(time.Millisecond))
	})
	return scaleDir
}

// BenchmarkTimeTravel measures reaching points of a long counter-server log
// (-tt-records, default 10 million small records; the log is written once,
// ~1.2 GB for 10M):
//
//	cold-open  a fresh cache: the first and last pages of records (from the
//	           segments, while the index builds in the background); then
//	           the time the whole index took, and its rate
//	cold       a fresh cache: build the index, then reach a random point
//	           (replaying from the checkpoint before it)
//	warm       index and snapshots in place: reach a random point
//	step-back  one record back from a random point
//
//	go test ./timetravel -run '^$' -bench TimeTravel -benchtime 1x -timeout 60m
func BenchmarkTimeTravel(b *testing.B) {
	dir := scaleLog(b)
	n := int64(*ttRecords)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	cache := filepath.Join(filepath.Dir(dir), "cache")

	// Cold open: a fresh cache; the first and the last page of records,
	// from the segments, while the index builds in the background (what a
	// browser needs to show the log); then the build's own rate.
	b.Run("cold-open", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			os.RemoveAll(cache)
			start := time.Now()
			in, err := layoutOpen(dir)
			if err != nil {
				b.Fatal(err)
			}
			ix, err := OpenIndex(cache, in)
			if err != nil {
				b.Fatal(err)
			}
			first, last, err := ix.Peek()
			if err != nil || first != 1 || last != n {
				b.Fatalf("peek: %d..%d %v", first, last, err)
			}
			built := ix.Build(nil)
			pages := 0
			for _, from := range []int64{first, last - 49} {
				if err := ix.Range(from, from+49, func(IndexEntry) bool { pages++; return true }); err != nil {
					b.Fatal(err)
				}
			}
			opened := time.Since(start)
			if pages != 100 {
				b.Fatalf("%d entries in the first and last pages, want 100", pages)
			}
			if err := <-built; err != nil {
				b.Fatal(err)
			}
			indexed := time.Since(start)
			b.ReportMetric(opened.Seconds(), "open-s")
			b.ReportMetric(indexed.Seconds(), "index-s")
			b.ReportMetric(float64(n)/indexed.Seconds(), "index-records/s")
			ix.Close()
		}
	})
	b.Run("cold", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			os.RemoveAll(cache)
			start := time.Now()
			s, ix := openIndexedB(b, dir, cache)
			indexed := time.Since(start)
			p := 1 + rng.Int64N(n)
			if _, err := s.Goto(ctx, p); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(indexed.Seconds(), "index-s")
			b.ReportMetric(time.Since(start).Seconds(), "total-s")
			s.Close()
			ix.Close()
		}
	})
	// Warm: snapshots across the whole log (one replay to the end).
	s, ix := openIndexedB(b, dir, cache)
	defer ix.Close()
	defer s.Close()
	start := time.Now()
	if _, err := s.Goto(ctx, n); err != nil {
		b.Fatal(err)
	}
	b.Logf("replayed all %d records (taking snapshots) in %v: %.0f records/s", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	s.Close()
	b.Run("warm", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			s.Close() // a new session: no running app to reuse
			if _, err := s.Goto(ctx, 1+rng.Int64N(n)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("step-back", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			if _, err := s.Goto(ctx, 2+rng.Int64N(n-1)); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if _, err := s.Step(ctx, -1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func openIndexedB(b *testing.B, dir, cache string) (*Session, *Index) {
	b.Helper()
	in, err := layoutOpen(dir)
	if err != nil {
		b.Fatal(err)
	}
	ix, err := OpenIndex(cache, in)
	if err != nil {
		b.Fatal(err)
	}
	if err := ix.Update(nil); err != nil {
		b.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Index: ix})
	if err != nil {
		b.Fatal(err)
	}
	return s, ix
}
