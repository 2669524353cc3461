package bench

import (
	"context"
	"fmt"
	"runtime"
	"time"
)

// ThroughputResult is the throughput sweep.
type ThroughputResult struct {
	Systems []string         `json:"systems"`
	Modes   []ThroughputMode `json:"modes"`
}

// ThroughputMode is the sweep of one mode: "oneway" or "echo".
type ThroughputMode struct {
	Mode  string           `json:"mode"`
	Sizes []ThroughputSize `json:"sizes"`
}

// ThroughputSize is one message size: each system's rates, and ambr's
// ratios to the others (per run, ambr's MB/s over the other's in the same
// run). MB/s counts payload bytes one way (10^6 bytes).
type ThroughputSize struct {
	Size     int                   `json:"size"`
	Messages int64                 `json:"messages"`
	Window   int64                 `json:"window"`
	Rates    map[string]SystemRate `json:"rates"`
	// Ratios are keyed "ambr/<system>".
	Ratios map[string]Summary `json:"ratios"`
}

// SystemRate is a system's throughput at one size.
type SystemRate struct {
	MBps       Summary `json:"mb_per_s"`
	MsgsPerSec Summary `json:"msgs_per_s"`
}

func modeTitle(m string) string {
	if m == "echo" {
		return "echo"
	}
	return "one-way"
}

// window is the number of unacknowledged messages for size.
func (c *Config) window(size int) int64 {
	w := c.WindowBytes / int64(size)
	if c.WindowMsgs > 0 {
		w = min(w, c.WindowMsgs)
	}
	return max(w, 4)
}

// messages is the number of messages sent at size.
func (c *Config) messages(size int) int64 {
	n := max(c.Volume/int64(size), 1)
	if c.MaxMsgs > 0 {
		n = min(n, c.MaxMsgs)
	}
	return n
}

func runThroughput(ctx context.Context, cfg Config, dir string) (*ThroughputResult, error) {
	if len(cfg.Sizes) == 0 || len(cfg.Modes) == 0 || len(cfg.Systems) == 0 {
		return nil, fmt.Errorf("no sizes, modes or systems to measure")
	}
	for _, s := range cfg.Systems {
		known := false
		for _, k := range AllSystems {
			known = known || k == s
		}
		if !known {
			return nil, fmt.Errorf("no system %q (systems: %v)", s, AllSystems)
		}
	}
	for _, m := range cfg.Modes {
		if m != "oneway" && m != "echo" {
			return nil, fmt.Errorf("no mode %q (modes: oneway, echo)", m)
		}
	}
	res := &ThroughputResult{Systems: cfg.Systems}
	for _, mode := range cfg.Modes {
		res.Modes = append(res.Modes, ThroughputMode{Mode: mode})
	}
	for _, size := range cfg.Sizes {
		if size < 8 {
			return nil, fmt.Errorf("message size %d: at least 8 bytes", size)
		}
		n, window := cfg.messages(size), cfg.window(size)
		for mi, mode := range cfg.Modes {
			echo := mode == "echo"
			mbps := map[string][]float64{}
			for r := 0; r < cfg.Runs; r++ {
				for _, sys := range cfg.Systems {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					runtime.GC()
					el, err := runSystem(ctx, cfg, dir, sys, size, n, window, echo)
					if err != nil {
						return nil, fmt.Errorf("%s %s %s run %d: %w", sys, modeTitle(mode), SizeName(int64(size)), r+1, err)
					}
					rate := float64(n) * float64(size) / 1e6 / el.Seconds()
					mbps[sys] = append(mbps[sys], rate)
					cfg.progress("throughput %-7s %6s %-12s run %d/%d: %8.1f MB/s %10.0f msgs/s (%d msgs, %s)",
						modeTitle(mode), SizeName(int64(size)), sys, r+1, cfg.Runs, rate, float64(n)/el.Seconds(), n, el.Round(time.Millisecond))
				}
			}
			ts := ThroughputSize{Size: size, Messages: n, Window: window, Rates: map[string]SystemRate{}, Ratios: map[string]Summary{}}
			for sys, xs := range mbps {
				msgs := make([]float64, len(xs))
				for i, x := range xs {
					msgs[i] = x * 1e6 / float64(size)
				}
				ts.Rates[sys] = SystemRate{MBps: Summarize(xs), MsgsPerSec: Summarize(msgs)}
			}
			if a, ok := mbps[SysAmbr]; ok {
				for sys, xs := range mbps {
					if sys == SysAmbr {
						continue
					}
					rs := make([]float64, len(xs))
					for i := range xs {
						rs[i] = a[i] / xs[i]
					}
					ts.Ratios[SysAmbr+"/"+sys] = Summarize(rs)
				}
			}
			res.Modes[mi].Sizes = append(res.Modes[mi].Sizes, ts)
		}
	}
	return res, nil
}

func runSystem(ctx context.Context, cfg Config, dir, sys string, size int, n, window int64, echo bool) (time.Duration, error) {
	switch sys {
	case SysAmbr:
		return runAmbrThroughput(ctx, dir, logDurable, false, size, n, window, echo)
	case SysAmbrNoTLS:
		return runAmbrThroughput(ctx, dir, logDurable, true, size, n, window, echo)
	case SysAmbrProcs:
		return runAmbrProcThroughput(ctx, dir, size, n, window, echo)
	case SysAmbrNoSync:
		return runAmbrThroughput(ctx, dir, logNoSync, false, size, n, window, echo)
	case SysAmbrNoLog:
		return runAmbrThroughput(ctx, dir, logOff, false, size, n, window, echo)
	case SysGRPCUnary:
		return runGRPCUnary(ctx, size, n, max(cfg.GRPCInFlight, 1), echo)
	case SysGRPCStream:
		return runGRPCStream(ctx, size, n, echo)
	case SysTCP:
		return runTCP(ctx, size, n, window, echo)
	}
	return 0, fmt.Errorf("no system %q", sys)
}
