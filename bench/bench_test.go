package bench

import (
	"bytes"
	"context"
	"errors"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The suites at their smallest: structure only (rows present, figures
// positive, ratios computed), never timings.

func tinyConfig(t *testing.T) Config {
	c := SmokeConfig()
	c.Dir = t.TempDir()
	c.Sizes = []int{1 << 10, 64}
	c.Volume, c.MaxMsgs = 64<<10, 256
	c.WindowBytes, c.WindowMsgs = 16<<10, 64
	c.Systems = AllSystems
	c.LatencyCalls, c.LatencyWarmup, c.SyncProbes = 20, 2, 10
	c.ConvRequests, c.ConvConcurrency = 20, 4
	c.RecLogMiB, c.RecCkptMiB, c.RecMsgSize = 1, 1, 4096
	c.GiantSize, c.GiantCount = 1<<20+3, 2
	if testing.Verbose() {
		c.Progress = testWriter{t}
	}
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func runSuite(t *testing.T, cfg Config, suite string) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg, suite)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Machine.Cores < 1 || !(rep.Machine.Fdatasync.PerSec > 0) || rep.Machine.Fdatasync.Count != cfg.SyncProbes {
		t.Errorf("machine: %+v", rep.Machine)
	}
	var text, js bytes.Buffer
	WriteText(&text, rep)
	if err := WriteJSON(&js, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text.String(), "== "+suite) || !strings.Contains(js.String(), `"`+suite+`"`) {
		t.Errorf("the report does not show the %s suite:\n%s", suite, text.String())
	}
	return rep
}

func positive(t *testing.T, what string, s Summary, runs int) {
	t.Helper()
	if len(s.Samples) != runs || !s.OK() || s.Min > s.Median || s.Median > s.Max {
		t.Errorf("%s: %+v, want %d positive samples", what, s, runs)
	}
}

func TestThroughput(t *testing.T) {
	cfg := tinyConfig(t)
	rep := runSuite(t, cfg, SuiteThroughput)
	tr := rep.Throughput
	if tr == nil || len(tr.Modes) != 2 {
		t.Fatalf("throughput: %+v", tr)
	}
	for _, m := range tr.Modes {
		if len(m.Sizes) != len(cfg.Sizes) {
			t.Fatalf("%s: %d sizes, want %d", m.Mode, len(m.Sizes), len(cfg.Sizes))
		}
		for i, s := range m.Sizes {
			if s.Size != cfg.Sizes[i] || s.Messages != cfg.messages(s.Size) {
				t.Errorf("%s: size %d with %d messages", m.Mode, s.Size, s.Messages)
			}
			for _, sys := range AllSystems {
				positive(t, m.Mode+" "+sys+" MB/s", s.Rates[sys].MBps, cfg.Runs)
				positive(t, m.Mode+" "+sys+" msgs/s", s.Rates[sys].MsgsPerSec, cfg.Runs)
				if sys != SysAmbr {
					positive(t, m.Mode+" ambr/"+sys, s.Ratios[SysAmbr+"/"+sys], cfg.Runs)
				}
			}
		}
	}
	if ts := Targets(rep); len(ts) != 6 {
		t.Errorf("targets: %+v", ts)
	}
	for _, ext := range []string{"png", "svg"} {
		path := filepath.Join(t.TempDir(), "sweep."+ext)
		if err := WriteChart(path, rep); err != nil {
			t.Fatalf("chart %s: %v", ext, err)
		}
	}
}

func TestLatency(t *testing.T) {
	cfg := tinyConfig(t)
	cfg.LatencyInFlight = []int{1, 3}
	rep := runSuite(t, cfg, SuiteLatency)
	l := rep.Latency
	if l == nil || len(l.Rows) != 4 || !(l.Fdatasync.P50ms > 0) {
		t.Fatalf("latency: %+v", l)
	}
	for i, r := range l.Rows {
		if want := []string{SysAmbr, SysGRPCUnary}[i%2]; r.System != want || r.InFlight != cfg.LatencyInFlight[i/2] || r.Calls != cfg.LatencyCalls {
			t.Errorf("row %d: %+v", i, r)
		}
		for _, s := range []Summary{r.PerSec, r.P50ms, r.P99ms, r.P999ms} {
			positive(t, r.System, s, cfg.Runs)
		}
	}
	// The traced run: both halves of a call write and sync a log. (What
	// comes just before each sync's end may be another goroutine's point,
	// a peer link's write, say: count the syncs, not the hops from a write.)
	if h := l.Hops; h == nil || h.Cycles == 0 {
		t.Errorf("no traced calls: %+v", h)
	} else {
		syncs := 0
		for _, hop := range h.Hops {
			if hop.To == hoptrace.LogSynced.String() && hop.MedianUs > 0 {
				syncs++
			}
		}
		if syncs != 2 {
			t.Errorf("a call's cycle has %d log syncs, want 2: %+v", syncs, h)
		}
	}
	// With processes: a row per number in flight, each call timed.
	if len(l.Processes) != len(cfg.LatencyInFlight) {
		t.Fatalf("rows with processes: %+v", l.Processes)
	}
	for i, r := range l.Processes {
		if r.System != SysAmbr || r.InFlight != cfg.LatencyInFlight[i] || r.Calls != cfg.LatencyCalls {
			t.Errorf("row with processes %d: %+v", i, r)
		}
		for _, s := range []Summary{r.PerSec, r.P50ms, r.P99ms, r.P999ms} {
			positive(t, "processes", s, cfg.Runs)
		}
	}
	if len(l.HalfPeak) != 2 {
		t.Fatalf("half-peak rows: %+v", l.HalfPeak)
	}
	for i, r := range l.HalfPeak {
		peak := max(l.Rows[i].PerSec.Median, l.Rows[i+2].PerSec.Median) // same system, 1 and 3 in flight
		if want := []string{SysAmbr, SysGRPCUnary}[i]; r.System != want || r.Offered != peak/2 || r.Calls != cfg.LatencyCalls {
			t.Errorf("half-peak row %d: %+v, want %s offered %v", i, r, want, peak/2)
		}
		for _, s := range []Summary{r.PerSec, r.P50ms, r.P99ms, r.P999ms} {
			positive(t, r.System, s, cfg.Runs)
		}
	}
}

func TestConventional(t *testing.T) {
	cfg := tinyConfig(t)
	rep := runSuite(t, cfg, SuiteConventional)
	c := rep.Conventional
	if c == nil {
		t.Fatal("no conventional result")
	}
	if c.Skipped != "" {
		if !strings.Contains(c.Skipped, "apt-get install postgresql") {
			t.Errorf("skipped without saying how to install PostgreSQL: %s", c.Skipped)
		}
		t.Skipf("no PostgreSQL: %s", c.Skipped)
	}
	if len(c.Rows) != 4 {
		t.Fatalf("rows: %+v", c.Rows)
	}
	for _, r := range c.Rows {
		positive(t, r.System+" requests/s", r.PerSec, cfg.Runs)
		positive(t, r.System+" p50", r.P50ms, cfg.Runs)
	}
	positive(t, "ratio", c.Ratio, cfg.Runs)
	if ts := Targets(rep); len(ts) != 1 {
		t.Errorf("targets: %+v", ts)
	}
}

func TestConventionalWithoutPostgres(t *testing.T) {
	cfg := tinyConfig(t)
	cfg.PGBin = t.TempDir() // no PostgreSQL there
	rep := runSuite(t, cfg, SuiteConventional)
	if c := rep.Conventional; c == nil || !strings.Contains(c.Skipped, "apt-get install postgresql") || len(c.Rows) != 0 {
		t.Fatalf("conventional without PostgreSQL: %+v", c)
	}
}

func TestRecovery(t *testing.T) {
	cfg := tinyConfig(t)
	rep := runSuite(t, cfg, SuiteRecovery)
	r := rep.Recovery
	if r == nil || r.Records < 2 || r.Messages != 256 || r.LogBytes < 1<<20 || r.CheckpointBytes < 1<<19 {
		t.Fatalf("recovery: %+v", r)
	}
	for name, s := range map[string]Summary{"seconds": r.Seconds, "read": r.ReadSeconds, "records/s": r.RecordsPerSec, "msgs/s": r.MsgsPerSec,
		"log MB/s": r.LogMBps, "total MB/s": r.TotalMBps, "disk": r.DiskReadMBps, "ratio": r.Ratio} {
		positive(t, name, s, cfg.Runs)
	}
}

func TestRunRejects(t *testing.T) {
	cfg := tinyConfig(t)
	if _, err := Run(context.Background(), cfg, "nosuch"); err == nil {
		t.Error("an unknown suite ran")
	}
	cfg.Systems = []string{"nosuch"}
	if _, err := Run(context.Background(), cfg, SuiteThroughput); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an unknown system: %v", err)
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := tinyConfig(t)
	if _, err := Run(ctx, cfg, SuiteThroughput); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled run: %v", err)
	}
}

func TestSizes(t *testing.T) {
	for in, want := range map[string]int64{"16": 16, "16B": 16, "4KiB": 4096, "4K": 4096, "64MiB": 64 << 20, "1GiB": 1 << 30} {
		if n, err := ParseSize(in); err != nil || n != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, n, err)
		}
		if n, _ := ParseSize(in); SizeName(n) != map[int64]string{16: "16B", 4096: "4KiB", 64 << 20: "64MiB", 1 << 30: "1GiB"}[want] {
			t.Errorf("SizeName(%d) = %s", n, SizeName(n))
		}
	}
	for _, bad := range []string{"", "x", "-1", "4 KiB", "0"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) succeeded", bad)
		}
	}
	s := Summarize([]float64{3, 1, 2})
	if s.Median != 2 || s.Min != 1 || s.Max != 3 {
		t.Errorf("Summarize: %+v", s)
	}
}

// The giant suite starts this test binary again as its coordinators and
// apps.
func TestMain(m *testing.M) {
	GiantChild()
	os.Exit(m.Run())
}

func TestGiant(t *testing.T) {
	cfg := tinyConfig(t)
	rep := runSuite(t, cfg, SuiteGiant)
	g := rep.Giant
	if g == nil || g.Size != cfg.GiantSize || g.Count != cfg.GiantCount || len(g.Processes) != len(GiantProcesses) {
		t.Fatalf("giant: %+v", g)
	}
	// Each run checked every message's length and SHA-256 on arrival.
	for i, p := range g.Processes {
		if p.Name != GiantProcesses[i] {
			t.Errorf("process %d is %q, want %q", i, p.Name, GiantProcesses[i])
		}
		for _, s := range []Summary{p.BeforeMiB, p.PeakMiB, p.PeakRatio} {
			positive(t, p.Name, s, cfg.Runs)
		}
		if len(p.GrowthRatio.Samples) != cfg.Runs {
			t.Errorf("%s growth: %+v", p.Name, p.GrowthRatio)
		}
	}
	positive(t, "seconds", g.Seconds, cfg.Runs)
	positive(t, "tcp seconds", g.TCPSeconds, cfg.Runs)
	if ts := Targets(rep); len(ts) != 2 || !strings.HasPrefix(ts[0].Name, "giant") || !strings.HasPrefix(ts[1].Name, "giant") {
		t.Errorf("targets: %+v", ts)
	}
}
