package bench

import (
	"context"
	"fmt"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"runtime"
)

// LatencyResult is the latency suite: a call with a result, client →
// server → client, for ambr (durable on both sides) and gRPC-Go unary, next
// to the disk's fdatasync latency measured in the same run.
type LatencyResult struct {
	Fdatasync SyncProbe `json:"fdatasync"`
	Rows      []CallRow `json:"rows"`
	// HalfPeak holds, per system, an open-loop row at half the best rate of
	// its closed-loop rows (when the config asks for it).
	HalfPeak []CallRow `json:"half_peak,omitempty"`
	// Hops is where the time of a call at one in flight goes, from a run of
	// its own traced with engine/hoptrace (when the config asks for it).
	Hops *hoptrace.Breakdown `json:"hops,omitempty"`
	// Processes holds ambr's closed-loop rows with each coordinator and
	// each app a process (when the config asks for it).
	Processes []CallRow `json:"processes,omitempty"`
}

// halfPeakInFlight bounds the calls in flight of the open-loop rows: far
// above what half the peak needs, so that the release rate, not the bound,
// sets the load.
const halfPeakInFlight = 256

func runLatency(ctx context.Context, cfg Config, dir string, sync SyncProbe) (*LatencyResult, error) {
	res := &LatencyResult{Fdatasync: sync}
	calls := max(cfg.LatencyCalls, 1)
	inflights := cfg.LatencyInFlight
	if len(inflights) == 0 {
		inflights = []int{1}
	}
	// measure runs both systems cfg.Runs times at k in flight, open loop at
	// the given rates when they are > 0.
	measure := func(k int, ambrRate, grpcRate float64) (CallRow, CallRow, error) {
		var ambr, grpcRuns []callSample
		load := fmt.Sprintf("%2d in flight", k)
		for r := 0; r < cfg.Runs; r++ {
			if ambrRate > 0 {
				load = fmt.Sprintf("%s calls/s", si(ambrRate))
			}
			runtime.GC()
			s, err := runAmbrCalls(ctx, dir, calls, cfg.LatencyWarmup, k, ambrRate)
			if err != nil {
				return CallRow{}, CallRow{}, fmt.Errorf("ambr, %s: %w", load, err)
			}
			ambr = append(ambr, s)
			cfg.progress("latency ambr       %s run %d/%d: %s", load, r+1, cfg.Runs, describeSample(s))
			if grpcRate > 0 {
				load = fmt.Sprintf("%s calls/s", si(grpcRate))
			}
			runtime.GC()
			p, err := startGRPC(&grpcImpl{})
			if err != nil {
				return CallRow{}, CallRow{}, err
			}
			s, err = runGRPCCalls(ctx, p.conn, calls, cfg.LatencyWarmup, k, grpcRate)
			p.close()
			if err != nil {
				return CallRow{}, CallRow{}, fmt.Errorf("grpc, %s: %w", load, err)
			}
			grpcRuns = append(grpcRuns, s)
			cfg.progress("latency grpc-unary %s run %d/%d: %s", load, r+1, cfg.Runs, describeSample(s))
		}
		a, g := rowOf(SysAmbr, k, calls, ambr), rowOf(SysGRPCUnary, k, calls, grpcRuns)
		a.Offered, g.Offered = ambrRate, grpcRate
		return a, g, nil
	}
	for _, k := range inflights {
		a, g, err := measure(max(k, 1), 0, 0)
		if err != nil {
			return nil, err
		}
		res.Rows = append(res.Rows, a, g)
	}
	if cfg.LatencyProcesses {
		for _, k := range inflights {
			k = max(k, 1)
			var runs []callSample
			for r := 0; r < cfg.Runs; r++ {
				s, err := runAmbrProcCalls(ctx, cfg, dir, calls, cfg.LatencyWarmup, k)
				if err != nil {
					return nil, fmt.Errorf("ambr, processes, %d in flight: %w", k, err)
				}
				runs = append(runs, s)
				cfg.progress("latency ambr (processes) %2d in flight run %d/%d: %s", k, r+1, cfg.Runs, describeSample(s))
			}
			res.Processes = append(res.Processes, rowOf(SysAmbr, k, calls, runs))
		}
	}
	if cfg.LatencyHops {
		// A run of its own: tracing costs each point a lock and a clock
		// read, which the measured rows should not carry.
		runtime.GC()
		hoptrace.Start()
		_, err := runAmbrCalls(ctx, dir, calls, cfg.LatencyWarmup, 1, 0)
		b := hoptrace.Stop()
		if err != nil {
			return nil, fmt.Errorf("ambr, traced: %w", err)
		}
		res.Hops = &b
		cfg.progress("latency ambr        1 in flight, traced: %d calls, a call's median %s µs", b.Cycles, sig(b.CycleUs))
	}
	if cfg.LatencyHalfPeak {
		var peakA, peakG float64
		for _, r := range res.Rows {
			if r.System == SysAmbr {
				peakA = max(peakA, r.PerSec.Median)
			} else {
				peakG = max(peakG, r.PerSec.Median)
			}
		}
		a, g, err := measure(halfPeakInFlight, peakA/2, peakG/2)
		if err != nil {
			return nil, err
		}
		res.HalfPeak = []CallRow{a, g}
	}
	return res, nil
}

func describeSample(s callSample) string {
	return fmt.Sprintf("%s calls/s, p50 %s ms, p99 %s ms, p99.9 %s ms (%d calls)", si(s.perSec),
		sig(ms(Percentile(s.lat, 50))), sig(ms(Percentile(s.lat, 99))), sig(ms(Percentile(s.lat, 99.9))), len(s.lat))
}
