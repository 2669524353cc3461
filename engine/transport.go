package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine/connowner"
)

// Environment variables through which a coordinator tells its app where to
// connect. The names follow AMBROSIA's configuration keys.
const (
	EnvReceivePort = "AMBROSIA_IC_RECEIVE_PORT" // the app sends its messages here
	EnvSendPort    = "AMBROSIA_IC_SEND_PORT"    // the coordinator sends records here
	EnvInstance    = "AMBR_INSTANCE"
)

// AppConn is one app's pair of streams: Recv carries the app's messages to
// the coordinator, Send carries records to the app.
type AppConn struct {
	Recv io.ReadCloser
	Send io.WriteCloser
	// Pid is the app process both streams come from (0: not known, as for
	// an app in the same process or where the platform cannot tell).
	Pid int
}

// Close closes both streams.
func (c AppConn) Close() error {
	return errors.Join(c.Recv.Close(), c.Send.Close())
}

// AppListener accepts app connections: over TCP for an app in another
// process, over in-memory pipes for an app hosted in the same process.
type AppListener interface {
	// Accept waits for an app to connect to the receive port and to the
	// send port, and returns the pair.
	Accept(ctx context.Context) (AppConn, error)
	// Env returns the environment an app process needs to find the
	// coordinator.
	Env() []string
	Close() error
}

// AppPolicy says which processes may attach to a TCPListener as the app.
// The app protocol carries no credentials, so the listener resolves each
// loopback connection to the process holding its other end (package
// connowner) and admits it only if every holder passes. Where that cannot
// be resolved (not Linux), every loopback connection is admitted, with one
// warning at the first. The zero value is SupervisedApp().
type AppPolicy struct {
	byUser bool
	root   int // DescendantsOf; 0 with byUser false: this process
	uid    int
}

// SupervisedApp admits only this process and its descendants: for a
// supervisor, the child it started and the child's children.
func SupervisedApp() AppPolicy { return AppPolicy{} }

// AppProcess admits process pid and its descendants: an app started by
// hand whose pid the user named.
func AppProcess(pid int) AppPolicy { return AppPolicy{root: pid} }

// AppsOfUser admits any process of user uid: an app started by hand.
func AppsOfUser(uid int) AppPolicy { return AppPolicy{byUser: true, uid: uid} }

// String says what the policy admits, for warnings.
func (p AppPolicy) String() string {
	switch {
	case p.byUser:
		return fmt.Sprintf("processes of uid %d", p.uid)
	case p.root == 0 || p.root == os.Getpid():
		return "the app this process started"
	default:
		return fmt.Sprintf("pid %d and its children", p.root)
	}
}

func (p AppPolicy) admits(o connowner.Owner) bool {
	if p.byUser {
		return o.UID == p.uid
	}
	root := p.root
	if root == 0 {
		root = os.Getpid()
	}
	return o.AllDescendants(root)
}

// DefaultPairTimeout is how long a TCPListener keeps half of a pair (one
// of the two connections of an app start) waiting for the other half.
const DefaultPairTimeout = 5 * time.Second

// TCPConfig configures a TCPListener.
type TCPConfig struct {
	RecvPort, SendPort int // 0: pick free ones
	// Policy says who may attach; the zero value is SupervisedApp().
	Policy AppPolicy
	// PairTimeout bounds how long half a pair is kept; default
	// DefaultPairTimeout. A whole pair waits for Accept as long as it takes
	// (the coordinator may still be finishing a checkpoint of the app that
	// went before), unless a newer whole pair replaces it.
	PairTimeout time.Duration
	// Logger gets one warning line per refused or dropped connection;
	// default slog.Default().
	Logger *slog.Logger
	// OnAttach, if set, is called with the app's pid when a pair is handed
	// to Accept.
	OnAttach func(pid int)
}

// TCPListener listens for an app on two loopback ports, each on IPv4 and,
// where the machine has it, IPv6: clients resolve localhost either way.
//
// Each app start gets exactly one receive and one send connection, both
// from the same process. A connection from a process the policy does not
// admit, a second connection of a process to the same port, or any
// connection of a process that already attached, is closed with a warning.
// Half a pair waits at most PairTimeout: an app that died between its two
// connects (or any stray connection) cannot wedge the pairing, and a new
// process's first connection replaces it at once.
type TCPListener struct {
	RecvPort, SendPort int
	recv, send         *dualListener

	cfg               TCPConfig
	log               *slog.Logger
	mu                sync.Mutex
	pending           halfPair        // halves of the newest process's pair
	ready             *readyPair      // a whole pair waiting for Accept
	changed           chan struct{}   // closed when ready is set; then replaced
	seen              map[appKey]bool // processes that attached: one pair each
	seenLRU           []appKey
	closed            bool
	warnedUnsupported bool
}

// appKey tells app processes apart across pid reuse.
type appKey struct {
	pid     int
	started uint64
}

type halfPair struct {
	key        appKey
	recv, send net.Conn
	gen        int // bumped on every change: stale timers do nothing
}

type readyPair struct {
	conn AppConn
	key  appKey
}

// ListenTCP listens on the given ports (0: pick free ones), admitting only
// this process's descendants as the app.
func ListenTCP(recvPort, sendPort int) (*TCPListener, error) {
	return ListenApp(TCPConfig{RecvPort: recvPort, SendPort: sendPort})
}

// ListenApp listens for an app as cfg says.
func ListenApp(cfg TCPConfig) (*TCPListener, error) {
	if cfg.PairTimeout <= 0 {
		cfg.PairTimeout = DefaultPairTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	l := &TCPListener{cfg: cfg, log: cfg.Logger, changed: make(chan struct{}), seen: map[appKey]bool{}}
	recv, err := listenDual(cfg.RecvPort, func(c net.Conn) { l.arrive(portRecv, c) })
	if err != nil {
		return nil, fmt.Errorf("listen for the app (receive port %d): %w", cfg.RecvPort, err)
	}
	send, err := listenDual(cfg.SendPort, func(c net.Conn) { l.arrive(portSend, c) })
	if err != nil {
		recv.Close()
		return nil, fmt.Errorf("listen for the app (send port %d): %w", cfg.SendPort, err)
	}
	l.recv, l.send, l.RecvPort, l.SendPort = recv, send, recv.port, send.port
	return l, nil
}

// Env implements AppListener.
func (l *TCPListener) Env() []string {
	return []string{EnvReceivePort + "=" + strconv.Itoa(l.RecvPort), EnvSendPort + "=" + strconv.Itoa(l.SendPort)}
}

// Accept implements AppListener: it returns the next whole pair.
func (l *TCPListener) Accept(ctx context.Context) (AppConn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return AppConn{}, net.ErrClosed
		}
		if r := l.ready; r != nil {
			l.ready = nil
			l.mu.Unlock()
			if l.cfg.OnAttach != nil {
				l.cfg.OnAttach(r.conn.Pid)
			}
			return r.conn, nil
		}
		changed := l.changed
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return AppConn{}, ctx.Err()
		}
	}
}

// Close implements AppListener. Connections not yet accepted are closed.
func (l *TCPListener) Close() error {
	err := errors.Join(l.recv.Close(), l.send.Close())
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		closeHalves(l.pending)
		l.pending = halfPair{gen: l.pending.gen + 1}
		if l.ready != nil {
			l.ready.conn.Close()
			l.ready = nil
		}
		close(l.changed)
	}
	return err
}

type appPort int

const (
	portRecv appPort = iota
	portSend
)

func (p appPort) String() string {
	if p == portRecv {
		return "receive port"
	}
	return "send port"
}

// arrive admits or refuses a new connection on port, at once: the process
// that made it is asked for now, while it holds the connection.
func (l *TCPListener) arrive(port appPort, c net.Conn) {
	owner, err := connowner.Lookup(c)
	var key appKey
	switch {
	case errors.Is(err, connowner.ErrUnsupported):
		l.mu.Lock()
		if !l.warnedUnsupported {
			l.warnedUnsupported = true
			l.log.Warn("cannot tell which process connects to the app ports on " + runtime.GOOS + ": any local process can attach as the app (see README, What is protected)")
		}
		l.mu.Unlock()
	case err != nil:
		l.refuse(port, c, "from a process that could not be identified ("+err.Error()+")")
		return
	case !l.cfg.Policy.admits(owner):
		l.refuse(port, c, fmt.Sprintf("from %s%s: only %s may attach as the app", owner, commands(owner), l.cfg.Policy))
		return
	default:
		key = appKey{pid: owner.Pid(), started: connowner.StartTime(owner.Pid())}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return
	}
	if l.seen[key] && key.pid != 0 {
		l.refuseLocked(port, c, fmt.Sprintf("from pid %d, which already attached as the app: one receive and one send connection per app start", key.pid))
		return
	}
	p := &l.pending
	if (p.recv != nil || p.send != nil) && p.key != key {
		l.log.Warn("the app never completed its pair of connections; dropping them for a newer process's", "pid", p.key.pid, "newer", key.pid)
		closeHalves(*p)
		*p = halfPair{gen: p.gen + 1}
	}
	half := &p.recv
	if port == portSend {
		half = &p.send
	}
	if *half != nil {
		l.refuseLocked(port, c, fmt.Sprintf("from pid %d, a second connection to the same port: one receive and one send connection per app start", key.pid))
		return
	}
	*half, p.key = c, key
	p.gen++
	if p.recv == nil || p.send == nil {
		gen := p.gen
		time.AfterFunc(l.cfg.PairTimeout, func() { l.expireHalf(gen) })
		return
	}
	// A whole pair.
	if l.ready != nil {
		l.log.Warn("an earlier app pair was never taken; closing it for a newer one", "pid", l.ready.key.pid, "newer", key.pid)
		l.ready.conn.Close()
	}
	l.ready = &readyPair{conn: AppConn{Recv: &appRecvConn{Conn: p.recv}, Send: p.send, Pid: key.pid}, key: key}
	l.remember(key)
	*p = halfPair{gen: p.gen + 1}
	close(l.changed)
	l.changed = make(chan struct{})
}

// remember notes that key attached; the last few hundred are kept.
func (l *TCPListener) remember(key appKey) {
	if key.pid == 0 || key.pid == os.Getpid() {
		// Not known, or an app in this very process (tests, hosted apps):
		// its app starts cannot be told apart by process.
		return
	}
	l.seen[key] = true
	l.seenLRU = append(l.seenLRU, key)
	if len(l.seenLRU) > 256 {
		delete(l.seen, l.seenLRU[0])
		l.seenLRU = l.seenLRU[1:]
	}
}

func (l *TCPListener) expireHalf(gen int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &l.pending
	if p.gen != gen || (p.recv == nil && p.send == nil) {
		return
	}
	missing := portSend
	if p.recv == nil {
		missing = portRecv
	}
	l.log.Warn(fmt.Sprintf("the app (pid %d) did not connect to the %s within %v; closing its other connection and waiting for a fresh pair", p.key.pid, missing, l.cfg.PairTimeout))
	closeHalves(*p)
	*p = halfPair{gen: p.gen + 1}
}

func closeHalves(p halfPair) {
	if p.recv != nil {
		p.recv.Close()
	}
	if p.send != nil {
		p.send.Close()
	}
}

func (l *TCPListener) refuse(port appPort, c net.Conn, why string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuseLocked(port, c, why)
}

func (l *TCPListener) refuseLocked(port appPort, c net.Conn, why string) {
	if !l.closed {
		l.log.Warn("refused a connection to the app's " + port.String() + " " + why)
	}
	c.Close()
}

// commands names the owner's programs for a warning: " (nc)".
func commands(o connowner.Owner) string {
	var names []string
	for _, pid := range o.PIDs {
		if n := connowner.Command(pid); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return " (" + strings.Join(names, ", ") + ")"
}

// dualListener is one port on 127.0.0.1 and [::1].
type dualListener struct {
	port int
	ls   []net.Listener
	once sync.Once
	wg   sync.WaitGroup
}

func listenDual(port int, arrive func(net.Conn)) (*dualListener, error) {
	l4, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	d := &dualListener{port: l4.Addr().(*net.TCPAddr).Port, ls: []net.Listener{l4}}
	// IPv6 loopback on the same port, when the machine has IPv6.
	if l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(d.port))); err == nil {
		d.ls = append(d.ls, l6)
	}
	for _, l := range d.ls {
		d.wg.Add(1)
		go d.serve(l, arrive)
	}
	return d, nil
}

// serve hands each connection to arrive, one at a time: resolving a
// connection's process scans /proc, and one scan at a time bounds what a
// flood of connections costs.
func (d *dualListener) serve(l net.Listener, arrive func(net.Conn)) {
	defer d.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		arrive(c)
	}
}

func (d *dualListener) Close() error {
	var errs []error
	d.once.Do(func() {
		for _, l := range d.ls {
			errs = append(errs, l.Close())
		}
		d.wg.Wait()
	})
	return errors.Join(errs...)
}

// PipeListener connects an app in the same process through in-memory pipes:
// the same bytes as over TCP, without the sockets.
type PipeListener struct {
	conns chan AppConn
	done  chan struct{}
	once  sync.Once
}

// NewPipeListener returns a listener for an in-process app.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan AppConn), done: make(chan struct{})}
}

// Dial connects the app side: toIC carries the app's messages, fromIC the
// coordinator's records.
func (p *PipeListener) Dial(ctx context.Context) (toIC io.WriteCloser, fromIC io.ReadCloser, err error) {
	recvIC, recvApp := net.Pipe()
	sendIC, sendApp := net.Pipe()
	select {
	case p.conns <- AppConn{Recv: recvIC, Send: sendIC}:
		return recvApp, sendApp, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-p.done:
		return nil, nil, net.ErrClosed
	}
}

// Accept implements AppListener.
func (p *PipeListener) Accept(ctx context.Context) (AppConn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-ctx.Done():
		return AppConn{}, ctx.Err()
	case <-p.done:
		return AppConn{}, net.ErrClosed
	}
}

// Env implements AppListener; an in-process app needs none.
func (p *PipeListener) Env() []string { return nil }

// Close implements AppListener.
func (p *PipeListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}
