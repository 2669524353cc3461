package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	ossignal "os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/immortal"
)

// The giant-message suite: a job immortal forks GiantCount messages of
// GiantSize bytes one-way to a server immortal, one after the other (each
// sent once the previous one has been processed), through two coordinators
// linked with TLS, durable logging on both sides: the `ambr run` layout.
//
// What is measured: each of the four (coordinator, app) × (job, server)
// runs as a process of its own, a child of the bench process (the bench's
// own executable run again, see GiantChild), so each one's memory is its
// own. Its RSS before the first message is VmRSS in /proc/PID/status once
// the links are up (a warm-up round trip job → srv → job); then its peak
// counter is reset (clear_refs 5: VmHWM := the current RSS) and, once the
// last message has been processed by the server's app and half a second
// more has passed, its VmHWM is the peak over the messages. Ratios are to
// the message's size. Baseline in the same run: raw TCP, a sender process
// that builds the same bytes and writes them to a socket, and a receiver
// that reads each message into a buffer of its size and hashes it: what
// holding the message once on each side costs. The children run with the
// bench's environment (GOGC, GOMEMLIMIT as set there).

// GiantResult is the giant-message suite.
type GiantResult struct {
	Size  int64 `json:"size"`
	Count int   `json:"count"`
	// Processes, in order: the job's (sending) coordinator, the server's
	// (receiving) coordinator, the job's app, the server's app, the raw
	// TCP sender and receiver.
	Processes []GiantProcess `json:"processes"`
	// Seconds is from the job app's impulse to the server app's having
	// hashed the last message; TCPSeconds from the "send" to the receiver's
	// having hashed it.
	Seconds    Summary `json:"seconds"`
	TCPSeconds Summary `json:"tcp_seconds"`
	// HWMReset says whether VmHWM could be reset before sending (if not,
	// the peak includes start-up, which is far below a giant message).
	HWMReset bool `json:"hwm_reset"`
}

// GiantProcess is one process's memory in MiB and as a ratio to Size.
type GiantProcess struct {
	Name      string  `json:"name"`
	BeforeMiB Summary `json:"before_mib"`
	PeakMiB   Summary `json:"peak_mib"`
	// PeakRatio is the peak over Size; GrowthRatio (peak − before) over
	// Size: what the messages added.
	PeakRatio   Summary `json:"peak_ratio"`
	GrowthRatio Summary `json:"growth_ratio"`
}

// Process names of the giant suite.
const (
	GiantJobIC  = "sending coordinator"
	GiantSrvIC  = "receiving coordinator"
	GiantJobApp = "sending app"
	GiantSrvApp = "receiving app"
	GiantTCPTx  = "raw TCP sender"
	GiantTCPRx  = "raw TCP receiver"
)

// GiantProcesses lists the giant suite's processes in report order.
var GiantProcesses = []string{GiantJobIC, GiantSrvIC, GiantJobApp, GiantSrvApp, GiantTCPTx, GiantTCPRx}

// The child processes' roles, in the environment.
const (
	envGiantRole = "AMBR_BENCH_GIANT_ROLE"
	envGiantDir  = "AMBR_BENCH_GIANT_DIR"
	envGiantPort = "AMBR_BENCH_GIANT_PORT"
)

// EnvGiantMemProfile, set to a directory in the bench's environment, has
// each child write its allocation profile there when it stops (go tool
// pprof -sample_index=alloc_space): where the copies of the message are.
const EnvGiantMemProfile = "AMBR_BENCH_GIANT_MEMPROFILE"

// EnvChildTrace, set to a directory in the bench's environment, has each
// child process (the giant suite's, the latency suite's with processes)
// write an execution trace there (go tool trace).
const EnvChildTrace = "AMBR_BENCH_CHILD_TRACE"

// GiantChild runs this process as one of the giant suite's children if the
// environment says so, and exits; otherwise it returns at once. Call it
// first in main (and in TestMain of a test that runs the suite).
func GiantChild() {
	role := os.Getenv(envGiantRole)
	if role == "" {
		return
	}
	ctx, stop := ossignal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopTrace := func() {}
	if dir := os.Getenv(EnvChildTrace); dir != "" {
		if f, terr := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.trace", role, os.Getpid()))); terr == nil && trace.Start(f) == nil {
			stopTrace = func() { trace.Stop(); f.Close() } // before os.Exit below
		}
	}
	var err error
	switch role {
	case "ic":
		err = giantIC(ctx)
	case "job":
		err = giantJob(ctx)
	case "srv":
		err = giantSrv(ctx)
	case "tcp-send":
		err = giantTCPSend(ctx)
	case "tcp-recv":
		err = giantTCPRecv(ctx)
	case "calls-srv":
		err = callsServerApp(ctx)
	case "calls-cli":
		err = callsClientApp(ctx)
	case "tput-srv":
		err = tputServerApp(ctx)
	case "tput-job":
		err = tputJobApp(ctx)
	default:
		err = fmt.Errorf("no role %q", role)
	}
	stop()
	stopTrace()
	if dir := os.Getenv(EnvGiantMemProfile); dir != "" {
		name := role
		if d := os.Getenv(envGiantDir); d != "" {
			name += "-" + filepath.Base(d)
		}
		if f, perr := os.Create(filepath.Join(dir, fmt.Sprintf("%s-%d.pprof", name, os.Getpid()))); perr == nil {
			runtime.GC() // the profile shows allocations up to the last GC
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "giant %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// out serializes a child's status lines to the parent.
var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

// giantIC is a coordinator listening for its app on loopback TCP: it
// prints "ports RECV SEND", then "live" once its app is primary with a
// durable checkpoint.
func giantIC(ctx context.Context) error {
	dir := os.Getenv(envGiantDir)
	// The bench process starts the app, not this one: admit this user's.
	l, err := engine.ListenApp(engine.TCPConfig{Policy: engine.AppsOfUser(os.Getuid()), Logger: quiet})
	if err != nil {
		return err
	}
	defer l.Close()
	var once sync.Once
	c, err := engine.New(engine.Options{Dir: dir, Name: filepath.Base(dir), Listener: l, Logger: quiet,
		OnStatus: func(s engine.Status) {
			if s.Phase == "live" && !s.CheckpointBusy && s.Checkpoint >= 1 {
				once.Do(func() { say("live") })
			}
		}})
	if err != nil {
		return err
	}
	say("ports %d %d", l.RecvPort, l.SendPort)
	return c.Run(ctx)
}

// giantFill fills p with the payload's bytes from offset off (a multiple
// of 8): the same bytes whether built whole or in pieces.
func giantFill(p []byte, off int64) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], uint64(off+int64(i))*0x9E3779B97F4A7C15)
	}
	for i := len(p) &^ 7; i < len(p); i++ {
		p[i] = byte(off + int64(i))
	}
}

// giantDigest is the SHA-256 of the size bytes giantFill makes, computed a
// MiB at a time.
func giantDigest(size int64) string {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		giantFill(buf[:n], off)
		h.Write(buf[:n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

type giantState struct {
	Sent, Got int64
}

// giantJob is the sending app: "warm" on stdin runs a round trip to the
// server (it prints "warmed"), "send N" forks a message of N bytes.
func giantJob(ctx context.Context) error {
	app := immortal.New(func() giantState { return giantState{} }, immortal.WithCodec(rawCodec{}), immortal.WithLogger(quiet))
	immortal.Handle(app, "warm", func(ctx *immortal.Ctx, s *giantState, _ int64) (struct{}, error) {
		return struct{}{}, ctx.Fork("srv", "warm", int64(0))
	})
	immortal.Handle(app, "warmed", func(ctx *immortal.Ctx, s *giantState, _ int64) (struct{}, error) {
		if !ctx.Replaying() {
			say("warmed")
		}
		return struct{}{}, nil
	})
	immortal.Handle(app, "send", func(ctx *immortal.Ctx, s *giantState, n int64) (struct{}, error) {
		p := make([]byte, n)
		giantFill(p, 0)
		s.Sent++
		return struct{}{}, ctx.Fork("srv", "data", p)
	})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			var err error
			switch {
			case len(f) == 1 && f[0] == "warm":
				err = impulse(ctx, app, "warm", int64(0))
			case len(f) == 2 && f[0] == "send":
				n, _ := strconv.ParseInt(f[1], 10, 64)
				err = impulse(ctx, app, "send", n)
			}
			if err != nil {
				say("error %v", err)
			}
		}
	}()
	return app.Run(ctx)
}

// giantSrv is the receiving app: it prints "got LEN SHA256" for each
// message.
func giantSrv(ctx context.Context) error {
	app := immortal.New(func() giantState { return giantState{} }, immortal.WithCodec(rawCodec{}), immortal.WithLogger(quiet))
	immortal.Handle(app, "warm", func(ctx *immortal.Ctx, s *giantState, _ int64) (struct{}, error) {
		return struct{}{}, ctx.Fork("job", "warmed", int64(0))
	})
	immortal.Handle(app, "data", func(ctx *immortal.Ctx, s *giantState, p []byte) (struct{}, error) {
		s.Got++
		if !ctx.Replaying() {
			sum := sha256.Sum256(p)
			say("got %d %s", len(p), hex.EncodeToString(sum[:]))
		}
		return struct{}{}, nil
	})
	return app.Run(ctx)
}

// giantTCPRecv listens (it prints "port P"), then reads messages of an
// 8-byte length and that many bytes, each into a buffer of its own, and
// prints "got LEN SHA256" for each.
func giantTCPRecv(ctx context.Context) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	say("port %d", ln.Addr().(*net.TCPAddr).Port)
	context.AfterFunc(ctx, func() { ln.Close() })
	c, err := ln.Accept()
	if err != nil {
		return err
	}
	context.AfterFunc(ctx, func() { c.Close() })
	defer c.Close()
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				<-ctx.Done()
				return nil
			}
			return err
		}
		p := make([]byte, binary.LittleEndian.Uint64(hdr[:]))
		if _, err := io.ReadFull(c, p); err != nil {
			return err
		}
		sum := sha256.Sum256(p)
		say("got %d %s", len(p), hex.EncodeToString(sum[:]))
	}
}

// giantTCPSend connects to the receiver's port; each "send N" on stdin
// builds a message of N bytes and writes it.
func giantTCPSend(ctx context.Context) error {
	c, err := net.Dial("tcp", "127.0.0.1:"+os.Getenv(envGiantPort))
	if err != nil {
		return err
	}
	defer c.Close()
	context.AfterFunc(ctx, func() { c.Close() })
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || f[0] != "send" {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		p := make([]byte, 8+n)
		binary.LittleEndian.PutUint64(p, uint64(n))
		giantFill(p[8:], 0)
		if _, err := c.Write(p); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return nil
}

// child is a running child process of the suite with its output lines.
type child struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// done is closed when the process has exited, with err its outcome.
	done chan struct{}
	err  error
}

func startChild(name, role string, env []string) (*child, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(append(os.Environ(), envGiantRole+"="+role), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = childAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ch := &child{name: name, cmd: cmd, stdin: stdin, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch.lines <- sc.Text()
		}
		close(ch.lines)
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

// expect waits for a line of ch starting with prefix and returns its
// fields after it; others of the children stopping is an error.
func (ch *child) expect(ctx context.Context, prefix string, watch []*child, tick func()) ([]string, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case l, ok := <-ch.lines:
			if !ok {
				<-ch.done
				return nil, fmt.Errorf("%s stopped while we waited for %q: %v", ch.name, prefix, ch.err)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return strings.Fields(rest), nil
			}
			if strings.HasPrefix(l, "error ") {
				return nil, fmt.Errorf("%s: %s", ch.name, l)
			}
		case <-t.C:
			for _, w := range watch {
				select {
				case <-w.done:
					return nil, fmt.Errorf("%s stopped (%v) while we waited for %s's %q", w.name, w.err, ch.name, prefix)
				default:
				}
			}
			if tick != nil {
				tick()
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s's %q: %w", ch.name, prefix, ctx.Err())
		}
	}
}

// stop ends the child with SIGTERM (SIGKILL after 10 s).
func (ch *child) stop() {
	ch.stdin.Close()
	ch.cmd.Process.Signal(syscall.SIGTERM)
	go func() {
		for range ch.lines {
		}
	}()
	select {
	case <-ch.done:
	case <-time.After(10 * time.Second):
		ch.cmd.Process.Kill()
		<-ch.done
	}
}

// procMem reads VmRSS and VmHWM (bytes) of pid from /proc.
func procMem(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		var kb int64
		if _, err := fmt.Sscanf(l, "VmRSS: %d kB", &kb); err == nil {
			rss = kb << 10
		} else if _, err := fmt.Sscanf(l, "VmHWM: %d kB", &kb); err == nil {
			hwm = kb << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}
	return rss, hwm, nil
}

// resetHWM sets pid's VmHWM to its current RSS.
func resetHWM(pid int) bool {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
}

// giantSample is one run's figures per process.
type giantSample struct {
	before, peak map[string]int64
	seconds      float64
	reset        bool
}

func runGiant(ctx context.Context, cfg Config, dir string) (*GiantResult, error) {
	size, count := cfg.GiantSize, max(cfg.GiantCount, 1)
	if size < 8 || size > maxGiantSize {
		return nil, fmt.Errorf("giant size %d: from 8 B to %s", size, SizeName(maxGiantSize))
	}
	cfg.progress("giant: hashing the %s payload for the check", SizeName(size))
	want := giantDigest(size)
	res := &GiantResult{Size: size, Count: count, HWMReset: true}
	var secs, tcpSecs []float64
	before, peak := map[string][]float64{}, map[string][]float64{}
	add := func(s giantSample) {
		for k, v := range s.before {
			before[k] = append(before[k], float64(v))
			peak[k] = append(peak[k], float64(s.peak[k]))
		}
		res.HWMReset = res.HWMReset && s.reset
	}
	for r := 0; r < cfg.Runs; r++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s, err := giantAmbrRun(ctx, cfg, dir, size, count, want, r)
		if err != nil {
			return nil, fmt.Errorf("ambr run %d: %w", r+1, err)
		}
		add(s)
		secs = append(secs, s.seconds)
		t, err := giantTCPRun(ctx, cfg, size, count, want, r)
		if err != nil {
			return nil, fmt.Errorf("raw TCP run %d: %w", r+1, err)
		}
		add(t)
		tcpSecs = append(tcpSecs, t.seconds)
		line := fmt.Sprintf("giant run %d/%d: %d × %s in %.2f s (raw TCP %.2f s); peak RSS ÷ size:", r+1, cfg.Runs, count, SizeName(size), s.seconds, t.seconds)
		for _, p := range GiantProcesses {
			v := s.peak[p]
			if _, ok := t.peak[p]; ok {
				v = t.peak[p]
			}
			line += fmt.Sprintf(" %s %.2f,", p, float64(v)/float64(size))
		}
		cfg.progress("%s", strings.TrimSuffix(line, ","))
	}
	for _, p := range GiantProcesses {
		gp := GiantProcess{Name: p}
		var b, pk, pr, gr []float64
		for i := range before[p] {
			b, pk = append(b, before[p][i]/(1<<20)), append(pk, peak[p][i]/(1<<20))
			pr, gr = append(pr, peak[p][i]/float64(size)), append(gr, (peak[p][i]-before[p][i])/float64(size))
		}
		gp.BeforeMiB, gp.PeakMiB, gp.PeakRatio, gp.GrowthRatio = Summarize(b), Summarize(pk), Summarize(pr), Summarize(gr)
		res.Processes = append(res.Processes, gp)
	}
	res.Seconds, res.TCPSeconds = Summarize(secs), Summarize(tcpSecs)
	return res, nil
}

// maxGiantSize is the largest giant message: the app protocol's limit
// on one message less room for its envelope.
const maxGiantSize = 1023 << 20

// measure takes every process's RSS, resets its peak, runs send, then
// waits half a second and reads the peaks.
func measure(procs map[string]*child, send func() error) (giantSample, error) {
	s := giantSample{before: map[string]int64{}, peak: map[string]int64{}, reset: true}
	time.Sleep(200 * time.Millisecond)
	for name, ch := range procs {
		rss, _, err := procMem(ch.cmd.Process.Pid)
		if err != nil {
			return s, err
		}
		s.before[name] = rss
		s.reset = resetHWM(ch.cmd.Process.Pid) && s.reset
	}
	start := time.Now()
	if err := send(); err != nil {
		return s, err
	}
	s.seconds = time.Since(start).Seconds()
	time.Sleep(500 * time.Millisecond)
	for name, ch := range procs {
		_, hwm, err := procMem(ch.cmd.Process.Pid)
		if err != nil {
			return s, err
		}
		s.peak[name] = hwm
	}
	return s, nil
}

// progressTick returns a function printing the processes' RSS now.
func progressTick(cfg Config, what string, procs map[string]*child, order []string, start time.Time) func() {
	return func() {
		line := fmt.Sprintf("  %s, %.0f s: RSS", what, time.Since(start).Seconds())
		for _, n := range order {
			if rss, _, err := procMem(procs[n].cmd.Process.Pid); err == nil {
				line += fmt.Sprintf(" %s %s,", n, mib(rss))
			}
		}
		cfg.progress("%s", strings.TrimSuffix(line, ","))
	}
}

func checkGot(fields []string, size int64, want string) error {
	if len(fields) != 2 || fields[0] != strconv.FormatInt(size, 10) || fields[1] != want {
		return fmt.Errorf("the message arrived as %v, want %d bytes with SHA-256 %s", fields, size, want)
	}
	return nil
}

// procRun is what a run of child processes needs: a home directory of
// its own under the bench's, a deadline, and its children (all), stopped
// and removed by close.
type procRun struct {
	ctx    context.Context
	cancel func()
	home   string
	all    []*child
}

func newProcRun(ctx context.Context, dir, prefix string) (*procRun, error) {
	home, err := os.MkdirTemp(dir, prefix)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	return &procRun{ctx: ctx, cancel: cancel, home: home}, nil
}

func (r *procRun) close() {
	for _, ch := range r.all {
		ch.stop()
	}
	r.cancel()
	os.RemoveAll(r.home)
}

// instProcs is an instance run as two processes: its coordinator (the "ic"
// child, named ic) and its app (a child of role, named app, with env).
type instProcs struct {
	inst, ic, app, role string
	env                 []string
}

// startInstances starts each instance's coordinator, for home/inst, and
// its app connected to the coordinator's ports, and waits until every
// coordinator is live. The children are put in *all, apps first (they
// are stopped first), also when it fails; it returns them by name.
func startInstances(ctx context.Context, home string, all *[]*child, insts []instProcs) (map[string]*child, error) {
	procs := map[string]*child{}
	start := func(name, role string, env []string) (*child, error) {
		ch, err := startChild(name, role, env)
		if err == nil {
			*all = append([]*child{ch}, *all...)
		}
		return ch, err
	}
	for _, in := range insts {
		ic, err := start(in.ic, "ic", []string{envGiantDir + "=" + filepath.Join(home, in.inst)})
		if err != nil {
			return nil, err
		}
		ports, err := ic.expect(ctx, "ports", nil, nil)
		if err != nil || len(ports) != 2 {
			return nil, fmt.Errorf("%s: no ports (%v)", in.ic, err)
		}
		env := append([]string{engine.EnvReceivePort + "=" + ports[0], engine.EnvSendPort + "=" + ports[1], immortal.EnvInstance + "=" + in.inst}, in.env...)
		app, err := start(in.app, in.role, env)
		if err != nil {
			return nil, err
		}
		procs[in.ic], procs[in.app] = ic, app
	}
	for _, in := range insts {
		if _, err := procs[in.ic].expect(ctx, "live", *all, nil); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

func giantAmbrRun(ctx context.Context, cfg Config, dir string, size int64, count int, want string, run int) (giantSample, error) {
	r, err := newProcRun(ctx, dir, "giant-")
	if err != nil {
		return giantSample{}, err
	}
	defer r.close()
	ctx, home := r.ctx, r.home
	cfg.progress("giant run %d/%d: starting two coordinators and their apps, each a process", run+1, cfg.Runs)
	procs, err := startInstances(ctx, home, &r.all, []instProcs{{"srv", GiantSrvIC, GiantSrvApp, "srv", nil}, {"job", GiantJobIC, GiantJobApp, "job", nil}})
	if err != nil {
		return giantSample{}, err
	}
	watch := r.all
	job, srv := procs[GiantJobApp], procs[GiantSrvApp]
	fmt.Fprintln(job.stdin, "warm")
	if _, err := job.expect(ctx, "warmed", watch, nil); err != nil {
		return giantSample{}, err
	}
	order := []string{GiantJobIC, GiantSrvIC, GiantJobApp, GiantSrvApp}
	return measure(procs, func() error {
		t0 := time.Now()
		for i := 0; i < count; i++ {
			cfg.progress("giant run %d/%d: ambr, message %d/%d of %s", run+1, cfg.Runs, i+1, count, SizeName(size))
			fmt.Fprintf(job.stdin, "send %d\n", size)
			got, err := srv.expect(ctx, "got", watch, progressTick(cfg, "ambr", procs, order, t0))
			if err != nil {
				return err
			}
			if err := checkGot(got, size, want); err != nil {
				return err
			}
		}
		return nil
	})
}

func giantTCPRun(ctx context.Context, cfg Config, size int64, count int, want string, run int) (giantSample, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	rx, err := startChild(GiantTCPRx, "tcp-recv", nil)
	if err != nil {
		return giantSample{}, err
	}
	defer rx.stop()
	port, err := rx.expect(ctx, "port", nil, nil)
	if err != nil || len(port) != 1 {
		return giantSample{}, fmt.Errorf("raw TCP receiver: no port (%v)", err)
	}
	tx, err := startChild(GiantTCPTx, "tcp-send", []string{envGiantPort + "=" + port[0]})
	if err != nil {
		return giantSample{}, err
	}
	defer tx.stop()
	procs := map[string]*child{GiantTCPTx: tx, GiantTCPRx: rx}
	watch := []*child{tx, rx}
	return measure(procs, func() error {
		t0 := time.Now()
		for i := 0; i < count; i++ {
			cfg.progress("giant run %d/%d: raw TCP, message %d/%d of %s", run+1, cfg.Runs, i+1, count, SizeName(size))
			fmt.Fprintf(tx.stdin, "send %d\n", size)
			got, err := rx.expect(ctx, "got", watch, progressTick(cfg, "raw TCP", procs, []string{GiantTCPTx, GiantTCPRx}, t0))
			if err != nil {
				return err
			}
			if err := checkGot(got, size, want); err != nil {
				return err
			}
		}
		return nil
	})
}
