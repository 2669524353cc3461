package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/bench"
	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/upgrade"
)

type runOptions struct {
	name           string
	segmentSize    int64
	nondeterminism string
	quiet          bool
	retain         int
	registry       string
	ports          string
	externalApp    bool
	appPid         int
	limits         supervise.Limits
	diskFault      string
	peerTLS        string
	appBudget      string
	tlsDir         string
	peerAddr       string
	ambrosiaReg    bool
	replica        int
	leaseTTL       time.Duration
	checkpointer   bool
	warmStandby    bool
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)

func newRunCmd(g *globals) *cobra.Command {
	var o runOptions
	var file string
	cmd := &cobra.Command{
		Use:   "run APP [--name NAME] [-- APP_ARGS...] | run -f ambr.yaml",
		Short: "Run an immortal: its coordinator here, its app as a supervised child",
		Long: `Run an immortal in the foreground. The coordinator runs in this process and
logs every input of the app durably (under --home, default ./.ambr) before the
app sees it; the app runs as a child process and is restarted when it dies.

APP is a Go package path (./samples/accumulator: built for you) or an
executable in any language that speaks the AMBROSIA app protocol. The exact
binary is kept under <home>/.bin, named by its SHA-256, and recorded in the
instance's MANIFEST, so its history can later be replayed with that build.

Ctrl-C stops cleanly. kill -9 of this process is a machine failure: run the
same command again and the immortal recovers exactly where it was.

Only the app this command started (or its children) may connect to the app
ports; with --external-app, only processes of your user, or with --app-pid
only that process and its children. Anything else is refused with a warning.

A crashing app is restarted with a growing delay while it makes no progress.
ambr run stops with exit 1 and names the reason when the app exits
--max-exits-before-attach times in a row before connecting, dies
--max-deaths-per-record times in a row handling the same record (the message
names the record and the app's last stderr line), or sends a message over the
1 GiB limit. An app killed by SIGKILL is not counted: that came from outside.

-f FILE runs several immortals from one YAML file, each as 'ambr run APP'
would (one coordinator per immortal, all in this process), their output
prefixed by name; Ctrl-C stops all, and if one stops on an error the others
are stopped too. The other flags apply to every immortal. Relative app
paths are relative to the file:

  immortals:
    - name: server
      app: ./samples/counter/server
    - name: client
      app: ./samples/counter/client
      args: [--server, server, --count, "100"]
      # replicas: 3        (active/active: primary and hot standbys, each
      #                     labelled client/0, client/1, …)
      # checkpointer: true (with replicas: the last one is the checkpointer)
      # ports: 2500,2501   (fixed app ports; default free ones)

Exit codes: 0 stopped by Ctrl-C; 1 the coordinator stopped on an error (a
disk fault, a damaged log, an app in a crash loop: the message says which);
2 could not start.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			if file != "" {
				return runImmortals(cmd.Context(), g, file, args, o)
			}
			if len(args) == 0 {
				return usageErrorf("give the APP to run (a Go package path or an executable), or -f ambr.yaml for several immortals")
			}
			appArgs := args[1:]
			if n := cmd.ArgsLenAtDash(); n >= 0 && n != 1 {
				return usageErrorf("give one APP before --, then the app's own arguments")
			}
			return runImmortal(cmd.Context(), g, args[0], appArgs, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "run the immortals listed in this YAML file (see above), each as APP would run")
	f.StringVar(&o.name, "name", "", "instance name (default: the app's base name)")
	f.Int64Var(&o.segmentSize, "segment-size", engine.DefaultSegmentSize, "log bytes per segment; each roll-over takes a checkpoint")
	f.StringVar(&o.nondeterminism, "nondeterminism", "stop", "when a recovery replays differently from the log: stop or warn")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only warnings and errors from the coordinator")
	f.StringVar(&o.registry, "registry", "", "the instance registry shared by peers: a directory (default <home>/.registry), or etcd://HOST:PORT[,HOST:PORT…]")
	f.StringVar(&o.ports, "ports", "", "RECV,SEND: fixed loopback ports for the app (default: free ones)")
	f.BoolVar(&o.externalApp, "external-app", false, "run only the coordinator; start the app yourself with the printed environment (then APP is just recorded)")
	f.IntVar(&o.appPid, "app-pid", 0, "with --external-app: only this process (and its children) may attach as the app (default: any process of your user)")
	f.IntVar(&o.limits.ExitsBeforeAttach, "max-exits-before-attach", 5, "stop when the app exits this many times in a row before connecting")
	f.IntVar(&o.limits.DeathsOnRecord, "max-deaths-per-record", 3, "stop when the app dies this many times in a row handling the same record")
	f.StringVar(&o.diskFault, "inject-disk-fault", "", "failure injection for tests: OP:N:ERRNO fails the N-th and later OP (write, sync, create, rename) with ENOSPC or EIO")
	_ = f.MarkHidden("inject-disk-fault")
	f.StringVar(&o.peerTLS, "peer-tls", "on", "TLS between coordinators, with certificates from the registry's CA: on, or off for measurements (hellos are then taken on trust)")
	f.StringVar(&o.tlsDir, "tls", "", "CA directory for coordinator TLS across hosts (see 'ambr certs'; default: the local CA under the registry directory)")
	f.StringVar(&o.peerAddr, "peer-addr", "127.0.0.1:0", "HOST:PORT where this coordinator listens for other coordinators (default a free loopback port)")
	f.StringVar(&o.appBudget, "app-budget", "64MiB", "bytes that may wait for the app: input it has not taken, and output its receivers have not acknowledged; beyond it the coordinator stops reading from peers, or from the app")
	f.BoolVar(&o.ambrosiaReg, "ambrosia-registration", false, "on every start, write AMBROSIA's registration of the instance (its ports) to the storage in AZURE_STORAGE_CONN_STRING, for apps on AMBROSIA's own bindings (see 'ambr register --help')")
	f.IntVar(&o.replica, "replica", -1, "run replica N (0, 1, …) of the instance: replicas share its directory, one primary serves, the others are hot standbys (their apps follow the log) that take over when it fails")
	f.BoolVar(&o.checkpointer, "checkpointer", false, "with --replica: this replica is the instance's checkpointer: it follows the log like a standby, never becomes primary, and takes the checkpoints so the primary never pauses for one (if it stops, the primary checkpoints again)")
	f.DurationVar(&o.leaseTTL, "lease-ttl", engine.DefaultLeaseTTL, "with --replica: a standby takes over from a primary whose lease has not moved for this long (a stalled primary; a dead one releases its lock at once)")
	f.BoolVar(&o.warmStandby, "warm-standby", false, "with --replica: wait for the election with the app idle and recover it when elected, as before hot standbys (for measurements)")
	_ = f.MarkHidden("warm-standby")
	f.IntVar(&o.retain, "retain", 0, "keep only this many newest checkpoints and the log from the oldest of them (0: keep all history, which replay and retro-test use)")
	return cmd
}

func defaultName(app string) string {
	base := filepath.Base(strings.TrimRight(app, "/"))
	return strings.TrimSuffix(base, filepath.Ext(base))
}

func runImmortal(parent context.Context, g *globals, app string, appArgs []string, o runOptions) error {
	name := o.name
	if name == "" {
		name = defaultName(app)
	}
	if !validName.MatchString(name) {
		return usageErrorf("instance name %q: use letters, digits, '.', '_' and '-' (set it with --name)", name)
	}
	if o.appPid != 0 && !o.externalApp {
		return usageErrorf("--app-pid %d: only with --external-app (without it, ambr starts the app and admits only that)", o.appPid)
	}
	if o.appPid < 0 {
		return usageErrorf("--app-pid %d: give the pid of the app process you start", o.appPid)
	}
	if o.limits.ExitsBeforeAttach < 1 || o.limits.DeathsOnRecord < 1 {
		return usageErrorf("--max-exits-before-attach and --max-deaths-per-record must be at least 1")
	}
	if o.retain < 0 {
		return usageErrorf("--retain %d: give 0 (keep everything) or a number of checkpoints", o.retain)
	}
	nondeterminism := engine.NondeterminismStop
	switch o.nondeterminism {
	case "stop":
	case "warn":
		nondeterminism = engine.NondeterminismWarn
	default:
		return usageErrorf("--nondeterminism %q: use stop or warn", o.nondeterminism)
	}
	home := g.Home()
	dir := filepath.Join(home, name)
	if parent == nil {
		parent = context.Background()
	}
	ctx, stop := signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The signal ends ctx; from here on a second Ctrl-C is ignored rather
	// than killing the process halfway through its clean stop.

	recvPort, sendPort := 0, 0
	if o.ports != "" {
		if _, err := fmt.Sscanf(o.ports, "%d,%d", &recvPort, &sendPort); err != nil || recvPort <= 0 || sendPort <= 0 {
			return usageErrorf("--ports %q: give RECV,SEND, two port numbers like 2500,2501", o.ports)
		}
	}
	// Resolve the app first: a run that cannot start leaves no instance.
	var build logfmt.AppBuild
	var err error
	if o.externalApp {
		build = logfmt.AppBuild{Source: app}
	} else if build, err = supervise.Resolve(ctx, app, home, g.stderr); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	if o.replica < -1 {
		return usageErrorf("--replica %d: give a replica number 0, 1, …", o.replica)
	}
	if o.checkpointer && o.replica < 0 {
		return usageErrorf("--checkpointer: give the replica's number too (--replica N): a checkpointer is one of an instance's replicas")
	}
	if o.leaseTTL < 100*time.Millisecond {
		return usageErrorf("--lease-ttl %v: give at least 100ms (the lease is renewed every %v)", o.leaseTTL, engine.DefaultLeaseRenew)
	}
	lock, err := lockRun(dir, o.replica)
	if err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	defer lock.Unlock()
	build.Args = appArgs
	// The command that ran an instance before its upgrade recovers it after
	// one: the MANIFEST's newer build runs instead of the older one given.
	if m, err := layout.ReadManifest(vfsDefault(), dir); err == nil && !o.externalApp {
		if next, ok := upgrade.BuildFor(m, build); ok {
			fmt.Fprintf(g.stderr, "note: %s was upgraded to version %d (build %s, sha256 %s) after running %s; running its current build (name it to silence this note)\n",
				name, m.Version, next.Source, shortHash(next.SHA256), app)
			build = next
		}
	}
	level := slog.LevelInfo
	if o.quiet {
		level = slog.LevelWarn
	}
	logger := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: level, ReplaceAttr: dropTime}))
	child := &supervise.Child{Path: build.Path, Args: appArgs, Stdout: g.stdout, Stderr: g.stderr, Limits: o.limits,
		Describe: func(seq int64) string { return describeLoggedRecord(dir, seq) }}
	policy := engine.SupervisedApp()
	if o.externalApp {
		policy = engine.AppsOfUser(os.Getuid())
		if o.appPid != 0 {
			policy = engine.AppProcess(o.appPid)
		}
	}
	l, err := engine.ListenApp(engine.TCPConfig{RecvPort: recvPort, SendPort: sendPort, Policy: policy, Logger: logger, OnAttach: child.Attached})
	if err != nil {
		return problemErrorf("%v", err)
	}
	defer l.Close()
	if o.ambrosiaReg {
		if err := registerForAmbrosia(ctx, name, dir, l.RecvPort, l.SendPort, o.segmentSize); err != nil {
			return err
		}
	}
	var fsys vfs.FS
	if o.diskFault != "" {
		if fsys, err = faultyFS(o.diskFault); err != nil {
			return usageErrorf("--inject-disk-fault: %v", err)
		}
	}
	registry, peerID, closeRegistry, err := peerSetup(g, o, name)
	if err != nil {
		return err
	}
	defer closeRegistry()
	budget, err := bench.ParseSize(o.appBudget)
	if err != nil || budget < 1<<20 {
		return usageErrorf("--app-budget %q: give a size of at least 1MiB, such as 64MiB", o.appBudget)
	}
	// An app that sent a message over the limit will send it again after
	// every restart (replay reproduces it): stop, naming it.
	appFailed := make(chan error, 1)
	onAppGone := func(gone engine.AppGone) {
		if gone.Oversize != nil {
			during := ""
			if gone.Delivered > 0 {
				during = fmt.Sprintf("record %d", gone.Delivered)
				if d := describeLoggedRecord(dir, gone.Delivered); d != "" {
					during += " (" + d + ")"
				}
			}
			select {
			case appFailed <- &supervise.CrashLoopError{Message: oversizeMessage(gone.Oversize, during)}:
			default:
			}
			return
		}
		child.Gone(gone.Pid, gone.Delivered)
	}
	setProblem := func(peer, msg string) {} // replaced once the status exists
	up := upgrade.NewLive(dir, name)
	statusFile := &runStatusFile{dir: dir, replica: o.replica}
	roleChanged := func() {}               // replaced once the status exists
	buildMoved := func(logfmt.AppBuild) {} // replaced once the status exists
	// A replica takes upgrade requests only while it is primary (see
	// upgrade.Live.Moved).
	up.MayTake = func() bool { return o.replica < 0 || statusFile.isPrimary() }
	opts := engine.Options{Dir: dir, Name: name, Listener: l, SegmentSize: o.segmentSize,
		Nondeterminism: nondeterminism, App: build, Logger: logger, Retain: o.retain, Registry: registry, FS: fsys,
		PlaintextPeers: o.peerTLS == "off", AppBudget: budget, PeerTLS: peerID, PeerAddr: o.peerAddr, OnProblem: func(peer, msg string) { setProblem(peer, msg) },
		OnAppGone: onAppGone, OnUpgrade: up.OnUpgrade, OnBuildMoved: func(b logfmt.AppBuild) { buildMoved(b) }}
	replicaOptions(&opts, dir, o.replica, o.leaseTTL, logger, statusFile, func() { roleChanged() })
	if o.checkpointer {
		opts.Election, opts.Checkpointer = nil, true
	}
	opts.WarmStandby = o.warmStandby
	c, err := engine.New(opts)
	if err != nil {
		return problemErrorf("%v", err)
	}
	status := supervise.RunStatus{ICPid: os.Getpid(), App: build.Path, RecvPort: l.RecvPort, SendPort: l.SendPort, Started: time.Now().UnixNano()}
	var statusMu sync.Mutex
	setStatus := func(f func(*supervise.RunStatus)) {
		statusMu.Lock()
		defer statusMu.Unlock()
		f(&status)
		_ = statusFile.write(status)
	}
	setStatus(func(*supervise.RunStatus) {})
	defer statusFile.remove()
	roleChanged = func() { setStatus(func(*supervise.RunStatus) {}) }
	up.OnSwitched = func(b logfmt.AppBuild) { setStatus(func(s *supervise.RunStatus) { s.App = b.Path }) }
	buildMoved = func(b logfmt.AppBuild) {
		if o.externalApp {
			logger.Warn("the instance was upgraded by its primary: restart your app with its new build; until then it cannot follow", "build", b.Source, "path", b.Path)
			return
		}
		up.Moved(b)
		setStatus(func(s *supervise.RunStatus) { s.App = b.Path })
		child.Switch(b.Path, false)
	}
	setProblem = func(peer, msg string) {
		setStatus(func(s *supervise.RunStatus) {
			if s.Problems == nil {
				s.Problems = map[string]string{}
			}
			s.Problems[peer] = msg
		})
	}
	logger.Info("running", "instance", name, "dir", dir, "app", build.Source, "sha256", shortHash(build.SHA256), "ports", fmt.Sprintf("%d/%d", l.RecvPort, l.SendPort))

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	icErr := make(chan error, 1)
	go func() { icErr <- c.Run(runCtx) }()
	// Live upgrades: of one replica, or (MayTake) by the primary of
	// several, whose followers then switch builds (buildMoved).
	if !o.externalApp {
		up.Serve(runCtx, c, child, logger, build)
	} else if req, ok := upgrade.Pending(dir); ok {
		logger.Warn("an upgrade waits for this instance, but a run with --external-app cannot switch its build: it stays waiting (ambr upgrade NAME --cancel withdraws it)", "to", req.Build.Source)
	}
	child.Env = append(l.Env(), engine.EnvInstance+"="+name)
	child.OnStart = func(pid int) {
		setStatus(func(s *supervise.RunStatus) { s.AppPid, s.AppStarted = pid, time.Now().UnixNano() })
	}
	child.OnExit = func(run supervise.AppRun, next time.Duration, loop *supervise.CrashLoopError) {
		up.AppExited(run)
		setStatus(func(s *supervise.RunStatus) { s.AppPid, s.AppStarted = 0, 0; s.Restarts++ })
		if runCtx.Err() == nil && loop == nil {
			logger.Warn("app exited; restarting it", "reason", exitReason(run.Exit), "attached", run.Attached, "record", run.Record, "in", next)
		}
	}
	childDone := make(chan error, 1)
	if o.externalApp {
		fmt.Fprintf(g.stderr, "coordinator of %s is up; start the app with: %s %s=%s\n", name, strings.Join(l.Env(), " "), engine.EnvInstance, name)
		go func() { <-runCtx.Done(); childDone <- nil }()
	} else {
		go func() { childDone <- child.Run(runCtx) }()
	}

	var runErr error
	childReturned := false
	select {
	case runErr = <-icErr:
	case runErr = <-childDone:
		childReturned = true
	case runErr = <-appFailed:
	case <-ctx.Done():
	}
	cancel()
	if !childReturned {
		<-childDone
	}
	if ctx.Err() == nil && runErr == nil {
		runErr = <-icErr
	}
	if runErr != nil {
		if err := deposedError(runErr); err != nil {
			return err
		}
		var loop *supervise.CrashLoopError
		if errors.As(runErr, &loop) && loop.Refused {
			return usageErrorf("%v", runErr) // exit 2: could not start
		}
		if errors.As(runErr, &loop) {
			return problemErrorf("%v; the log is intact: fix the app and run the same command again (with the fixed build) to recover", runErr)
		}
		if errors.Is(runErr, engine.ErrFatal) {
			return problemErrorf("%v (nothing unlogged was acknowledged; fix the cause and run the same command again to recover)", runErr)
		}
		return problemErrorf("%v", runErr)
	}
	logger.Info("stopped", "instance", name)
	return nil
}

// faultyFS parses OP:N:ERRNO into the real filesystem with a fault.
func faultyFS(spec string) (vfs.FS, error) {
	parts := strings.Split(spec, ":")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%q: want OP:N:ERRNO, like write:100:ENOSPC", spec)
	}
	ops := map[string]vfs.OpKind{"write": vfs.OpWrite, "sync": vfs.OpSync, "create": vfs.OpCreate, "rename": vfs.OpRename}
	op, ok := ops[parts[0]]
	if !ok {
		return nil, fmt.Errorf("operation %q: use write, sync, create or rename", parts[0])
	}
	n, err := strconv.Atoi(parts[1])
	if err != nil || n < 0 {
		return nil, fmt.Errorf("count %q: a non-negative integer", parts[1])
	}
	errs := map[string]error{"ENOSPC": syscall.ENOSPC, "EIO": syscall.EIO}
	e, ok := errs[parts[2]]
	if !ok {
		return nil, fmt.Errorf("error %q: use ENOSPC or EIO", parts[2])
	}
	return vfs.NewErrorFS(vfs.Default(), vfs.ErrorAfter(n, e, op)), nil
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
