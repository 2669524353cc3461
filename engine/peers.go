package engine

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine/trust"
	"github.com/ambr-dev/ambr/logfmt"
)

// The coordinator network. Each coordinator listens on one TCP port for
// other coordinators and registers it under its instance name. For every
// destination its app sends to, it keeps an outgoing link: look the
// destination up in the registry, dial, say Hello (from, to), read Welcome
// (the sequence number the receiver expects next), then stream messages and
// read acks. Links reconnect with backoff, looking the address up again, so
// a peer that comes back on another port is found. Inbound connections get
// a Welcome from the Core's watermark and their messages go to the Core;
// acks go back once the messages are durably logged.
//
// Every link belongs to one conversation (one app connection): when the app
// reconnects, recovery builds a new Core, and the links start over from the
// receivers' Welcomes.

const (
	peerDialTimeout  = 2 * time.Second
	peerHelloTimeout = 5 * time.Second
	peerBackoffMin   = 20 * time.Millisecond
	peerBackoffMax   = time.Second
)

// frameQueue is an unbounded queue of frames for one connection, written by
// its own goroutine so the coordinator's loop never blocks on a peer. Frames
// are appended straight into fixed-size chunks, which the writer sends with
// one writev and then recycles: no allocation or regrowth per frame, and no
// copy beyond the one into the chunk. A message too large for a Messages
// frame is not copied at all: its frame's head goes into a chunk and the
// message itself is queued by reference, as a chunk that is never appended
// to nor recycled (byRef).
type frameQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond
	chunks  [][]byte // frames waiting, in order; appended to at the last
	byRef   []bool   // byRef[i]: chunks[i] is a message's own bytes, not the queue's
	free    [][]byte // empty chunks for reuse
	closed  bool
	closing bool // close the connection once the queue is written
	// traced: an outgoing link's queue, whose writes are a hop of
	// hoptrace (an inbound link's carry only acks).
	traced bool
}

const (
	frameChunkSize = 256 << 10
	// maxFreeChunks caps what a queue keeps for reuse: a burst must not
	// pin its peak size for the life of the connection.
	maxFreeChunks = 16
)

func newFrameQueue() *frameQueue {
	q := &frameQueue{}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// room returns the chunk to append a frame of n bytes to, the last one if
// it has room. Called with q.mu held.
func (q *frameQueue) room(n int) []byte {
	if k := len(q.chunks); k > 0 && !q.byRef[k-1] && cap(q.chunks[k-1])-len(q.chunks[k-1]) >= n {
		return q.chunks[k-1]
	}
	var c []byte
	if n > frameChunkSize {
		c = make([]byte, 0, n) // a frame of its own
	} else if k := len(q.free); k > 0 {
		c, q.free = q.free[k-1], q.free[:k-1]
	} else {
		c = make([]byte, 0, frameChunkSize)
	}
	q.chunks = append(q.chunks, c)
	q.byRef = append(q.byRef, false)
	return c
}

// pushRef queues msg, whose frame's head the caller just appended, by
// reference: it is written from where it is, so it must not change until
// the queue is done with it (the Core keeps a message unchanged while it
// may be resent). Called with q.mu held.
func (q *frameQueue) pushRef(msg []byte) {
	q.chunks = append(q.chunks, msg[:len(msg):len(msg)])
	q.byRef = append(q.byRef, true)
}

// push queues a whole frame.
func (q *frameQueue) push(frame []byte) {
	q.mu.Lock()
	if !q.closed {
		c := q.room(len(frame))
		q.chunks[len(q.chunks)-1] = append(c, frame...)
	}
	q.mu.Unlock()
	q.cond.Signal()
}

// maxRunFrame bounds the messages of one Messages frame: it fits a queue
// chunk and the receiver's read buffer, where it is parsed in place.
const maxRunFrame = 128 << 10

// pushMessages queues msgs, which are in order: runs of consecutive
// sequence numbers as Messages frames of up to maxRunFrame, a larger
// message as a Message frame of its own.
func (q *frameQueue) pushMessages(msgs []PeerSend) {
	q.mu.Lock()
	if !q.closed {
		for len(msgs) > 0 {
			if len(msgs[0].Msg) > maxRunFrame {
				c := q.room(logfmt.PeerMessageHeaderSize)
				q.chunks[len(q.chunks)-1] = logfmt.AppendPeerMessageHeader(c, msgs[0].Seq, len(msgs[0].Msg))
				q.pushRef(msgs[0].Msg)
				msgs = msgs[1:]
				continue
			}
			n, size := 1, len(msgs[0].Msg)
			for n < len(msgs) && msgs[n].Seq == msgs[n-1].Seq+1 && size+len(msgs[n].Msg) <= maxRunFrame {
				size += len(msgs[n].Msg)
				n++
			}
			c := q.room(logfmt.PeerMessagesFrameSize(size))
			c = logfmt.AppendPeerMessagesHeader(c, msgs[0].Seq, n, size)
			for _, m := range msgs[:n] {
				c = append(c, m.Msg...)
			}
			q.chunks[len(q.chunks)-1] = c
			msgs = msgs[n:]
		}
	}
	q.mu.Unlock()
	q.cond.Signal()
}

// pushLast queues a final frame: once everything queued is written, the
// writer closes the connection.
func (q *frameQueue) pushLast(frame []byte) {
	q.mu.Lock()
	if !q.closed {
		c := q.room(len(frame))
		q.chunks[len(q.chunks)-1] = append(c, frame...)
		q.closing = true
	}
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *frameQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Broadcast()
}

// drainTo writes frames to conn until the queue is closed or a write fails.
func (q *frameQueue) drainTo(conn net.Conn) {
	var out, iov [][]byte
	var byRef []bool
	for {
		q.mu.Lock()
		for len(q.chunks) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			q.mu.Unlock()
			return
		}
		out, q.chunks = q.chunks, out[:0]
		byRef, q.byRef = q.byRef, byRef[:0]
		closing := q.closing
		q.mu.Unlock()
		// WriteTo consumes its slice and nils the elements it has written,
		// in the array it shares: give it a copy, keep out to recycle.
		iov = append(iov[:0], out...)
		var err error
		if bw, ok := conn.(batchWriter); ok {
			err = bw.writeBatch(iov)
			clear(iov)
		} else {
			bufs := net.Buffers(iov)
			_, err = bufs.WriteTo(conn)
		}
		if err != nil || closing {
			conn.Close()
			return
		}
		if q.traced {
			hoptrace.Mark(hoptrace.PeerWritten)
		}
		q.mu.Lock()
		for i, c := range out {
			if !byRef[i] && cap(c) == frameChunkSize && len(q.free) < maxFreeChunks {
				q.free = append(q.free, c[:0])
			}
			out[i] = nil // and a message by reference is the queue's no longer
		}
		q.mu.Unlock()
	}
}

// outLink is the outgoing connection to one destination.
type outLink struct {
	v    *conversation
	peer string

	mu     sync.Mutex
	gen    int64
	queue  *frameQueue     // of the current connection; nil while down
	failed *LostInputError // the link is stopped for good

	tried string // the address last tried (owned by run)
}

func (v *conversation) startLink(peer string) {
	if _, ok := v.links[peer]; ok {
		return
	}
	l := &outLink{v: v, peer: peer}
	v.links[peer] = l
	v.wg.Add(1)
	go func() {
		defer v.wg.Done()
		l.run()
	}()
}

// send queues messages on the connection of generation gen, if it is still
// the current one.
func (l *outLink) send(gen int64, msgs []PeerSend) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gen == gen && l.queue != nil {
		l.queue.pushMessages(msgs)
	}
}

func (l *outLink) run() {
	v := l.v
	backoff := peerBackoffMin
	lastComplaint := ""
	complain := func(msg string) {
		if msg != lastComplaint {
			v.c.log.Info("peer link: "+msg, "peer", l.peer)
			lastComplaint = msg
		}
	}
	for {
		select {
		case <-v.done:
			return
		default:
		}
		up, err := l.connectOnce()
		var lost *LostInputError
		if errors.As(err, &lost) {
			v.c.log.Error("peer link stopped: "+err.Error(), "peer", l.peer)
			v.c.problem(l.peer, err.Error())
			return
		}
		var refused *refusedError
		if errors.As(err, &refused) && err.Error() != lastComplaint {
			v.c.log.Warn("peer link: "+err.Error(), "peer", l.peer)
			lastComplaint = err.Error()
		} else if err != nil {
			complain(err.Error())
		}
		if up > time.Second {
			backoff = peerBackoffMin
		}
		if !l.backoffWait(backoff) {
			return
		}
		backoff = min(2*backoff, peerBackoffMax)
	}
}

// connectOnce runs one connection to the destination, returning how long it
// was up.
func (l *outLink) connectOnce() (time.Duration, error) {
	v := l.v
	addr, err := v.c.registry.Lookup(l.peer)
	if err != nil {
		return 0, fmt.Errorf("waiting for %s to register: %v", l.peer, err)
	}
	l.tried = addr
	d := net.Dialer{Timeout: peerDialTimeout}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-v.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, fmt.Errorf("cannot reach %s at %s: %v", l.peer, addr, err)
	}
	defer conn.Close()
	go func() {
		<-ctx.Done()
		conn.Close()
	}()
	if id := v.c.opts.PeerTLS; id != nil {
		tc := newGatheredTLSClient(conn, id.ClientConfig(l.peer))
		hctx, hcancel := context.WithTimeout(ctx, peerHelloTimeout)
		err := tc.HandshakeContext(hctx)
		hcancel()
		if err != nil {
			return 0, &refusedError{fmt.Errorf("TLS with %s at %s failed: %v", l.peer, addr, err)}
		}
		conn = tc
	}
	var epoch uint64
	if v.c.primacy != nil {
		epoch = v.c.primacy.Epoch()
	}
	if _, err := conn.Write(logfmt.AppendPeerHelloAt(nil, v.c.opts.Name, l.peer, epoch)); err != nil {
		return 0, fmt.Errorf("hello to %s: %v", l.peer, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(peerHelloTimeout))
	r := logfmt.NewPeerReader(conn)
	f, err := r.Next()
	if err != nil {
		return 0, fmt.Errorf("no welcome from %s at %s: %v", l.peer, addr, err)
	}
	if f.Kind == logfmt.PeerReject {
		return 0, &refusedError{fmt.Errorf("%s at %s refused: %s", l.peer, addr, f.Reason)}
	}
	if f.Kind != logfmt.PeerWelcome {
		return 0, fmt.Errorf("%s at %s answered hello with frame kind %d", l.peer, addr, f.Kind)
	}
	_ = conn.SetReadDeadline(time.Time{})
	start := time.Now()
	q := newFrameQueue()
	q.traced = true
	l.mu.Lock()
	l.gen++
	gen := l.gen
	l.queue = q
	l.mu.Unlock()
	go q.drainTo(conn)
	go l.watchRegistry(ctx, cancel, addr)
	v.post(event{peerUp: l.peer, seq: f.Seq, gen: gen, link: l})
	v.c.log.Debug("peer link up", "peer", l.peer, "addr", addr, "expect", f.Seq)
	for {
		f, err := r.Next()
		if err != nil {
			break
		}
		if f.Kind == logfmt.PeerAck {
			v.post(event{peerAck: l.peer, seq: f.Seq})
		}
	}
	l.mu.Lock()
	if l.gen == gen {
		l.queue = nil
	}
	l.mu.Unlock()
	q.close()
	v.post(event{peerDown: l.peer, gen: gen})
	if err := l.failure(); err != nil {
		return time.Since(start), err
	}
	return time.Since(start), nil
}

// stop ends the link for good with err: it tells the receiver why (a Lost
// frame), closes the connection once that is written, and does not
// reconnect.
func (l *outLink) stop(err *LostInputError) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failed = err
	if l.queue != nil {
		l.queue.pushLast(logfmt.AppendPeerLost(nil, err.Acked, err.Expect))
	}
}

func (l *outLink) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failed == nil {
		return nil
	}
	return l.failed
}

// refusedError marks a connection the peer's coordinator refused, or whose
// proof of identity failed: worth a warning, unlike a peer that is down.
type refusedError struct{ error }

func (e *refusedError) Unwrap() error { return e.error }

// inLink is an accepted connection from another coordinator.
type inLink struct {
	conn  net.Conn
	from  string
	queue *frameQueue
	free  chan *inBatch // batches the loop is done with, for reuse
}

// inBatch is the messages read from an inbound connection in one go: what
// had arrived by the time the first one was read, up to a limit. Message i
// is arena[ends[i-1]:ends[i]], with sender sequence number seqs[i].
type inBatch struct {
	seqs  []int64
	ends  []int
	arena []byte
	// owned, if not nil, is a giant message's own buffer (PeerReader.Owned),
	// which ends with arena, the batch's one message: the Core may keep
	// it, so the batch is never recycled.
	owned []byte
}

// Limits of one inbound batch: large enough that the loop handles many
// messages per event, small enough to keep a batch's memory bounded.
const (
	maxInBatchMsgs  = 4096
	maxInBatchBytes = 4 << 20
)

func (b *inBatch) add(seq int64, msg []byte) {
	b.arena = append(b.arena, msg...)
	b.seqs = append(b.seqs, seq)
	b.ends = append(b.ends, len(b.arena))
}

// addRun adds count messages, back to back in msgs (checked by the frame
// reader), with sequence numbers seq, seq+1, …: one copy for all of them.
func (b *inBatch) addRun(seq int64, count int, msgs []byte) {
	base := len(b.arena)
	b.arena = append(b.arena, msgs...)
	_ = logfmt.EachPeerMessage(msgs, count, func(end int) {
		b.seqs = append(b.seqs, seq)
		b.ends = append(b.ends, base+end)
		seq++
	})
}

func (b *inBatch) full() bool {
	return len(b.ends) >= maxInBatchMsgs || len(b.arena) >= maxInBatchBytes
}

// batch returns an empty batch, reusing one the loop handed back.
func (in *inLink) batch() *inBatch {
	select {
	case b := <-in.free:
		b.seqs, b.ends, b.arena = b.seqs[:0], b.ends[:0], b.arena[:0]
		return b
	default:
		return &inBatch{seqs: make([]int64, 0, 256), ends: make([]int, 0, 256), arena: make([]byte, 0, 64<<10)}
	}
}

// recycle hands a handled batch back to the connection's reader.
func (in *inLink) recycle(b *inBatch) {
	if b.owned != nil || cap(b.arena) > 2*maxInBatchBytes {
		return // the Core's (owned), or grown by a giant message: let it go
	}
	select {
	case in.free <- b:
	default:
	}
}

// acceptPeers hands the coordinator's greeted connections to this
// conversation until it ends.
func (v *conversation) acceptPeers() {
	defer v.wg.Done()
	for {
		select {
		case g := <-v.c.inbound:
			v.wg.Add(1)
			go func() {
				defer v.wg.Done()
				v.serveInbound(g)
			}()
		case <-v.done:
			return
		}
	}
}

func (v *conversation) serveInbound(g *greeted) {
	conn, r := g.conn, g.r
	defer g.release()
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-v.done:
			conn.Close()
		case <-stop:
		}
	}()
	in := &inLink{conn: conn, from: g.from, queue: newFrameQueue(), free: make(chan *inBatch, 4)}
	reply := make(chan int64, 1)
	v.post(event{peerHello: in, reply: reply})
	var expect int64
	select {
	case expect = <-reply:
	case <-v.done:
		return
	}
	if expect < 0 {
		_, _ = conn.Write(logfmt.AppendPeerReject(nil, fmt.Sprintf("%s is not ready: its first start is not complete", v.c.opts.Name)))
		return
	}
	_ = conn.SetWriteDeadline(time.Now().Add(peerHelloTimeout))
	if _, err := conn.Write(logfmt.AppendPeerSeq(nil, logfmt.PeerWelcome, expect)); err != nil {
		return
	}
	_ = conn.SetWriteDeadline(time.Time{})
	r.Open()
	grown := false
	go in.queue.drainTo(conn)
	defer in.queue.close()
	idle := v.c.opts.PeerIdleTimeout
	for {
		// One event per batch: the first message, then every whole one
		// already received, so a busy link costs the loop one event per
		// read rather than one per message. Before the read that waits,
		// the app must have room for more (backpressure) and the link has
		// its idle deadline.
		v.waitForAppRoom()
		_ = conn.SetReadDeadline(time.Now().Add(idle))
		b := in.batch()
	frames:
		for {
			f, err := r.Next()
			if err != nil {
				if len(b.ends) > 0 {
					v.post(event{peerMsg: in, batch: b})
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					v.c.log.Debug("peer link: idle; closing it (the sender reconnects when it has something to send)", "peer", in.from, "idle", idle)
				}
				if !errors.Is(err, net.ErrClosed) {
					v.post(event{peerGone: in})
				}
				return
			}
			switch f.Kind {
			case logfmt.PeerMessage:
				hoptrace.Mark(hoptrace.PeerRead)
				if own := r.Owned(); own != nil {
					// A giant message in a buffer of its own: handed to
					// the Core as it is, in a batch of its own, not copied.
					if len(b.ends) > 0 {
						v.post(event{peerMsg: in, batch: b})
						b = in.batch()
					}
					b.seqs, b.ends = append(b.seqs, f.Seq), append(b.ends, len(f.Msg))
					b.arena, b.owned = f.Msg, own
					break frames
				}
				b.add(f.Seq, f.Msg)
			case logfmt.PeerMessages:
				hoptrace.Mark(hoptrace.PeerRead)
				b.addRun(f.Seq, f.Count, f.Msg)
			case logfmt.PeerLost:
				if len(b.ends) > 0 {
					v.post(event{peerMsg: in, batch: b})
				}
				msg := fmt.Sprintf("this instance lost input it had acknowledged: %s says it was told its messages up to %d were durably logged here, but this log ends at its message %d "+
					"(the log was damaged, or the instance directory restored from an older copy); %s cannot resend them and has stopped its link here: "+
					"restore this directory from a copy whose log holds them, then restart both", in.from, f.Acked, f.Seq-1, in.from)
				v.c.log.Error(msg, "peer", in.from)
				v.c.problem(in.from, msg)
				v.post(event{peerGone: in})
				return
			default:
				if len(b.ends) > 0 {
					v.post(event{peerMsg: in, batch: b})
				}
				v.c.log.Warn("peer link: unexpected frame; dropping the connection", "peer", in.from, "kind", f.Kind)
				v.post(event{peerGone: in})
				return
			}
			if b.full() || !r.Buffered() {
				break
			}
		}
		v.post(event{peerMsg: in, batch: b})
		if !grown {
			// Traffic: a read buffer that holds whole runs of messages.
			if r.Grow() != nil {
				return
			}
			grown = true
		}
	}
}

// greeted is an inbound connection whose peer has proven its name (TLS)
// and said hello for this instance.
type greeted struct {
	conn    net.Conn
	r       *logfmt.PeerReader
	from    string
	release func() // frees its place under the connection cap
}

// acceptLoop accepts coordinator connections and greets each on its own
// goroutine: at most maxGreeting at once, and at most MaxPeerConns
// connections in all, so that neither silent nor lying connections can use
// up memory or goroutines. A greeted connection waits up to
// peerHelloTimeout for a conversation (the app may be down); the sender
// retries after.
func (c *Coordinator) acceptLoop(ln net.Listener, done <-chan struct{}) {
	greeting := make(chan struct{}, maxGreeting)
	conns := make(chan struct{}, c.opts.MaxPeerConns)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		select {
		case conns <- struct{}{}:
		default:
			c.warnLimited("peer port: too many connections", "peer port: refused a connection: %d peer connections are open, the most this coordinator takes (Options.MaxPeerConns)", c.opts.MaxPeerConns)
			conn.Close()
			continue
		}
		release := sync.OnceFunc(func() { <-conns })
		select {
		case greeting <- struct{}{}:
		default:
			c.warnLimited("peer port: too many hellos", "peer port: refused a connection: %d connections are already saying hello", maxGreeting)
			conn.Close()
			release()
			continue
		}
		go func() {
			g, err := c.greet(conn)
			<-greeting
			if err != nil {
				c.warnLimited(err.Error(), "peer port: refused a connection from %s: %v", conn.RemoteAddr(), err)
				conn.Close()
				release()
				return
			}
			g.release = release
			select {
			case c.inbound <- g:
			case <-done:
				conn.Close()
				release()
			case <-time.After(peerHelloTimeout):
				// No conversation (the app is down): the peer retries.
				conn.Close()
				release()
			}
		}()
	}
}

// maxGreeting bounds the connections saying hello at once.
const maxGreeting = 64

// greet checks who is on an inbound connection: the TLS handshake (its
// certificate from the CA), then a hello that claims the name the
// certificate carries and is for this instance. Each step has the hello
// deadline, and nothing larger than a hello is read.
func (c *Coordinator) greet(raw net.Conn) (*greeted, error) {
	_ = raw.SetDeadline(time.Now().Add(peerHelloTimeout))
	conn := raw
	certName := ""
	if id := c.opts.PeerTLS; id != nil {
		// A TLS record starts with its content type, 22 for a handshake:
		// anything else is a peer without TLS, or not a peer.
		var first [1]byte
		if _, err := io.ReadFull(raw, first[:]); err != nil {
			return nil, fmt.Errorf("closed before saying anything: %v", err)
		}
		if first[0] != 22 {
			return nil, errors.New("it does not speak TLS (a coordinator run with --peer-tls off, or not a coordinator); this one requires TLS with a certificate from its registry's CA")
		}
		tc := tls.Server(&prefixConn{Conn: raw, prefix: first[:]}, id.ServerConfig())
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("TLS handshake failed (a certificate from another CA, expired, or none): %v", err)
		}
		name, err := trust.PeerName(tc.ConnectionState())
		if err != nil {
			return nil, err
		}
		conn, certName = tc, name
	}
	r := logfmt.NewPeerReader(conn)
	f, err := r.Next()
	if err == nil && f.Kind != logfmt.PeerHello {
		err = fmt.Errorf("frame kind %d instead of hello", f.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("it did not say hello: %v", err)
	}
	if certName != "" && f.From != certName {
		_, _ = conn.Write(logfmt.AppendPeerReject(nil, fmt.Sprintf("your certificate names instance %q, not %q", certName, f.From)))
		return nil, fmt.Errorf("its hello claims to be instance %q, but its certificate names %q", f.From, certName)
	}
	if f.To != c.opts.Name {
		_, _ = conn.Write(logfmt.AppendPeerReject(nil, fmt.Sprintf("this is instance %s, not %s (the registry is stale; it will be updated)", c.opts.Name, f.To)))
		return nil, fmt.Errorf("its hello (from %s) is for instance %s", f.From, f.To)
	}
	if f.From == c.opts.Name {
		return nil, fmt.Errorf("its hello claims to be this instance, %s", f.From)
	}
	if seen := c.sawEpoch(f.From, f.Epoch); f.Epoch != 0 && f.Epoch < seen {
		_, _ = conn.Write(logfmt.AppendPeerReject(nil, fmt.Sprintf("%s at epoch %d is not its primary: epoch %d has said hello here since (a newer primary runs)", f.From, f.Epoch, seen)))
		return nil, fmt.Errorf("its hello is from %s at epoch %d, older than epoch %d seen before: a deposed primary", f.From, f.Epoch, seen)
	}
	_ = raw.SetDeadline(time.Time{})
	return &greeted{conn: conn, r: r, from: f.From}, nil
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// waitForAppRoom blocks an inbound link's reader while the app has more
// than the budget of input waiting for it.
func (v *conversation) waitForAppRoom() { v.flow.waitInput(v.done) }

// sawEpoch records that peer said hello at epoch and returns the newest
// epoch seen from it (0: it runs without replicas).
func (c *Coordinator) sawEpoch(peer string, epoch uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.epochs == nil {
		c.epochs = map[string]uint64{}
	}
	if epoch > c.epochs[peer] {
		c.epochs[peer] = epoch
	}
	return c.epochs[peer]
}
