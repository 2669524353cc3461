package bench

import (
	"context"
	"fmt"
	"runtime"
)

// LatencyResult is the latency suite: a call with a result, client →
// server → client, for ambr (durable on both sides) and gRPC-Go unary, next
// to the disk's fdatasync latency measured in the same run.
type LatencyResult struct {
	Fdatasync SyncProbe `json:"fdatasync"`
	Rows      []CallRow `json:"rows"`
}

func runLatency(ctx context.Context, cfg Config, dir string, sync SyncProbe) (*LatencyResult, error) {
	res := &LatencyResult{Fdatasync: sync}
	calls := max(cfg.LatencyCalls, 1)
	inflights := cfg.LatencyInFlight
	if len(inflights) == 0 {
		inflights = []int{1}
	}
	for _, k := range inflights {
		k = max(k, 1)
		var ambr, grpcRuns []callSample
		for r := 0; r < cfg.Runs; r++ {
			runtime.GC()
			s, err := runAmbrCalls(ctx, dir, calls, cfg.LatencyWarmup, k)
			if err != nil {
				return nil, fmt.Errorf("ambr, %d in flight: %w", k, err)
			}
			ambr = append(ambr, s)
			cfg.progress("latency ambr       %2d in flight run %d/%d: %s", k, r+1, cfg.Runs, describeSample(s))
			runtime.GC()
			p, err := startGRPC(&grpcImpl{})
			if err != nil {
				return nil, err
			}
			s, err = runGRPCCalls(ctx, p.conn, calls, cfg.LatencyWarmup, k)
			p.close()
			if err != nil {
				return nil, fmt.Errorf("grpc, %d in flight: %w", k, err)
			}
			grpcRuns = append(grpcRuns, s)
			cfg.progress("latency grpc-unary %2d in flight run %d/%d: %s", k, r+1, cfg.Runs, describeSample(s))
		}
		res.Rows = append(res.Rows, rowOf(SysAmbr, k, calls, ambr), rowOf(SysGRPCUnary, k, calls, grpcRuns))
	}
	return res, nil
}

func describeSample(s callSample) string {
	return fmt.Sprintf("%s calls/s, p50 %s ms, p99 %s ms, p99.9 %s ms (%d calls)", si(s.perSec),
		sig(ms(Percentile(s.lat, 50))), sig(ms(Percentile(s.lat, 99))), sig(ms(Percentile(s.lat, 99.9))), len(s.lat))
}
