package engine

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/trust"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// DefaultSegmentSize is the log size at which a coordinator rolls to a new
// segment and checkpoints, unless configured otherwise. A checkpoint holds
// the unacknowledged output too, which under load can be as large as the
// sender's window: at 16 MiB, checkpoints doubled what a busy sender wrote
// (ambr bench, echo, 64 KiB: 212 → 311 MB/s at 64 MiB). Recovery replays at
// most one segment, about 0.3 s at the measured replay rate.
const DefaultSegmentSize = 64 << 20

// Options configure a Coordinator.
type Options struct {
	// Dir is the instance directory (usually <home>/<name>).
	Dir string
	// Name is the instance name.
	Name string
	// FS does all disk work; default the real filesystem.
	FS vfs.FS
	// Listener accepts the app's connections.
	Listener AppListener
	// SegmentSize is the roll-over and checkpoint trigger; default
	// DefaultSegmentSize.
	SegmentSize int64
	// Now is the clock for logged times; default time.Now.
	Now func() time.Time
	// Nondeterminism is what to do when a replay differs from the log.
	Nondeterminism NondeterminismPolicy
	// App identifies the build that runs, recorded in the MANIFEST.
	App logfmt.AppBuild
	// Logger receives progress and warnings; default slog.Default().
	Logger *slog.Logger
	// PeerAddr is where the coordinator listens for other coordinators;
	// default 127.0.0.1:0 (a free loopback port).
	PeerAddr string
	// Registry maps instance names to coordinator addresses; default a
	// FileRegistry in <home>/.registry, home being Dir's parent.
	Registry Registry
	// Retain is how many of the newest checkpoints to keep, with the log
	// segments from the oldest of them on; older ones are deleted once a new
	// checkpoint is durable. 0, the default, keeps all history: the tools
	// (replay, retro-test) live on it. Keep at least 2 so that a damaged
	// newest checkpoint can fall back to the one before it.
	Retain int
	// OnStatus, if set, is called after each batch of work with the
	// coordinator's status.
	OnStatus func(Status)
	// OnUpgrade, if set, is called with the outcome of an upgrade asked for
	// with PrepareUpgrade: nil once the new build's converted checkpoint is
	// durable (the MANIFEST names the new build and version), else why it
	// failed (the app died or refused before its checkpoint); the instance
	// then still holds the old version's state.
	OnUpgrade func(err error)
	// OnBuildMoved, if set, is called when a follower (a standby, the
	// checkpointer) finds that the instance was upgraded to another build
	// by its primary: the caller restarts the app with build, which then
	// recovers from the newest (converted) checkpoint. See follow.go.
	OnBuildMoved func(build logfmt.AppBuild)
	// OnProblem, if set, is called when the link with a peer stops on a
	// condition that needs an operator (lost acknowledged input), with a
	// message that says what to do.
	OnProblem func(peer, msg string)

	// PeerTLS is this instance's identity on coordinator links: TLS 1.3
	// with client certificates both ways, and a hello may claim only the
	// name its certificate carries. Nil: New takes it from the local CA
	// under the FileRegistry's directory, made on first use.
	PeerTLS *trust.Identity
	// PlaintextPeers turns TLS between coordinators off (for
	// measurements): hellos are then taken on trust.
	PlaintextPeers bool
	// MaxPeerConns caps the inbound coordinator connections open at once;
	// default DefaultMaxPeerConns.
	MaxPeerConns int
	// PeerIdleTimeout closes an inbound coordinator link that carried
	// nothing for this long (its sender reconnects when it has something
	// to send); default DefaultPeerIdleTimeout.
	PeerIdleTimeout time.Duration
	// AppBudget bounds the bytes waiting for the app: input logged but not
	// yet taken by the app, and output the app sent that its receivers have
	// not acknowledged. Beyond it the coordinator stops reading from its
	// peers (their TCP windows fill and their senders keep their output) or
	// from its app (its writes wait). Default DefaultAppBudget.
	AppBudget int64

	// Election, when several replicas share Dir, makes this coordinator a
	// standby until it is elected primary (nil: one replica, the primary
	// from the start). Replica is this replica's number, for messages;
	// OnRole, if set, is told each role change ("standby", "primary").
	Election Election
	Replica  int
	OnRole   func(role string, epoch uint64)
	// Checkpointer makes this replica the instance's checkpointer: it never
	// becomes primary; it follows the log like a standby and takes the
	// checkpoints (at each new segment) so that the primary never pauses
	// for one. While it holds CHECKPOINTER.lock the primary does not
	// checkpoint; when it dies the primary does again.
	Checkpointer bool
	// WarmStandby makes a standby wait for the election with its app idle
	// and recover it (checkpoint and log) when elected, as before hot
	// standbys: for measurements (ambr bench failover --warm).
	WarmStandby bool

	// OnAppGone, if set, is called when the app went away: a supervisor
	// uses it to tell a crash loop (see AppGone).
	OnAppGone func(AppGone)
}

// Defaults of the limits in Options.
const (
	DefaultMaxPeerConns    = 1024
	DefaultPeerIdleTimeout = 2 * time.Minute
	DefaultAppBudget       = 64 << 20
)

// Status is a snapshot of a running coordinator, for displays.
type Status struct {
	Phase string
	// CheckpointBusy says a checkpoint is asked for or being written.
	CheckpointBusy bool
	NextSeq        int64
	Checkpoint     uint64
	Writer         WriterStats
}

// Coordinator runs one immortal's coordinator: it accepts its app, recovers
// the instance from disk, and serves the conversation until the app goes
// away, then waits for the app to come back and recovers again.
type Coordinator struct {
	opts     Options
	log      *slog.Logger
	registry Registry
	inbound  chan *greeted
	// PeerAddr is the address other coordinators reach this one at, once
	// Run has started listening.
	peerAddr atomicString

	// primacy is held while this replica is primary (nil with one
	// replica): every write that can count goes through it.
	primacy Primacy
	// rs is the replica machinery (follow.go).
	rs replicaState

	mu      sync.Mutex
	upgrade *pendingUpgrade      // asked for, for the next app connection
	epochs  map[string]uint64    // the newest epoch each peer said hello at
	warned  map[string]time.Time // warnLimited's last line per key
	muted   map[string]int       // lines warnLimited left out since
}

// pendingUpgrade is an upgrade asked for with PrepareUpgrade.
type pendingUpgrade struct {
	build   logfmt.AppBuild
	version uint32 // the version the instance moves to
}

// PrepareUpgrade makes the next app connection's recovery an upgrade to
// build, which must carry the current code and its next version
// (immortal.Upgrade): it replays on the current code, converts the state
// and checkpoints it; the MANIFEST then records build, and the version
// moves up by one. The caller restarts the app with build; Options.OnUpgrade
// says how it went. A new PrepareUpgrade replaces one not yet taken.
func (c *Coordinator) PrepareUpgrade(build logfmt.AppBuild) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upgrade = &pendingUpgrade{build: build}
}

// CancelUpgrade withdraws an upgrade not yet taken by an app connection,
// reporting whether there was one: false once an app connection took it
// (it is under way, and Options.OnUpgrade will say how it went).
func (c *Coordinator) CancelUpgrade() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	had := c.upgrade != nil
	c.upgrade = nil
	return had
}

// finishUpgrade records an upgrade's outcome: on success the new build is
// the one that runs from now on.
func (c *Coordinator) finishUpgrade(up *pendingUpgrade, err error) {
	if err == nil {
		c.mu.Lock()
		c.opts.App = up.build
		c.mu.Unlock()
		c.log.Info("upgraded", "to", up.build.Source, "version", up.version)
	} else {
		c.log.Warn("upgrade failed; the instance keeps its version", "to", up.build.Source, "reason", err)
	}
	if c.opts.OnUpgrade != nil {
		c.opts.OnUpgrade(err)
	}
}

func shortSHA(s string) string { return s[:min(len(s), 12)] }

// takeUpgradeFor takes the pending upgrade for the app connection of
// process pid, if that process runs the new build: an app of the old build
// that happens to connect first (restarting after a crash) gets a plain
// recovery, and the upgrade waits for the new one. A pid of 0 (not known)
// takes it.
func (c *Coordinator) takeUpgradeFor(pid int) *pendingUpgrade {
	c.mu.Lock()
	defer c.mu.Unlock()
	up := c.upgrade
	if up == nil || pid > 0 && !runsBinary(pid, up.build.Path) {
		return nil
	}
	c.upgrade = nil
	return up
}

// runsBinary reports whether process pid executes the file at path (Linux:
// /proc/PID/exe). Where that cannot be told, it reports true.
func runsBinary(pid int, path string) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return true
	}
	want, err := filepath.EvalSymlinks(path)
	if err != nil {
		want = path
	}
	return exe == want || exe == path
}

// app returns the build that runs the instance now.
func (c *Coordinator) app() logfmt.AppBuild {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opts.App
}

// problem reports a condition of the link with peer that needs an
// operator, through Options.OnProblem.
func (c *Coordinator) problem(peer, msg string) {
	if c.opts.OnProblem != nil {
		c.opts.OnProblem(peer, msg)
	}
}

// warnInterval is how often warnLimited repeats a warning of one kind.
const warnInterval = 10 * time.Second

// warnLimited logs a warning of kind key at most once per warnInterval,
// with how many were left out since: a peer that retries a refused
// connection, or a flood of them, costs one line, not one per attempt.
func (c *Coordinator) warnLimited(key, format string, args ...any) {
	c.mu.Lock()
	if c.warned == nil {
		c.warned, c.muted = map[string]time.Time{}, map[string]int{}
	}
	now := time.Now()
	if t, ok := c.warned[key]; ok && now.Sub(t) < warnInterval {
		c.muted[key]++
		c.mu.Unlock()
		return
	}
	n := c.muted[key]
	c.warned[key], c.muted[key] = now, 0
	c.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	if n > 0 {
		msg += fmt.Sprintf(" (and %d more like it in the last %v)", n, warnInterval)
	}
	c.log.Warn(msg)
}

// atomicString is a string safe to read while Run sets it.
type atomicString struct {
	mu sync.Mutex
	s  string
}

func (a *atomicString) set(s string) { a.mu.Lock(); a.s = s; a.mu.Unlock() }
func (a *atomicString) get() string  { a.mu.Lock(); defer a.mu.Unlock(); return a.s }

// PeerAddr returns where other coordinators reach this one ("" before Run
// listens).
func (c *Coordinator) PeerAddr() string { return c.peerAddr.get() }

// ErrFatal marks errors after which the coordinator must not go on (a disk
// fault, a damaged log, nondeterminism under the stop policy). Nothing
// unsynced was acknowledged; fix the cause and start again to recover.
var ErrFatal = errors.New("coordinator stopped")

// errAppGone ends a conversation whose app disconnected.
var errAppGone = errors.New("the app disconnected")

// New returns a coordinator for opts.
func New(opts Options) (*Coordinator, error) {
	if opts.Listener == nil {
		return nil, errors.New("engine: Options.Listener is required")
	}
	if opts.Name == "" {
		return nil, errors.New("engine: Options.Name is required")
	}
	if opts.Dir == "" {
		return nil, errors.New("engine: Options.Dir is required")
	}
	if opts.FS == nil {
		opts.FS = vfs.Default()
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = DefaultSegmentSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.PeerAddr == "" {
		opts.PeerAddr = "127.0.0.1:0"
	}
	if opts.Registry == nil {
		opts.Registry = FileRegistry{Dir: DefaultRegistryDir(filepath.Dir(opts.Dir))}
	}
	if opts.MaxPeerConns <= 0 {
		opts.MaxPeerConns = DefaultMaxPeerConns
	}
	if opts.PeerIdleTimeout <= 0 {
		opts.PeerIdleTimeout = DefaultPeerIdleTimeout
	}
	if opts.AppBudget <= 0 {
		opts.AppBudget = DefaultAppBudget
	}
	if opts.PlaintextPeers {
		opts.PeerTLS = nil
	} else if opts.PeerTLS == nil {
		fr, ok := opts.Registry.(FileRegistry)
		if !ok {
			return nil, errors.New("engine: Options.PeerTLS is required with a registry other than a FileRegistry (or set PlaintextPeers)")
		}
		ca, err := trust.Local(fr.Dir)
		if err != nil {
			return nil, fmt.Errorf("engine: the local CA for coordinator TLS: %w", err)
		}
		if opts.PeerTLS, err = ca.Identity(opts.Name); err != nil {
			return nil, fmt.Errorf("engine: the certificate of instance %s: %w", opts.Name, err)
		}
	} else if opts.PeerTLS.Name != opts.Name {
		return nil, fmt.Errorf("engine: Options.PeerTLS is the identity of instance %s, not %s", opts.PeerTLS.Name, opts.Name)
	}
	return &Coordinator{opts: opts, log: opts.Logger.With("instance", opts.Name), registry: opts.Registry, inbound: make(chan *greeted)}, nil
}

// Run serves app connections until ctx is cancelled (then it returns nil)
// or a fatal error occurs (then the error wraps ErrFatal).
//
// With an Election, the coordinator is a hot standby until it is elected:
// its app follows the primary's log as it is committed, and takes over
// without a recovery (follow.go). With Checkpointer, it follows for good
// and takes the checkpoints.
func (c *Coordinator) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.rs.cancel = cancel
	defer c.stopPeers()
	switch {
	case c.opts.Checkpointer:
		release, err := c.lockCheckpointer(ctx)
		if err != nil || release == nil {
			return err
		}
		defer release()
	case c.opts.Election != nil:
		c.startCampaign(ctx)
		defer c.resign()
		if c.opts.WarmStandby {
			p, err := c.electedOr(<-c.rs.elected)
			if p == nil {
				return err
			}
			if err := c.promote(p); err != nil {
				return err
			}
		}
	default:
		if err := c.startPeers(); err != nil {
			return err
		}
	}
	for {
		conn, p, err := c.acceptApp(ctx)
		if p != nil {
			if err := c.promote(p); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			if err := c.deposed(nil); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		err = c.serve(ctx, conn)
		for errors.Is(err, errServeAgain) {
			err = c.serve(ctx, conn) // promoted before the app got anything: serve it as primary
		}
		conn.Close()
		switch {
		case c.deposed(err) != nil:
			return c.deposed(err)
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errAppGone):
			c.log.Info("app disconnected; waiting for it to reconnect", "reason", err)
			if g := (*AppGoneError)(nil); errors.As(err, &g) && c.opts.OnAppGone != nil {
				c.opts.OnAppGone(g.AppGone)
			}
		case errors.Is(err, errFollowAgain):
			c.log.Warn(err.Error())
		default:
			return err
		}
	}
}

// startPeers listens for other coordinators and registers the address:
// what a primary does (once).
func (c *Coordinator) startPeers() error {
	if c.rs.peersStop != nil {
		return nil
	}
	if err := mkdirAllDurable(c.opts.FS, filepath.Join(c.opts.Dir, layout.VersionDir(0))); err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	ln, err := net.Listen("tcp", c.opts.PeerAddr)
	if err != nil {
		return fmt.Errorf("%w: listen for other coordinators on %s: %w", ErrFatal, c.opts.PeerAddr, err)
	}
	addr := ln.Addr().String()
	c.peerAddr.set(addr)
	if err := c.registry.Register(c.opts.Name, addr); err != nil {
		ln.Close()
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	acceptDone := make(chan struct{})
	acceptExited := make(chan struct{})
	go func() {
		defer close(acceptExited)
		c.acceptLoop(ln, acceptDone)
	}()
	c.rs.peersStop = func() {
		close(acceptDone)
		ln.Close()
		<-acceptExited
		_ = c.registry.Unregister(c.opts.Name, addr)
	}
	return nil
}

// stopPeers undoes startPeers.
func (c *Coordinator) stopPeers() {
	if c.rs.peersStop != nil {
		c.rs.peersStop()
		c.rs.peersStop = nil
	}
}

// event is something that happened on another goroutine of a conversation.
type event struct {
	msg      *logfmt.Message
	msgBuf   []byte // msg's buffer, room in front included (Core.AppMessageIn)
	state    []byte // checkpoint state
	asked    int64  // of a Checkpoint: the control records sent when it was read
	durable  int64
	ckptDone uint64
	err      error // fatal
	appErr   error // the app connection ended

	peerUp, peerDown, peerAck string  // an outgoing link's destination
	seq, gen                  int64   // Welcome's expect / Ack's or message's seq; link generation
	peerHello                 *inLink // a sender said hello; answer on reply
	reply                     chan int64
	peerMsg, peerGone         *inLink
	batch                     *inBatch // of peerMsg
	link                      *outLink // of peerUp
	probe                     *probeResult
	flushAcks                 bool // the ack delay ran out
}

// conversation is one app connection's worth of state.
type conversation struct {
	c        *Coordinator
	core     *Core
	manifest *logfmt.Manifest
	events   chan event
	done     chan struct{}
	writer   *LogWriter
	sender   *appSender
	flow     *flow
	upgrade  *pendingUpgrade // until its checkpoint is durable
	// upgraded is set by a checkpoint writer once a MANIFEST naming the
	// upgrade's build and version is durable: the upgrade is done then,
	// even if the conversation ends before the loop hears of it.
	upgraded atomic.Bool
	// replaying is set while a streamed recovery reads the log (replayLog):
	// the app's output is not held to the budget then (readApp).
	replaying atomic.Bool
	appPid    int
	ckptWG    sync.WaitGroup

	// The coordinator network of this conversation (owned by the loop).
	links   map[string]*outLink
	linkGen map[string]int64
	inlinks map[string]*inLink
	wg      sync.WaitGroup // link goroutines

	// fw is set while the conversation follows the primary's log (a hot
	// standby, a checkpointer): nothing is written, nothing sent.
	fw *followState

	// Delayed acknowledgements (owned by the loop): the newest durable
	// sequence number not yet acknowledged to each sender, the last one
	// that was, and the timer that flushes them (see peerAckDelay).
	pendingAcks map[string]int64
	sentAcks    map[string]int64
	ackTimer    *time.Timer

	// stateSize is the size of the newest checkpoint state the instance
	// holds (recovered from, or taken since): the app's next checkpoint is
	// read into a buffer of about that size at once (readCheckpointState).
	stateSize atomic.Int64
}

// peerAckDelay and peerAckEvery bound how long, and over how many
// messages, the acknowledgement of a sender's messages may wait. An ack
// frees the sender's output buffer and nothing else: no call waits for it.
// Sent at once, it is written beside the messages of the next call and
// read beside them at the other end (two link goroutines woken for one),
// on a call's path; gathered, it costs one frame per delay per sender
// instead of one per batch (delayed acknowledgement, as TCP's).
const (
	peerAckDelay = 5 * time.Millisecond
	peerAckEvery = 4096
)

// ack acknowledges sender's messages up to seq: at once when peerAckEvery
// of them wait, else within peerAckDelay, with whatever comes meanwhile.
func (v *conversation) ack(sender string, seq int64) {
	if v.pendingAcks == nil {
		v.pendingAcks, v.sentAcks = map[string]int64{}, map[string]int64{}
	}
	if seq <= v.pendingAcks[sender] || seq <= v.sentAcks[sender] {
		return
	}
	v.pendingAcks[sender] = seq
	if seq-v.sentAcks[sender] >= peerAckEvery {
		v.sendAck(sender)
		return
	}
	if v.ackTimer == nil {
		v.ackTimer = time.AfterFunc(peerAckDelay, func() { v.post(event{flushAcks: true}) })
	}
}

// flushAcks sends every acknowledgement that waits.
func (v *conversation) flushAcks() {
	for sender := range v.pendingAcks {
		v.sendAck(sender)
	}
}

// sendAck sends sender's waiting acknowledgement on its current inbound
// connection. With none, it is dropped: a sender that connects again
// learns what is durable from its Welcome.
func (v *conversation) sendAck(sender string) {
	seq := v.pendingAcks[sender]
	delete(v.pendingAcks, sender)
	if in := v.inlinks[sender]; in != nil {
		in.queue.push(logfmt.AppendPeerSeq(nil, logfmt.PeerAck, seq))
		v.sentAcks[sender] = seq
	}
}

// onDurable is the log writer's report of a sync: to the loop for its
// bookkeeping, and to the app sender directly, so that the records it
// holds go to the app without a round trip through the loop. The sender is
// told last: of the goroutines a sync wakes, the one woken last runs first
// (it takes the waker's place when the waker waits), and a call's result
// waits for the sender, not for the loop.
func (v *conversation) onDurable(seq int64) {
	v.post(event{durable: seq})
	v.sender.logDurable(seq)
}

func (v *conversation) post(e event) {
	select {
	case v.events <- e:
	case <-v.done:
	}
}

func (c *Coordinator) serve(ctx context.Context, conn AppConn) (err error) {
	if c.primacy == nil && (c.opts.Election != nil || c.opts.Checkpointer) {
		return c.serveFollowing(ctx, conn)
	}
	fsys := c.opts.FS
	logDir := filepath.Join(c.opts.Dir, layout.VersionDir(0))
	recover := recoverInstance
	// Without replicas nothing is sealed before the app gets the log: it is
	// streamed to the app while it is read (replayLog). A replica that
	// takes over seals the log it read first.
	stream := c.primacy == nil && c.opts.Election == nil
	if stream {
		recover = recoverCheckpoint
	} else if c.opts.Election != nil {
		recover = recoverUnderCheckpointer
	}
	rec, err := recover(fsys, c.opts.Dir)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	for _, n := range rec.notes {
		c.log.Warn("recovery: " + n)
	}
	logged := len(rec.notes)
	up := c.takeUpgradeFor(conn.Pid)
	rec.upgrading = up != nil
	if err := c.sealRecovered(rec); err != nil {
		if up != nil {
			c.finishUpgrade(up, err)
		}
		return err
	}
	v := &conversation{c: c, events: make(chan event, 1024), done: make(chan struct{}),
		links: map[string]*outLink{}, linkGen: map[string]int64{}, inlinks: map[string]*inLink{}}
	var framed []byte // the recovered checkpoint's buffer, once the Core's
	v.core = NewCore(CoreConfig{SenderGates: true, Name: c.opts.Name, SegmentSize: c.opts.SegmentSize, Now: c.opts.Now, Nondeterminism: c.opts.Nondeterminism,
		Upgrade: up != nil && !rec.fresh})
	if rec.fresh {
		now := c.opts.Now().UnixNano()
		v.manifest = &logfmt.Manifest{Instance: c.opts.Name, CommitterID: randomCommitter(), FirstSegment: 1, App: c.app(), Created: now}
		if c.primacy != nil {
			v.manifest.Epoch = c.primacy.Epoch()
		}
		v.core.cfg.CommitterID = v.manifest.CommitterID
		v.core.StartFresh()
		c.log.Info("first start")
	} else {
		v.manifest = rec.manifest
		if !rec.upgrading && v.manifest.UpgradeVersion != v.manifest.Version {
			// An upgrade under way when its replica died ended with it.
			m := *v.manifest
			m.UpgradeVersion = m.Version
			v.manifest = &m
		}
		v.core.cfg.CommitterID = v.manifest.CommitterID
		v.core.StartRecoveryFramed(rec.checkpoint, rec.framed, rec.newSegment)
		framed = rec.framed
		v.stateSize.Store(int64(len(rec.checkpoint.State)))
		// The state is the Core's now, and garbage once sent to the app:
		// recovery keeps the rest of the checkpoint, not its many MiB.
		ck := *rec.checkpoint
		ck.State, rec.checkpoint, rec.framed = nil, &ck, nil
		if !stream {
			for _, r := range rec.records {
				if err := v.core.ReplayRecord(r); err != nil {
					return fmt.Errorf("%w: recover: %w", ErrFatal, err)
				}
			}
			v.core.FinishRecovery()
			c.publishCommitted(v.core.NextSeq() - 1) // sealed and synced: standbys may follow it
			c.log.Info("recovering", "checkpoint", rec.checkpoint.Number, "records", len(rec.records))
		}
	}
	if app := c.app(); app.SHA256 != "" && app.SHA256 != v.manifest.App.SHA256 || app.Source != "" && v.manifest.App.Source == "" {
		v.manifest.App = app
	}
	rec.records = nil
	if up != nil {
		if rec.fresh {
			// Nothing to upgrade: the first start runs the new build.
			c.finishUpgrade(up, nil)
		} else {
			m := *v.manifest
			m.App = up.build
			up.version = m.Version + 1
			m.Version, m.UpgradeVersion = up.version, up.version
			v.manifest, v.upgrade = &m, up
			c.log.Info("upgrading", "to", up.build.Source, "sha256", shortSHA(up.build.SHA256), "version", up.version)
		}
	}

	v.flow = newFlow(c.opts.AppBudget)
	v.sender = newAppSender(conn.Send, v.flow, func(err error) { v.post(event{appErr: err}) })
	v.sender.recycleAfter(framed)
	v.writer = NewFencedLogWriter(fsys, logDir, c.fence(), v.onDurable, func(err error) { v.post(event{err: err}) })
	v.appPid = conn.Pid
	v.replaying.Store(stream && !rec.fresh)
	go v.readApp(conn.Recv)

	defer func() {
		if up := v.upgrade; up != nil {
			if v.upgraded.Load() { // the checkpoint writers are done (below)
				c.finishUpgrade(up, nil)
				return
			}
			reason := err
			if reason == nil {
				reason = errors.New("the coordinator stopped")
			}
			c.finishUpgrade(up, fmt.Errorf("the new build did not checkpoint its converted state: %w", reason))
		}
	}()
	defer func() {
		if v.ackTimer != nil {
			v.ackTimer.Stop()
		}
		close(v.done)
		conn.Close()
		v.sender.close()
		werr := v.writer.Close()
		v.ckptWG.Wait()
		for _, in := range v.inlinks {
			in.queue.close()
		}
		v.wg.Wait()
		if werr != nil && err != nil && !errors.Is(err, ErrFatal) {
			err = fmt.Errorf("%w: %w", ErrFatal, werr)
		}
	}()

	if stream && !rec.fresh {
		if err := v.replayLog(ctx, rec, logged); err != nil {
			return err
		}
	}
	v.wg.Add(1)
	go v.acceptPeers()
	v.startPrimaryProbe()

	for {
		if err := v.dispatch(v.core.Ready()); err != nil {
			return err
		}
		select {
		case e := <-v.events:
			if err := v.handleBurst(e); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// handleBurst handles e and then up to 4096 more events already waiting,
// so that the Core's Ready is taken once per burst rather than per event.
func (v *conversation) handleBurst(e event) error {
	if err := v.handle(e); err != nil {
		return err
	}
	for range 4096 {
		select {
		case e := <-v.events:
			if err := v.handle(e); err != nil {
				return err
			}
		default:
			return nil
		}
	}
	return nil
}

func (v *conversation) handle(e event) error {
	switch {
	case e.err != nil:
		return fmt.Errorf("%w: %w", ErrFatal, e.err)
	case e.appErr != nil:
		return v.appGone(v.appPid, e.appErr)
	case e.msg != nil:
		hoptrace.Mark(hoptrace.LoopApp)
		if e.msg.Type == logfmt.TypeCheckpoint && e.asked < v.core.CheckpointAskedAt() {
			// Read before the request for a checkpoint was on its way: it
			// holds a state from before what the request stands for.
			return v.appGone(v.appPid, errors.New("protocol error: app sent a Checkpoint before it was asked for one"))
		}
		if err := v.core.AppMessageIn(*e.msg, e.msgBuf, e.state); err != nil {
			return v.appGone(v.appPid, fmt.Errorf("protocol error: %w", err))
		}
	case e.peerUp != "":
		v.linkGen[e.peerUp] = e.gen
		var lost *LostInputError
		if err := v.core.PeerConnected(e.peerUp, e.seq); errors.As(err, &lost) {
			e.link.stop(lost)
		}
	case e.peerDown != "":
		if v.linkGen[e.peerDown] == e.gen {
			v.core.PeerDisconnected(e.peerDown)
		}
	case e.peerAck != "":
		v.core.PeerAcked(e.peerAck, e.seq)
	case e.peerHello != nil:
		in := e.peerHello
		if old := v.inlinks[in.from]; old != nil && old != in && v.core.AcceptingPeers() {
			old.queue.close()
			old.conn.Close()
		}
		if !v.core.AcceptingPeers() {
			e.reply <- -1 // not yet: the sender retries
			return nil
		}
		v.inlinks[in.from] = in
		e.reply <- v.core.ExpectFrom(in.from)
	case e.peerMsg != nil:
		hoptrace.Mark(hoptrace.LoopPeer)
		in, b := e.peerMsg, e.batch
		defer in.recycle(b) // the Core copies what it keeps
		if v.inlinks[in.from] != in {
			return nil // a replaced connection's leftovers
		}
		var err error
		if b.owned != nil {
			err = v.core.PeerMessageOwned(in.from, b.seqs[0], b.owned, b.arena)
		} else {
			err = v.core.PeerMessages(in.from, b.seqs, b.ends, b.arena)
		}
		if err != nil {
			v.c.log.Warn("peer link: dropping the connection", "peer", in.from, "reason", err)
			in.conn.Close()
		}
	case e.peerGone != nil:
		if v.inlinks[e.peerGone.from] == e.peerGone {
			delete(v.inlinks, e.peerGone.from)
		}
	case e.durable != 0:
		hoptrace.Mark(hoptrace.LoopDurable)
		v.core.LogDurable(e.durable)
		v.c.publishCommitted(e.durable)
	case e.probe != nil:
		v.handleProbe(e.probe)
	case e.flushAcks:
		v.ackTimer = nil
		v.flushAcks()
	case e.ckptDone != 0:
		v.core.CheckpointDurable(e.ckptDone)
		if up := v.upgrade; up != nil {
			// The converted state is durable and the MANIFEST names the
			// new build: the upgrade is done.
			v.upgrade = nil
			v.c.finishUpgrade(up, nil)
		}
	}
	return nil
}

func (v *conversation) dispatch(rd Ready) error {
	for _, w := range rd.Warnings {
		v.c.log.Warn(w)
	}
	if rd.Fatal != nil {
		return fmt.Errorf("%w: %w", ErrFatal, rd.Fatal)
	}
	// A record's bytes count in the flow from here as its delivery, queued
	// in the app sender with the record it waits for (SenderGates) until
	// it is written to the app: its logging is not counted apart.
	if v.writer != nil {
		v.writer.Submit(rd.Log)
	} else if len(rd.Log) > 0 {
		return fmt.Errorf("%w: internal error: a following replica made a log record (seq %d)", ErrFatal, rd.Log[0].Record.Seq)
	}
	if ck := rd.Checkpoint; ck != nil {
		v.stateSize.Store(int64(len(ck.State)))
	}
	if ck := rd.Checkpoint; ck != nil && v.fw != nil {
		v.writeFollowerCheckpoint(ck)
	} else if ck != nil {
		m := *v.manifest
		m.Checkpoint = ck.Number
		m.Updated = v.c.opts.Now().UnixNano()
		if len(m.Builds) == 0 || m.Builds[len(m.Builds)-1].App.SHA256 != m.App.SHA256 || m.Builds[len(m.Builds)-1].App.Source != m.App.Source {
			m.Builds = append(append([]logfmt.BuildRecord(nil), m.Builds...), logfmt.BuildRecord{App: m.App, FromCheckpoint: ck.Number, Version: m.Version})
		}
		v.manifest = &m
		upgrading := v.upgrade != nil // m names the upgrade's build and version
		v.ckptWG.Add(1)
		go func() {
			defer v.ckptWG.Done()
			fsys, dir := v.c.opts.FS, v.c.opts.Dir
			logDir := filepath.Join(dir, layout.VersionDir(0))
			if err := writeCheckpointFile(fsys, logDir, ck, v.c.fence()); err != nil && !errors.Is(err, errCheckpointExists) {
				v.post(event{err: err})
				return
			}
			var drop []string
			if v.c.opts.Retain > 0 {
				m.FirstSegment, drop = retention(fsys, logDir, ck.Number, v.c.opts.Retain)
			}
			if err := fenced(v.c.fence(), func() error {
				if v.c.primacy != nil {
					mergeCheckpointer(fsys, dir, &m)
				}
				return writeManifest(fsys, dir, &m)
			}); err != nil {
				v.post(event{err: err})
				return
			}
			if upgrading {
				v.upgraded.Store(true)
			}
			// Only once the MANIFEST no longer needs them.
			for _, name := range drop {
				if err := fsys.Remove(filepath.Join(logDir, name)); err != nil {
					v.c.log.Warn("retention: could not remove an old file", "file", name, "error", err)
				}
			}
			v.post(event{ckptDone: ck.Number})
		}()
	}
	if len(rd.ToApp) > 0 {
		hoptrace.Mark(hoptrace.LoopToApp)
	}
	// The Core's own count too: a following replica's records are
	// durable when fed, with no log writer to say so.
	v.sender.logDurable(v.core.Durable())
	v.sender.send(rd.ToApp, rd.ToAppGate)
	v.flow.setUnacked(v.core.UnackedBytes())
	for _, p := range rd.NeedPeers {
		if v.fw != nil {
			v.fw.laterPeers = append(v.fw.laterPeers, p)
			continue
		}
		v.startLink(p)
	}
	// Acknowledgements first, the messages last: the link goroutine woken
	// last runs first, and a message is on a call's path, an ack is not.
	for _, a := range rd.PeerAcks {
		v.ack(a.Peer, a.Seq)
	}
	for sends := rd.PeerSends; len(sends) > 0; {
		// A run of messages to one peer goes to its queue in one step.
		peer, n := sends[0].Peer, 1
		for n < len(sends) && sends[n].Peer == peer {
			n++
		}
		if l := v.links[peer]; l != nil {
			hoptrace.Mark(hoptrace.LoopPeerSend)
			l.send(v.linkGen[peer], sends[:n])
		}
		sends = sends[n:]
	}
	if v.c.opts.OnStatus != nil {
		st := Status{Phase: v.core.Phase(), CheckpointBusy: v.core.CheckpointBusy(), NextSeq: v.core.NextSeq(), Checkpoint: v.manifest.Checkpoint}
		if v.writer != nil {
			st.Writer = v.writer.Stats()
		}
		if v.fw != nil {
			st.Phase = "following"
		}
		v.c.opts.OnStatus(st)
	}
	return nil
}

// readApp reads the app's messages and posts them as events.
func (v *conversation) readApp(r io.Reader) {
	mr := logfmt.NewOwningMessageReader(r)
	for {
		start := mr.Offset() // where the next message starts: its state was read
		if !v.replaying.Load() {
			// Not while a streamed recovery reads the log (found in review):
			// what the replay sends other instances is acknowledged only once
			// they listen, which a peer replaying too does only after its
			// own replay; held to the budget, two such replays wait for
			// each other for good. So a replay's output to others is kept
			// whole until they acknowledge it (as much as the replay
			// sends), and the budget holds again from the replay's end.
			v.flow.waitOutput(v.done)
		}
		m, err := mr.Next()
		hoptrace.Mark(hoptrace.CoordRead)
		if err != nil {
			if err == io.EOF {
				err = errors.New("connection closed")
			}
			v.post(event{appErr: explainAppReadError(r, start, mr.Offset(), err)})
			return
		}
		cp := logfmt.Message{Type: m.Type, Data: m.Data} // its own buffer: the Core keeps it
		buf := mr.Buf()                                  // with room in front, see Core.AppMessageIn
		var state []byte
		var asked int64
		if m.Type == logfmt.TypeCheckpoint {
			asked = v.sender.controls.Load() // after its header was read
			if state, err = readCheckpointState(mr.State(), m, v.stateSize.Load(), v.sender.takeSpare()); err != nil {
				v.post(event{appErr: fmt.Errorf("read checkpoint state: %w", err)})
				return
			}
		}
		v.post(event{msg: &cp, msgBuf: buf, state: state, asked: asked})
	}
}

// maxStatePrealloc bounds the announced length readCheckpointState reads
// toward (a larger one is read as io.ReadAll does), and stateFirstRead
// what it allocates before any of the state has arrived beyond what the
// instance already holds: an app that announces a gigabyte and sends
// nothing costs 4 MiB, or a quarter more than its last checkpoint's state,
// not the gigabyte (found in review).
const (
	maxStatePrealloc = 1 << 30
	stateFirstRead   = 4 << 20
)

// readCheckpointState reads the state bytes after the app's Checkpoint
// message m: io.ReadAll's result, read into a buffer that grows toward the
// announced size by doublings that end on it, as the bytes arrive, instead
// of one grown (and copied) from 512 bytes up, which for the 64 MiB
// checkpoint an app takes on becoming primary lay between the app's answer
// and the instance being live. known is the size of the instance's last
// checkpoint state: the first buffer holds a quarter more than that, so
// that a state about as large as the last is read into one buffer, with
// no doubling (each a copy, and fresh pages to fault in, on the way to
// becoming live). A spare buffer (appSender.takeSpare) takes a state it
// can hold that is no less than half its size, instead of a new one.
func readCheckpointState(r io.Reader, m logfmt.Message, known int64, spare []byte) ([]byte, error) {
	n, err := m.CheckpointStateLen()
	if err != nil || n > maxStatePrealloc {
		return io.ReadAll(r)
	}
	size := int(n)
	var b []byte
	if spare != nil && size <= cap(spare) && size >= cap(spare)/2 {
		b = spare[:0]
	} else {
		first := int(max(stateFirstRead, min(known+known/4, maxStatePrealloc)))
		b = make([]byte, 0, min(size, first))
	}
	for len(b) < size {
		if len(b) == cap(b) {
			nb := make([]byte, len(b), min(size, 2*cap(b)))
			copy(nb, b)
			b = nb
		}
		k, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+k]
		switch {
		case err == io.EOF:
			return b, nil // fewer than announced, as io.ReadAll returns them
		case err != nil:
			return nil, err
		}
	}
	rest, err := io.ReadAll(r) // nothing, unless more than announced
	if len(rest) > 0 {
		b = append(b, rest...)
	}
	return b, err
}

// appSender writes to the app from its own goroutine, through an unbounded
// queue, so the coordinator's loop never blocks on a slow app. Deliveries
// of log records may be queued before the records are durable (see
// CoreConfig.SenderGates): the log writer tells the sender of each sync
// itself (logDurable), so a record reaches the app one goroutine hand-off
// after its fdatasync instead of three (writer → loop → sender).
type appSender struct {
	flow   *flow // counts what is queued and not yet written
	mu     sync.Mutex
	cond   *sync.Cond
	queue  []appItem
	closed bool
	// durable is the newest log record reported durable: an item whose
	// gate is above it waits, and so does everything behind it.
	durable int64
	done    chan struct{}
	// delivered is the newest log record written to the app (AppGone).
	delivered atomic.Int64
	// recycle is a buffer to hand back once the item that ends where it
	// ends is written (recycleAfter), and spare the buffer handed back.
	recycle []byte
	spare   atomic.Pointer[[]byte]
	// written counts the bytes written to the app, all told; controls the
	// control records (Core.CheckpointAskedAt), counted before they are
	// written, so that an answer is never read before its request counts.
	written  atomic.Int64
	controls atomic.Int64
}

// recycleAfter asks the sender to hand buf back (takeSpare) once it has
// written the chunk queued from it that ends where buf ends: a recovering
// coordinator's checkpoint, whose state buffer, its pages faulted in
// already, then takes the checkpoint the app answers with (the same size,
// about) instead of a fresh buffer of many MiB, on the way to being live.
// Nothing else may hold buf.
func (s *appSender) recycleAfter(buf []byte) {
	if len(buf) == 0 {
		return
	}
	s.mu.Lock()
	s.recycle = buf
	s.mu.Unlock()
}

// takeSpare returns the buffer recycleAfter asked for once it is free, and
// forgets it; nil before then (or when none was asked for).
func (s *appSender) takeSpare() []byte {
	if b := s.spare.Swap(nil); b != nil {
		return *b
	}
	return nil
}

// appItem is bytes for the app and the log record they wait for (0: none).
type appItem struct {
	b    []byte
	gate int64
}

func newAppSender(w io.Writer, f *flow, onErr func(error)) *appSender {
	s := &appSender{flow: f, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.loop(w, onErr)
	return s
}

// send queues chunks in order; gates, if not nil, is the log record each
// waits for (Ready.ToAppGate).
func (s *appSender) send(chunks [][]byte, gates []int64) {
	if len(chunks) == 0 {
		return
	}
	var n int64
	for _, c := range chunks {
		n += int64(len(c))
	}
	s.flow.addToApp(n)
	s.mu.Lock()
	wasReady := s.readyLocked()
	for i, c := range chunks {
		var g int64
		if gates != nil {
			g = gates[i]
		}
		s.queue = append(s.queue, appItem{b: c, gate: g})
	}
	ready := s.readyLocked()
	s.mu.Unlock()
	if ready && !wasReady {
		s.cond.Signal()
	}
}

// logDurable reports that the log is durable up to record seq. The log
// writer calls it after each sync (only after its fence check), and so
// may the loop with the Core's own count: it never runs ahead of a
// reported sync.
func (s *appSender) logDurable(seq int64) {
	s.mu.Lock()
	if seq <= s.durable {
		s.mu.Unlock()
		return
	}
	wasReady := s.readyLocked()
	s.durable = seq
	ready := s.readyLocked()
	s.mu.Unlock()
	if ready && !wasReady {
		s.cond.Signal()
	}
}

// readyLocked reports whether the head of the queue may be written.
func (s *appSender) readyLocked() bool {
	return len(s.queue) > 0 && s.queue[0].gate <= s.durable
}

func (s *appSender) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cond.Signal()
	<-s.done
}

// appSendBuffer is the app sender's write buffer (a variable for tests).
var appSendBuffer = 256 << 10

func (s *appSender) loop(w io.Writer, onErr func(error)) {
	defer close(s.done)
	bw := bufio.NewWriterSize(w, appSendBuffer)
	var batch []appItem
	for {
		s.mu.Lock()
		for !s.readyLocked() && !s.closed {
			s.cond.Wait()
		}
		if s.closed {
			s.mu.Unlock()
			return
		}
		// The items that may go now: up to the first whose record is not
		// yet durable (gates rise along the queue).
		k := 1
		for k < len(s.queue) && s.queue[k].gate <= s.durable {
			k++
		}
		batch = append(batch[:0], s.queue[:k]...)
		clear(s.queue[:k])
		s.queue = s.queue[k:]
		if len(s.queue) == 0 {
			s.queue = nil // let the array go rather than creep along it
		}
		recycle := s.recycle
		s.mu.Unlock()
		hoptrace.Mark(hoptrace.AppSend)
		var n int64
		for _, it := range batch {
			if isControlRecord(it.b) {
				s.controls.Add(1)
			}
			if _, err := bw.Write(it.b); err != nil {
				onErr(fmt.Errorf("send to app: %w", err))
				return
			}
			// Read before the buffer may be handed back (found in review:
			// the app's next checkpoint is read over this header).
			seq := wireRecordSeq(it.b)
			// Written, or copied into bw: it.b is free.
			if recycle != nil && len(it.b) > 0 && &it.b[len(it.b)-1] == &recycle[len(recycle)-1] {
				s.mu.Lock()
				s.recycle = nil
				s.mu.Unlock()
				spare := recycle
				s.spare.Store(&spare)
				recycle = nil
			}
			if seq > 0 {
				s.delivered.Store(seq)
			}
			n += int64(len(it.b))
		}
		clear(batch)
		if err := bw.Flush(); err != nil {
			onErr(fmt.Errorf("send to app: %w", err))
			return
		}
		s.written.Add(n) // before the flow wakes anyone who reads it
		s.flow.addToApp(-n)
	}
}

// retention decides which files a retention of keep checkpoints drops once
// checkpoint newest is durable: checkpoints older than the keep-th newest
// valid one, damaged ones among them, and the segments before it. Only
// checkpoints that read back valid count as kept, so a torn file left by a
// crash never stands in for the fallback. It returns the first segment kept.
func retention(fsys vfs.FS, logDir string, newest uint64, keep int) (uint64, []string) {
	ckpts, err := layout.ListCheckpoints(fsys, logDir)
	if err != nil {
		return 1, nil
	}
	var kept []uint64
	invalid := map[uint64]bool{}
	for i := len(ckpts) - 1; i >= 0 && len(kept) < keep; i-- {
		n := ckpts[i]
		if n > newest {
			continue
		}
		if _, err := layout.ReadCheckpointFile(fsys, filepath.Join(logDir, layout.CheckpointName(n))); err != nil {
			invalid[n] = true
			continue
		}
		kept = append(kept, n)
	}
	if len(kept) < keep {
		return 1, nil
	}
	oldest := kept[len(kept)-1]
	var drop []string
	for _, n := range ckpts {
		if n < oldest || (invalid[n] && n < newest) {
			drop = append(drop, layout.CheckpointName(n))
		}
	}
	segs, _ := layout.ListSegments(fsys, logDir)
	for _, n := range segs {
		if n < oldest {
			drop = append(drop, layout.SegmentName(n))
		}
	}
	return oldest, drop
}

// mkdirAllDurable creates dir and its missing parents, syncing each parent
// after an entry was added to it, so that the directories survive a crash.
func mkdirAllDurable(fsys vfs.FS, dir string) error {
	if _, err := fsys.Stat(dir); err == nil {
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAllDurable(fsys, parent); err != nil {
			return err
		}
	}
	if err := fsys.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if parent != dir {
		return fsys.SyncDir(parent)
	}
	return nil
}

func randomCommitter() int32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return int32(binary.LittleEndian.Uint32(b[:]) & 0x7fffffff)
}
