package bench

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ambr-dev/ambr/engine/vfs"
)

// Machine describes where the suites ran, with the disk's limits measured
// in the same run.
type Machine struct {
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu"`
	MemoryGiB  int    `json:"memory_gib"`
	Go         string `json:"go"`
	OS         string `json:"os"`
	Dir        string `json:"dir"`
	// Device and FSType hold the file system of Dir (from /proc/mounts).
	Device string `json:"device"`
	FSType string `json:"fs_type"`
	// Fdatasync is write 64 B + fdatasync, one after the other, in Dir.
	Fdatasync SyncProbe `json:"fdatasync"`
	// FdatasyncOverwrite is write 64 B + fdatasync over a file written and
	// synced before (no size or block allocation to commit): what a log
	// writing into preallocated, zeroed segments would wait for. Measured
	// with the latency suite.
	FdatasyncOverwrite *SyncProbe `json:"fdatasync_overwrite,omitempty"`
	// SyncedWrite is the rate of sequential writes of SyncedWriteChunk
	// bytes, each followed by fdatasync, in MB/s (10^6 B/s): what a log
	// writer can make durable at best when its batches are that large.
	SyncedWrite float64 `json:"synced_write_mb_per_s,omitempty"`
}

// SyncedWriteChunk is the size of each write of the synced-write probe.
const SyncedWriteChunk = 4 << 20

// SyncProbe is the disk's fdatasync rate and latency.
type SyncProbe struct {
	Count   int     `json:"count"`
	PerSec  float64 `json:"per_sec"`
	P50ms   float64 `json:"p50_ms"`
	P99ms   float64 `json:"p99_ms"`
	P999ms  float64 `json:"p99_9_ms"`
	Seconds float64 `json:"seconds"`
}

func (p SyncProbe) String() string {
	return fmt.Sprintf("%s fdatasyncs/s (p50 %s ms, p99 %s ms, p99.9 %s ms; write 64 B + fdatasync ×%d)",
		si(p.PerSec), sig(p.P50ms), sig(p.P99ms), sig(p.P999ms), p.Count)
}

// DescribeMachine returns the machine's description without the disk probe.
func DescribeMachine(dir string) Machine {
	m := Machine{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Dir: dir}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := fmt.Sscanf(l, "MemTotal: %d kB", &kb); err == nil {
				m.MemoryGiB = int((kb + 1<<19) >> 20)
				break
			}
		}
	}
	m.Device, m.FSType = mountOf(dir)
	return m
}

// mountOf returns the device and type of the file system holding dir.
func mountOf(dir string) (string, string) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", ""
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		abs = r
	}
	f, err := os.Open("/proc/mounts")
	if err != nil {
		return "", ""
	}
	defer f.Close()
	best, dev, typ := -1, "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 {
			continue
		}
		mp := fs[1]
		if (abs == mp || strings.HasPrefix(abs, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > best {
			best, dev, typ = len(mp), fs[0], fs[2]
		}
	}
	return dev, typ
}

// String is one line for the report's header.
func (m Machine) String() string {
	cpu := m.CPU
	if cpu == "" {
		cpu = "unknown CPU"
	}
	return fmt.Sprintf("%d cores (%s), %d GiB, GOMAXPROCS %d, %s %s; dir %s on %s (%s)",
		m.Cores, cpu, m.MemoryGiB, m.GOMAXPROCS, m.Go, m.OS, m.Dir, m.Device, m.FSType)
}

// ProbeFdatasync writes 64 B and fdatasyncs, n times, in a file under dir.
func ProbeFdatasync(dir string, n int) (SyncProbe, error) {
	n = max(n, 1)
	path := filepath.Join(dir, "fdatasync-probe")
	f, err := vfs.Default().Create(path)
	if err != nil {
		return SyncProbe{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, 64)
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := f.Write(buf); err != nil {
			return SyncProbe{}, err
		}
		if err := f.Sync(); err != nil {
			return SyncProbe{}, err
		}
		lat = append(lat, time.Since(t))
	}
	el := time.Since(start)
	return SyncProbe{Count: n, PerSec: float64(n) / el.Seconds(), Seconds: el.Seconds(),
		P50ms: ms(Percentile(lat, 50)), P99ms: ms(Percentile(lat, 99)), P999ms: ms(Percentile(lat, 99.9))}, nil
}

// ProbeFdatasyncOverwrite writes a file of n × 64 B, syncs it, and then
// writes its 64 B blocks again in order, each followed by fdatasync: the
// same writes as ProbeFdatasync, without the file's growth to commit.
func ProbeFdatasyncOverwrite(dir string, n int) (SyncProbe, error) {
	n = max(n, 1)
	path := filepath.Join(dir, "fdatasync-overwrite-probe")
	// os directly: the engine's file system interface only appends.
	f, err := os.Create(path)
	if err != nil {
		return SyncProbe{}, err
	}
	defer os.Remove(path)
	defer f.Close()
	if _, err := f.Write(make([]byte, 64*n)); err != nil {
		return SyncProbe{}, err
	}
	if err := f.Sync(); err != nil {
		return SyncProbe{}, err
	}
	buf := make([]byte, 64)
	for i := range buf {
		buf[i] = byte(i)
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := f.WriteAt(buf, int64(64*i)); err != nil {
			return SyncProbe{}, err
		}
		if err := fdatasync(f); err != nil {
			return SyncProbe{}, err
		}
		lat = append(lat, time.Since(t))
	}
	el := time.Since(start)
	return SyncProbe{Count: n, PerSec: float64(n) / el.Seconds(), Seconds: el.Seconds(),
		P50ms: ms(Percentile(lat, 50)), P99ms: ms(Percentile(lat, 99)), P999ms: ms(Percentile(lat, 99.9))}, nil
}

// ProbeSyncedWrite writes size bytes to a file under dir in writes of
// SyncedWriteChunk, each followed by fdatasync, and returns the rate in MB/s
// (10^6 bytes).
func ProbeSyncedWrite(dir string, size int64) (float64, error) {
	path := filepath.Join(dir, "syncedwrite-probe")
	f, err := vfs.Default().Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	defer f.Close()
	buf := make([]byte, SyncedWriteChunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	start := time.Now()
	var n int64
	for n < size {
		k, err := f.Write(buf[:min(int64(len(buf)), size-n)])
		n += int64(k)
		if err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
	}
	return float64(n) / 1e6 / time.Since(start).Seconds(), nil
}

// ProbeSeqRead writes size bytes to a file under dir, syncs it, drops it
// from the page cache and reads it back with 1 MiB reads: the disk's cold
// sequential read rate in MB/s (10^6 bytes).
func ProbeSeqRead(dir string, size int64) (float64, error) {
	path := filepath.Join(dir, "seqread-probe")
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for w := int64(0); w < size; w += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-w)]); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := dropCache(path); err != nil {
		return 0, err
	}
	f, err = os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	start := time.Now()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	el := time.Since(start)
	if n != size {
		return 0, fmt.Errorf("read %d of %d bytes back", n, size)
	}
	return float64(n) / 1e6 / el.Seconds(), nil
}

// dropCacheTree syncs and drops every regular file under dir from the page
// cache.
func dropCacheTree(dir string) error {
	return filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Sync(); err != nil {
			return err
		}
		return fadviseDontNeed(f)
	})
}

// dropCache drops a synced file's pages from the page cache.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return fadviseDontNeed(f)
}
