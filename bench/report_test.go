package bench

import (
	"strings"
	"testing"
)

func one(v float64) Summary { return Summary{Median: v, Min: v, Max: v, Samples: []float64{v}} }

// targetNamed returns the target whose name starts with prefix.
func targetNamed(t *testing.T, ts []Target, prefix string) Target {
	t.Helper()
	for _, x := range ts {
		if strings.HasPrefix(x.Name, prefix) {
			return x
		}
	}
	t.Fatalf("no target %q in %+v", prefix, ts)
	return Target{}
}

// TestSecondPassTargets checks issue 19's goals against reports whose
// figures sit just inside and just outside each bar.
func TestSecondPassTargets(t *testing.T) {
	size := func(n int, ambr, tcp float64) ThroughputSize {
		return ThroughputSize{Size: n, Rates: map[string]SystemRate{SysAmbr: {MBps: one(ambr)}, SysTCP: {MBps: one(tcp)}},
			Ratios: map[string]Summary{SysAmbr + "/" + SysTCP: one(ambr / tcp)}}
	}
	const tput = "one-way: ambr ≥ min("
	for _, c := range []struct {
		name   string
		disk   float64
		sizes  []ThroughputSize
		met    bool
		detail string
	}{
		// 0.8 × 300 = 240 MB/s is below 0.7 × 1000: the disk sets the bar.
		{"disk bar met", 300, []ThroughputSize{size(65536, 241, 1000), size(16, 31, 100)}, true, "met at 2 of 2"},
		{"disk bar missed", 300, []ThroughputSize{size(65536, 239, 1000), size(16, 31, 100)}, false, "0.8× the disk's 300 MB/s"},
		// A fast disk: 0.7 × raw TCP is the bar.
		{"tcp bar missed", 5000, []ThroughputSize{size(256, 69, 100)}, false, "256B 0.690× raw TCP"},
		{"tcp bar met", 5000, []ThroughputSize{size(256, 71, 100)}, true, "met at 1 of 1"},
		{"no disk probe", 0, []ThroughputSize{size(1024, 71, 100)}, true, "met"},
		{"16 B missed", 300, []ThroughputSize{size(16, 29, 100)}, false, "16B 0.290× raw TCP (29.0 MB/s) < 0.3× raw TCP"},
	} {
		rep := &Report{Machine: Machine{SyncedWrite: c.disk}, Throughput: &ThroughputResult{Modes: []ThroughputMode{{Mode: "oneway", Sizes: c.sizes}}}}
		got := targetNamed(t, Targets(rep), tput)
		if got.Met != c.met || !strings.Contains(got.Detail, c.detail) {
			t.Errorf("%s: %+v, want met %v and %q", c.name, got, c.met, c.detail)
		}
	}

	lat := func(p50 float64) *Report {
		return &Report{Latency: &LatencyResult{Fdatasync: SyncProbe{P50ms: 0.2},
			Rows: []CallRow{{System: SysAmbr, InFlight: 4, P50ms: one(0.1)}, {System: SysGRPCUnary, InFlight: 1, P50ms: one(0.05)}, {System: SysAmbr, InFlight: 1, P50ms: one(p50)}}}}
	}
	if got := targetNamed(t, Targets(lat(0.49)), "call, 1 in flight"); !got.Met || !strings.Contains(got.Detail, "against 0.500 ms") {
		t.Errorf("0.49 ms with fdatasync 0.2 ms: %+v", got)
	}
	if got := targetNamed(t, Targets(lat(0.51)), "call, 1 in flight"); got.Met {
		t.Errorf("0.51 ms with fdatasync 0.2 ms: %+v", got)
	}
	if ts := Targets(lat(0.3)); len(ts) != 1 {
		t.Errorf("one 1-in-flight ambr row, want one latency target: %+v", ts)
	}

	for ratio, met := range map[float64]bool{0.49: false, 0.5: true} {
		rep := &Report{Recovery: &RecoveryResult{Ratio: one(ratio), TotalMBps: one(ratio * 1000), DiskReadMBps: one(1000)}}
		if got := targetNamed(t, Targets(rep), "recovery"); got.Met != met {
			t.Errorf("recovery at %v× cold read: %+v", ratio, got)
		}
	}

	giant := func(ratios ...float64) *Report {
		g := &GiantResult{Size: 256 << 20}
		for i, r := range ratios {
			g.Processes = append(g.Processes, GiantProcess{Name: GiantProcesses[i], PeakRatio: one(r)})
		}
		return &Report{Giant: g}
	}
	if got := targetNamed(t, Targets(giant(1.9, 1.9, 2.1, 1.1, 1.0, 1.0)), "giant: every"); got.Met || !strings.Contains(got.Detail, "missed by "+GiantProcesses[2]) {
		t.Errorf("an app at 2.1×: %+v", got)
	}
	if got := targetNamed(t, Targets(giant(1.9, 1.9, 2.1, 1.1, 1.0, 1.0)), "giant: each coordinator"); !got.Met {
		t.Errorf("coordinators at 1.9×: %+v", got)
	}
	if got := targetNamed(t, Targets(giant(2, 1.5, 1.2, 1.1, 3, 3)), "giant: every"); !got.Met {
		t.Errorf("all ambr processes within 2× (raw TCP does not count): %+v", got)
	}
}
