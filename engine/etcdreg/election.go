package etcdreg

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/ambr-dev/ambr/engine"
)

// DefaultLeaseTTL is the lease of a primary elected in etcd. etcd raises
// TTLs below about two seconds (its minimum follows its election timeout),
// so this is also about the least it takes.
const DefaultLeaseTTL = 2 * time.Second

// Election elects the primary among the replicas of one instance in etcd:
// an etcd election per instance (concurrency.Election, its key under
// /ambr/elections/NAME), won by the replica whose key has the lowest create
// revision; that revision, monotonic across elections, is the epoch. The
// epoch goes into the instance directory's EPOCH file (engine.TakeEpoch),
// so every write of a deposed primary is fenced as with the file election.
//
// A primary that loses its lease stops before a successor can have been
// elected: its fence fails once 2/3 of the TTL has passed since the last keep-alive
// etcd answered (the lease was renewed at the latest when that answer was
// sent, so it lasts at least TTL from then, less the reply's travel time;
// keep-alives go out every TTL/3, so one may be late),
// or at once when etcd says the session is gone. A successor is elected at
// the earliest TTL after the last renewal: the worst-case takeover after a
// primary's machine is lost is TTL plus the campaign's round trips.
type Election struct {
	Registry *Registry
	Instance string
	// Dir is the instance directory (shared storage across hosts).
	Dir     string
	Replica int
	// TTL is the lease; default DefaultLeaseTTL.
	TTL time.Duration
	// OnWait, if set, is told once why the replica waits as a standby.
	OnWait func(reason string)
}

var _ engine.Election = (*Election)(nil)

// Campaign implements engine.Election.
func (e *Election) Campaign(ctx context.Context) (engine.Primacy, error) {
	ttl := e.TTL
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	cli := e.Registry.cli
	gctx, cancel := context.WithTimeout(ctx, CallTimeout)
	l, err := cli.Grant(gctx, int64(max(1, ttl/time.Second)))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("replica %d: lease in etcd: %w", e.Replica, err)
	}
	// etcd may have raised the TTL: the fence follows the one granted
	// (keep-alives go out every third of it).
	p := &etcdPrimacy{cli: cli, replica: e.Replica, ttl: time.Duration(l.TTL) * time.Second, stop: make(chan struct{}), done: make(chan struct{})}
	p.lastRenew.Store(time.Now().UnixNano())
	kctx, kcancel := context.WithCancel(context.Background())
	p.kcancel = kcancel
	ka, err := cli.KeepAlive(kctx, l.ID)
	if err != nil {
		kcancel()
		return nil, fmt.Errorf("replica %d: keep the lease alive: %w", e.Replica, err)
	}
	p.kaDone = make(chan struct{})
	go func() {
		defer close(p.kaDone)
		for range ka {
			p.lastRenew.Store(time.Now().UnixNano())
		}
	}()
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(l.ID))
	if err != nil {
		kcancel()
		return nil, fmt.Errorf("replica %d: etcd session: %w", e.Replica, err)
	}
	p.sess = sess
	p.el = concurrency.NewElection(sess, e.Registry.prefix+"/elections/"+e.Instance)
	if e.OnWait != nil {
		e.OnWait(fmt.Sprintf("campaigning in etcd for %s (lease %v)", e.Instance, ttl))
	}
	if err := p.el.Campaign(ctx, fmt.Sprint(e.Replica)); err != nil {
		p.close()
		return nil, fmt.Errorf("replica %d: campaign in etcd: %w", e.Replica, err)
	}
	fence, err := engine.TakeEpoch(ctx, e.Dir, e.Replica, uint64(p.el.Rev()))
	if err != nil {
		p.close()
		return nil, err
	}
	p.fence = fence
	go p.watch()
	return p, nil
}

// etcdPrimacy is a primacy held through an etcd lease.
type etcdPrimacy struct {
	cli       *clientv3.Client
	replica   int
	ttl       time.Duration
	lastRenew atomic.Int64 // Unix ns of the last keep-alive answered
	kcancel   context.CancelFunc
	kaDone    chan struct{}
	sess      *concurrency.Session
	el        *concurrency.Election
	fence     *engine.EpochFence

	mu   sync.Mutex
	lost error // why the lease is gone, once it is

	stop, done chan struct{}
	closeOnce  sync.Once
}

// expired reports whether the lease may have run out: no keep-alive
// answered for 2/3 of the TTL, or the session is gone.
func (p *etcdPrimacy) expired() error {
	p.mu.Lock()
	lost := p.lost
	p.mu.Unlock()
	if lost != nil {
		return lost
	}
	since := time.Since(time.Unix(0, p.lastRenew.Load()))
	select {
	case <-p.sess.Done():
		return p.loseLease("etcd ended the session")
	default:
	}
	if since > 2*p.ttl/3 {
		return p.loseLease(fmt.Sprintf("no keep-alive answered for %v (lease %v)", since.Round(time.Millisecond), p.ttl))
	}
	return nil
}

// LostLeaseError says a primary stopped because its lease may be gone.
type LostLeaseError struct {
	Replica int
	Epoch   uint64
	Why     string
}

func (e *LostLeaseError) Error() string {
	return fmt.Sprintf("replica %d: lost the lease at epoch %d (%s); stepping down without writing", e.Replica, e.Epoch, e.Why)
}

func (p *etcdPrimacy) loseLease(why string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lost == nil {
		p.lost = &LostLeaseError{Replica: p.replica, Epoch: p.fence.Epoch(), Why: why}
		p.fence.Depose()
	}
	return p.lost
}

// watch notices a lost lease or a newer epoch when nothing is written.
func (p *etcdPrimacy) watch() {
	defer close(p.done)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.sess.Done():
			p.loseLease("etcd ended the session")
			return
		case <-t.C:
		}
		if p.Check() != nil {
			return
		}
	}
}

// Epoch implements engine.Fence.
func (p *etcdPrimacy) Epoch() uint64 { return p.fence.Epoch() }

// Check implements engine.Fence.
func (p *etcdPrimacy) Check() error {
	if err := p.expired(); err != nil {
		return err
	}
	return p.fence.Check()
}

// Do implements engine.Fence.
func (p *etcdPrimacy) Do(op func() error) error {
	if err := p.expired(); err != nil {
		return err
	}
	return p.fence.Do(op)
}

// Deposed implements engine.Primacy.
func (p *etcdPrimacy) Deposed() <-chan struct{} { return p.fence.Deposed() }

// Resign implements engine.Primacy.
func (p *etcdPrimacy) Resign() {
	p.closeOnce.Do(func() {
		if p.fence != nil {
			close(p.stop)
			<-p.done
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = p.el.Resign(ctx)
			cancel()
			p.fence.Close()
		}
		p.close()
	})
}

// close ends the session and the keep-alive. The lease is revoked if etcd
// answers within a second; otherwise it runs out by itself: a stop never
// waits long on an etcd that is gone.
func (p *etcdPrimacy) close() {
	if p.sess != nil {
		p.sess.Orphan()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = p.cli.Revoke(ctx, p.sess.Lease())
		cancel()
	}
	p.kcancel()
	if p.kaDone != nil {
		<-p.kaDone
	}
}

// IsLostLease reports whether err is a primary's lost lease.
func IsLostLease(err error) bool {
	var l *LostLeaseError
	return errors.As(err, &l)
}
