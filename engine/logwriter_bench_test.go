package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// BenchmarkLogWriter measures durable log throughput on the real disk (the
// benchmark's temp dir; set TMPDIR to choose the device), with the disk's own
// limits measured in the same run as baselines:
//
//	record=64B, record=4KiB   records/s and MB/s through the group-commit writer,
//	                          with the batch sizes it chose (records/flush)
//	baseline=fdatasync        write 64 B + fdatasync, one after the other: syncs/s
//	baseline=seqwrite         1 MiB writes and one fdatasync at the end: MB/s
//
// The producer keeps up to 4096 records in flight, as many app messages
// arriving while a flush is under way would.
//
//	go test ./engine -run '^$' -bench LogWriter -benchtime 3s
func BenchmarkLogWriter(b *testing.B) {
	for _, size := range []int{64, 4096} {
		b.Run(fmt.Sprintf("record=%s", sizeName(size)), func(b *testing.B) { benchWriter(b, size) })
	}
	b.Run("baseline=fdatasync", benchFdatasync)
	b.Run("baseline=seqwrite", benchSeqWrite)
}

func sizeName(n int) string {
	if n >= 1024 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}

func benchWriter(b *testing.B, size int) {
	dir := b.TempDir()
	var mu sync.Mutex
	cond := sync.NewCond(&mu)
	var durable int64
	var werr error
	w := NewLogWriter(vfs.Default(), dir,
		func(seq int64) { mu.Lock(); durable = seq; mu.Unlock(); cond.Broadcast() },
		func(err error) { mu.Lock(); werr = err; mu.Unlock(); cond.Broadcast() })
	msg := logfmt.AppendRPC(nil, logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork, Args: make([]byte, size)})
	const window = 4096
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 1; i <= b.N; i++ {
		rec := &logfmt.Record{Seq: int64(i), Time: int64(i), Sources: []logfmt.Source{{Peer: "bench", FirstSeq: int64(i), Count: 1}},
			Messages: msg, MessageCount: 1}
		w.Submit([]LogWrite{{Segment: 1, Record: rec}})
		mu.Lock()
		for int64(i)-durable > window && werr == nil {
			cond.Wait()
		}
		mu.Unlock()
	}
	mu.Lock()
	for durable < int64(b.N) && werr == nil {
		cond.Wait()
	}
	mu.Unlock()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := w.Close(); err != nil || werr != nil {
		b.Fatal(err, werr)
	}
	st := w.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
	b.ReportMetric(float64(st.Records)/float64(st.Flushes), "records/flush")
	b.ReportMetric(float64(st.MaxBatch), "max-records/flush")
	b.ReportMetric(float64(st.Flushes)/elapsed.Seconds(), "flushes/s")
}

func benchFdatasync(b *testing.B) {
	f, err := vfs.Default().Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64)
	b.SetBytes(64)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "syncs/s")
}

func benchSeqWrite(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "seq"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
}
