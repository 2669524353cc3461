package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"unicode/utf8"
)

// Target is one of the targets, checked against the report.
type Target struct {
	Name   string `json:"name"`
	Met    bool   `json:"met"`
	Detail string `json:"detail"`
}

// Targets checks the report against the targets (medians of the
// per-run ratios): durable ambr at least gRPC-Go unary's throughput at
// every size up to 4 KiB, at least half raw TCP's at every size, and the
// conventional design at most a tenth of ambr's requests/s; and the second
// performance pass's (issue 19): throughput against raw TCP and the disk's
// synced write rate (diskOrTCPTarget), a call at one in flight within two
// fdatasyncs and 0.1 ms, recovery at half the disk's cold read, and every
// process within twice a giant message.
func Targets(rep *Report) []Target {
	var ts []Target
	if t := rep.Throughput; t != nil {
		for _, m := range t.Modes {
			check := func(name, key string, bar float64, upTo int) {
				var miss []string
				seen := 0
				for _, s := range m.Sizes {
					r, ok := s.Ratios[key]
					if !ok || (upTo > 0 && s.Size > upTo) {
						continue
					}
					seen++
					if r.Median < bar {
						miss = append(miss, fmt.Sprintf("%s %s×", SizeName(int64(s.Size)), sig(r.Median)))
					}
				}
				if seen == 0 {
					return
				}
				d := fmt.Sprintf("met at %d of %d sizes", seen-len(miss), seen)
				if len(miss) > 0 {
					d += "; missed at " + strings.Join(miss, ", ")
				}
				ts = append(ts, Target{Name: modeTitle(m.Mode) + ": " + name, Met: len(miss) == 0, Detail: d})
			}
			check("ambr ≥ 1× gRPC unary at every size ≤ 4KiB", SysAmbr+"/"+SysGRPCUnary, 1, 4096)
			check("ambr ≥ 0.5× raw TCP at every size", SysAmbr+"/"+SysTCP, 0.5, 0)
			if t := diskOrTCPTarget(m, rep.Machine.SyncedWrite); t != nil {
				ts = append(ts, *t)
			}
		}
	}
	if l := rep.Latency; l != nil && l.Fdatasync.P50ms > 0 {
		for _, r := range l.Rows {
			if r.System != SysAmbr || r.InFlight != 1 || !r.P50ms.OK() {
				continue
			}
			bar := 2*l.Fdatasync.P50ms + 0.1
			ts = append(ts, Target{Name: "call, 1 in flight: ambr p50 ≤ 2 × fdatasync p50 + 0.1 ms", Met: r.P50ms.Median <= bar,
				Detail: fmt.Sprintf("p50 %s ms against %s ms (fdatasync p50 %s ms): %s fdatasync p50s", sig(r.P50ms.Median), sig(bar),
					sig(l.Fdatasync.P50ms), sig(r.P50ms.Median/l.Fdatasync.P50ms))})
		}
	}
	if r := rep.Recovery; r != nil && r.Ratio.OK() {
		ts = append(ts, Target{Name: "recovery ≥ 0.5× the disk's cold read", Met: r.Ratio.Median >= 0.5,
			Detail: fmt.Sprintf("%s MB/s against a cold read of %s MB/s: %s×", sig(r.TotalMBps.Median), sig(r.DiskReadMBps.Median), sig(r.Ratio.Median))})
	}
	if c := rep.Conventional; c != nil && c.Skipped == "" && c.Ratio.OK() {
		ts = append(ts, Target{Name: "conventional ≤ 0.1× ambr requests/s", Met: c.Ratio.Median <= 0.1,
			Detail: fmt.Sprintf("PostgreSQL ÷ ambr = %s at %d in flight", cell(c.Ratio, sig), c.Concurrency)})
	}
	if g := rep.Giant; g != nil && len(g.Processes) >= 2 {
		var miss []string
		for _, p := range g.Processes[:2] { // the two coordinators
			if !p.PeakRatio.OK() || p.PeakRatio.Median > 2 {
				miss = append(miss, fmt.Sprintf("%s %s×", p.Name, sig(p.PeakRatio.Median)))
			}
		}
		d := fmt.Sprintf("peak RSS ÷ %s: %s %s×, %s %s×", SizeName(g.Size), g.Processes[0].Name, sig(g.Processes[0].PeakRatio.Median),
			g.Processes[1].Name, sig(g.Processes[1].PeakRatio.Median))
		ts = append(ts, Target{Name: "giant: each coordinator's peak RSS ≤ 2× the message", Met: len(miss) == 0, Detail: d})
	}
	if g := rep.Giant; g != nil && len(g.Processes) >= 4 {
		var miss, all []string
		for _, p := range g.Processes[:4] { // the coordinators and their apps
			all = append(all, fmt.Sprintf("%s %s×", p.Name, sig(p.PeakRatio.Median)))
			if !p.PeakRatio.OK() || p.PeakRatio.Median > 2 {
				miss = append(miss, p.Name)
			}
		}
		d := "peak RSS ÷ " + SizeName(g.Size) + ": " + strings.Join(all, ", ")
		if len(miss) > 0 {
			d += "; missed by " + strings.Join(miss, ", ")
		}
		ts = append(ts, Target{Name: "giant: every ambr process's peak RSS ≤ 2× the message (apps too)", Met: len(miss) == 0, Detail: d})
	}
	return ts
}

// diskOrTCPTarget is the second pass's throughput goal for one mode (issue
// 19): ambr at least min(0.7 × raw TCP, 0.8 × the disk's synced write rate)
// at every size ≥ 256 B, and at least 0.3 × raw TCP below. The disk's rate
// is the run's own probe (synced MB/s, 0: not measured, and then only the
// TCP bar applies). Nil if the mode has no raw TCP ratios.
func diskOrTCPTarget(m ThroughputMode, syncedMBps float64) *Target {
	var miss []string
	seen := 0
	for _, s := range m.Sizes {
		r, ok := s.Ratios[SysAmbr+"/"+SysTCP]
		tcp := s.Rates[SysTCP].MBps
		if !ok || !r.OK() || !tcp.OK() {
			continue
		}
		seen++
		bar, why := 0.3, "0.3× raw TCP"
		if s.Size >= 256 {
			bar, why = 0.7, "0.7× raw TCP"
			if d := 0.8 * syncedMBps / tcp.Median; syncedMBps > 0 && d < bar {
				bar, why = d, fmt.Sprintf("0.8× the disk's %s MB/s", sig(syncedMBps))
			}
		}
		if r.Median < bar {
			miss = append(miss, fmt.Sprintf("%s %s× raw TCP (%s MB/s) < %s", SizeName(int64(s.Size)), sig(r.Median),
				sig(s.Rates[SysAmbr].MBps.Median), why))
		}
	}
	if seen == 0 {
		return nil
	}
	d := fmt.Sprintf("met at %d of %d sizes", seen-len(miss), seen)
	if len(miss) > 0 {
		d += "; missed at " + strings.Join(miss, ", ")
	}
	return &Target{Name: modeTitle(m.Mode) + ": ambr ≥ min(0.7× raw TCP, 0.8× disk synced write) at ≥ 256 B, ≥ 0.3× raw TCP below",
		Met: len(miss) == 0, Detail: d}
}

// WriteJSON writes the report as indented JSON, with the targets.
func WriteJSON(w io.Writer, rep *Report) error {
	out := struct {
		*Report
		Targets []Target `json:"targets"`
	}{rep, Targets(rep)}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// table is a text table with aligned columns.
type table struct {
	head []string
	rows [][]string
	// right says which columns are right-aligned (numbers).
	right map[int]bool
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.head))
	for _, r := range append([][]string{t.head}, t.rows...) {
		for i, c := range r {
			if i < len(width) {
				width[i] = max(width[i], utf8.RuneCountInString(c))
			}
		}
	}
	line := func(r []string) {
		var b strings.Builder
		for i, c := range r {
			if i >= len(width) {
				break
			}
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if t.right[i] {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.head)
	seps := make([]string, len(t.head))
	for i := range seps {
		seps[i] = strings.Repeat("-", width[i])
	}
	line(seps)
	for _, r := range t.rows {
		line(r)
	}
}

func numTable(head ...string) *table {
	t := &table{head: head, right: map[int]bool{}}
	for i := 1; i < len(head); i++ {
		t.right[i] = true
	}
	return t
}

// WriteText prints the report's tables, the throughput chart and the
// targets.
func WriteText(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "ambr bench, %s, %.0f s\n", rep.Started.Format("2006-01-02 15:04"), rep.Seconds)
	fmt.Fprintf(w, "machine: %s\n", rep.Machine)
	fmt.Fprintf(w, "disk:    %s\n", rep.Machine.Fdatasync)
	if p := rep.Machine.FdatasyncOverwrite; p != nil {
		fmt.Fprintf(w, "         over written blocks (no growth to commit): p50 %s ms, p99 %s ms (%s/s)\n", sig(p.P50ms), sig(p.P99ms), si(p.PerSec))
	}
	if rep.Machine.SyncedWrite > 0 {
		fmt.Fprintf(w, "         %s MB/s of sequential writes made durable (%s writes, each + fdatasync)\n", sig(rep.Machine.SyncedWrite), SizeName(SyncedWriteChunk))
	}
	fmt.Fprintf(w, "figures: median (min–max) of %d run(s)\n", rep.Config.Runs)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note:    %s\n", n)
	}
	if t := rep.Throughput; t != nil {
		writeThroughput(w, rep.Config, t)
	}
	if l := rep.Latency; l != nil {
		writeLatency(w, l)
	}
	if c := rep.Conventional; c != nil {
		writeConventional(w, c)
	}
	if r := rep.Recovery; r != nil {
		writeRecovery(w, rep.Config, r)
	}
	if g := rep.Giant; g != nil {
		writeGiant(w, g)
	}
	if ts := Targets(rep); len(ts) > 0 {
		fmt.Fprintf(w, "\n== targets\n")
		for _, t := range ts {
			mark := "MISSED"
			if t.Met {
				mark = "met"
			}
			fmt.Fprintf(w, "%-6s  %s: %s\n", mark, t.Name, t.Detail)
		}
	}
}

func writeThroughput(w io.Writer, cfg Config, t *ThroughputResult) {
	for _, m := range t.Modes {
		vol := SizeName(cfg.Volume)
		if cfg.MaxMsgs > 0 {
			vol += fmt.Sprintf(" (at most %d messages)", cfg.MaxMsgs)
		}
		fmt.Fprintf(w, "\n== throughput, %s: %s per size; ambr durable on both sides; window %s / %d msgs; gRPC unary %d in flight\n",
			modeTitle(m.Mode), vol, SizeName(cfg.WindowBytes), cfg.WindowMsgs, cfg.GRPCInFlight)
		head := []string{"size"}
		for _, s := range t.Systems {
			head = append(head, systemTitle(s))
		}
		mb, msgs := numTable(head...), numTable(head...)
		for _, s := range m.Sizes {
			a, b := []string{SizeName(int64(s.Size))}, []string{SizeName(int64(s.Size))}
			for _, sys := range t.Systems {
				a = append(a, cell(s.Rates[sys].MBps, sig))
				b = append(b, cell(s.Rates[sys].MsgsPerSec, si))
			}
			mb.add(a...)
			msgs.add(b...)
		}
		fmt.Fprintln(w, "payload MB/s (10^6 B/s, one way):")
		mb.write(w)
		fmt.Fprintln(w, "\nmessages/s:")
		msgs.write(w)
		var others []string
		for _, s := range t.Systems {
			if s != SysAmbr {
				others = append(others, s)
			}
		}
		if len(others) > 0 && contains(t.Systems, SysAmbr) {
			rh := []string{"size"}
			for _, o := range others {
				rh = append(rh, "÷ "+systemTitle(o))
			}
			rt := numTable(rh...)
			for _, s := range m.Sizes {
				row := []string{SizeName(int64(s.Size))}
				for _, o := range others {
					row = append(row, cell(s.Ratios[SysAmbr+"/"+o], sig))
				}
				rt.add(row...)
			}
			fmt.Fprintln(w, "\nambr ÷ baseline (MB/s, per run):")
			rt.write(w)
		}
		fmt.Fprintf(w, "\nchart, %s MB/s (bars scaled to each size's fastest):\n", modeTitle(m.Mode))
		writeBars(w, t.Systems, m)
	}
}

// writeBars draws the sweep as horizontal bars, one group per size.
func writeBars(w io.Writer, systems []string, m ThroughputMode) {
	const width = 40
	name := 0
	for _, s := range systems {
		name = max(name, utf8.RuneCountInString(systemTitle(s)))
	}
	for _, s := range m.Sizes {
		best := 0.0
		for _, sys := range systems {
			best = max(best, s.Rates[sys].MBps.Median)
		}
		for i, sys := range systems {
			label := ""
			if i == 0 {
				label = SizeName(int64(s.Size))
			}
			v := s.Rates[sys].MBps.Median
			n := 0
			if best > 0 {
				n = int(math.Round(v / best * width))
			}
			t := systemTitle(sys)
			fmt.Fprintf(w, "%6s %s%s │%s%s %s\n", label, t, strings.Repeat(" ", name-utf8.RuneCountInString(t)),
				strings.Repeat("█", n), strings.Repeat(" ", width-n), sig(v))
		}
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

func writeCallRows(w io.Writer, rows []CallRow, rate string) {
	t := numTable("system", "in flight", rate, "p50 ms", "p99 ms", "p99.9 ms")
	for _, r := range rows {
		title := systemTitle(r.System)
		if r.System == SysPostgres {
			title = "PostgreSQL (gRPC handler)"
		}
		t.add(title, fmt.Sprint(r.InFlight), cell(r.PerSec, si), cell(r.P50ms, sig), cell(r.P99ms, sig), cell(r.P999ms, sig))
	}
	t.write(w)
}

func writeLatency(w io.Writer, l *LatencyResult) {
	fmt.Fprintf(w, "\n== latency: call with result, client → server → client (samples/counter Inc); ambr durable on both sides\n")
	fmt.Fprintf(w, "disk fdatasync in the same run: p50 %s ms, p99 %s ms, p99.9 %s ms (%s/s)\n",
		sig(l.Fdatasync.P50ms), sig(l.Fdatasync.P99ms), sig(l.Fdatasync.P999ms), si(l.Fdatasync.PerSec))
	writeCallRows(w, l.Rows, "calls/s")
	for i := 0; i+1 < len(l.Rows); i += 2 {
		a, g := l.Rows[i], l.Rows[i+1]
		fmt.Fprintf(w, "%d in flight: ambr p50 = %s× gRPC's, = %s fdatasync p50s (a durable round trip needs 2 log flushes)\n",
			a.InFlight, sig(a.P50ms.Median/g.P50ms.Median), sig(a.P50ms.Median/l.Fdatasync.P50ms))
	}
	if len(l.HalfPeak) > 0 {
		fmt.Fprintf(w, "at 50%% of each system's peak (open loop: calls released every %v at half the best closed-loop rate, at most %d in flight; latency from release):\n",
			releaseTick, halfPeakInFlight)
		t := numTable("system", "offered/s", "calls/s", "p50 ms", "p99 ms", "p99.9 ms")
		for _, r := range l.HalfPeak {
			t.add(systemTitle(r.System), si(r.Offered), cell(r.PerSec, si), cell(r.P50ms, sig), cell(r.P99ms, sig), cell(r.P999ms, sig))
		}
		t.write(w)
	}
	if len(l.Processes) > 0 {
		fmt.Fprintf(w, "ambr with each coordinator and each app a process of its own, as ambr run runs them (the rows above host all four in one process):\n")
		writeCallRows(w, l.Processes, "calls/s")
		for _, r := range l.Processes {
			fmt.Fprintf(w, "%d in flight, processes: ambr p50 = %s fdatasync p50s\n", r.InFlight, sig(r.P50ms.Median/l.Fdatasync.P50ms))
		}
	}
	if h := l.Hops; h != nil && len(h.Hops) > 0 {
		fmt.Fprintf(w, "where a call's time goes (ambr, 1 in flight, a traced run of %d calls; median of each hop; a call's median %s µs):\n", h.Cycles, sig(h.CycleUs))
		t := numTable("from", "to", "µs")
		for _, hop := range h.Hops {
			t.add(hop.From, hop.To, sig(hop.MedianUs))
		}
		t.write(w)
	}
}

func writeConventional(w io.Writer, c *ConventionalResult) {
	fmt.Fprintf(w, "\n== conventional: the counter, exactly once and durable\n")
	if c.Skipped != "" {
		fmt.Fprintf(w, "skipped: %s\n", c.Skipped)
		return
	}
	fmt.Fprintf(w, "%s, fsync on, synchronous_commit on; stateless gRPC handler: one transaction per call (idempotency-key lookup, SELECT … FOR UPDATE, UPDATE, INSERT key)\n", c.Postgres)
	for _, n := range c.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	writeCallRows(w, c.Rows, "requests/s")
	fmt.Fprintf(w, "PostgreSQL ÷ ambr requests/s at %d in flight (per run): %s\n", c.Concurrency, cell(c.Ratio, sig))
}

func writeRecovery(w io.Writer, cfg Config, r *RecoveryResult) {
	fmt.Fprintf(w, "\n== recovery: checkpoint %s + log %s after it (%d records, %d impulses of %s); page cache dropped first\n",
		mib(r.CheckpointBytes), mib(r.LogBytes), r.Records, r.Messages, SizeName(int64(r.MessageSize)))
	t := numTable("what", "figure")
	t.add("time to live (s)", cell(r.Seconds, sig))
	t.add("  of which reading the instance (s)", cell(r.ReadSeconds, sig))
	t.add("log records/s", cell(r.RecordsPerSec, si))
	t.add("messages/s", cell(r.MsgsPerSec, si))
	t.add("log MB/s", cell(r.LogMBps, sig))
	t.add("log + checkpoint MB/s", cell(r.TotalMBps, sig))
	t.add("disk sequential read MB/s (cold, same runs)", cell(r.DiskReadMBps, sig))
	t.add("recovery ÷ disk read (per run)", cell(r.Ratio, sig))
	t.write(w)
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func writeGiant(w io.Writer, g *GiantResult) {
	fmt.Fprintf(w, "\n== giant: %d message(s) of %s one-way, job → server, coordinators linked with TLS, durable logging; each coordinator and app a process\n",
		g.Count, SizeName(g.Size))
	reset := "VmHWM reset (clear_refs 5) once the links were up"
	if !g.HWMReset {
		reset = "VmHWM could not be reset: peaks include start-up"
	}
	fmt.Fprintf(w, "before: VmRSS after a warm-up round trip; peak: VmHWM after the last message was processed (%s)\n", reset)
	t := numTable("process", "before MiB", "peak MiB", "peak ÷ size", "(peak − before) ÷ size")
	for _, p := range g.Processes {
		t.add(p.Name, cell(p.BeforeMiB, sig), cell(p.PeakMiB, sig), cell(p.PeakRatio, sig), cell(p.GrowthRatio, sig))
	}
	t.write(w)
	fmt.Fprintf(w, "time from send to processed: ambr %s s, raw TCP %s s\n", cell(g.Seconds, sig), cell(g.TCPSeconds, sig))
}
