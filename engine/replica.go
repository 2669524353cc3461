package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"

	"github.com/ambr-dev/ambr/engine/layout"
)

// Replicas of one instance share its directory; one of them, the primary,
// writes. These files coordinate them. They are written with os, not vfs,
// like LOCK and RUN: they are about processes, not the log.
//
//	EPOCH          8 bytes, little endian: the epoch of the current primary.
//	               Raised by each promotion, in place, pwrite + fdatasync.
//	               The primary keeps it open and preads it before each log
//	               write and after each sync.
//	PRIMARY.lock   flock held by the primary for its whole life; a killed
//	               primary releases it at once.
//	LEASE          32 bytes, pwritten by the primary every LeaseRenew (not
//	               synced): epoch, replica, flags, Unix ns, xxhash64 of the
//	               24 bytes before. A stalled primary still holds its flock;
//	               a lease that stops moving for LeaseTTL lets a standby take
//	               over anyway.
//	MANIFEST.lock  flock around every epoch bump and, by a replicated
//	               primary, every MANIFEST write, segment creation and
//	               checkpoint file creation (each after an epoch check).
const (
	EpochFile        = "EPOCH"
	PrimaryLockFile  = "PRIMARY.lock"
	LeaseFile        = "LEASE"
	ManifestLockFile = "MANIFEST.lock"
)

// Defaults of FileElection.
const (
	DefaultLeaseTTL   = 500 * time.Millisecond
	DefaultLeaseRenew = 50 * time.Millisecond
	DefaultLockPoll   = 10 * time.Millisecond
)

// leaseSize is the LEASE record's size; leaseHasFlock its flag saying the
// primary holds PRIMARY.lock (so a standby that gets the lock knows the
// primary is gone).
const (
	leaseSize     = 32
	leaseHasFlock = 1
)

// Fence is what a primary checks before anything it writes can count: its
// epoch is still the newest. Check costs one read; Do runs an operation that
// changes which files are live (a MANIFEST write, a new segment or
// checkpoint file) under the lock promotions take, after a Check.
type Fence interface {
	Epoch() uint64
	Check() error
	Do(op func() error) error
}

// Election decides which replica of an instance is primary. FileElection
// does it with files in the instance directory on one machine; across
// machines an etcd lease does (the leader revision as the epoch).
type Election interface {
	// Campaign blocks until this replica is primary, or ctx ends. The
	// epoch is raised before it returns.
	Campaign(ctx context.Context) (Primacy, error)
}

// Primacy is held by a primary until it resigns or is deposed.
type Primacy interface {
	Fence
	// Deposed is closed when the primacy noticed a newer epoch.
	Deposed() <-chan struct{}
	// Resign gives the primacy up (releases the lock; stops the lease).
	Resign()
}

// DeposedError says a primary found a newer epoch: another replica took
// over, and this one must not write or acknowledge anything more.
type DeposedError struct {
	Replica      int
	Epoch, Newer uint64
}

func (e *DeposedError) Error() string {
	return fmt.Sprintf("replica %d: deposed at epoch %d by a newer primary (epoch %d); stopping without writing", e.Replica, e.Epoch, e.Newer)
}

// fenced runs op under f, or just runs it without a fence (one replica).
func fenced(f Fence, op func() error) error {
	if f == nil {
		return op()
	}
	return f.Do(op)
}

// FileElection elects a primary among replicas sharing Dir on one machine.
//
// A standby becomes primary when it gets PRIMARY.lock and the lease says its
// holder held it (the holder died), or when neither the EPOCH nor the lease
// moved for TTL (the holder is stalled, or took over by lease and died).
// Under MANIFEST.lock it then re-reads EPOCH: if it moved, another standby
// won and it goes on waiting; else it writes EPOCH+1 durably.
type FileElection struct {
	Dir     string
	Replica int
	// TTL, Renew and Poll default to DefaultLeaseTTL, DefaultLeaseRenew
	// and DefaultLockPoll.
	TTL, Renew, Poll time.Duration
	// OnWait, if set, is told once why the replica waits as a standby.
	OnWait func(reason string)
}

type lease struct {
	epoch   uint64
	replica uint32
	flags   uint32
	unixNs  int64
}

func encodeLease(l lease) []byte {
	b := make([]byte, 0, leaseSize)
	b = binary.LittleEndian.AppendUint64(b, l.epoch)
	b = binary.LittleEndian.AppendUint32(b, l.replica)
	b = binary.LittleEndian.AppendUint32(b, l.flags)
	b = binary.LittleEndian.AppendUint64(b, uint64(l.unixNs))
	return binary.LittleEndian.AppendUint64(b, xxhash.Sum64(b))
}

// readLease returns the lease in f; ok is false when there is none or it
// was read while being written.
func readLease(f *os.File) (lease, bool) {
	var b [leaseSize]byte
	if _, err := f.ReadAt(b[:], 0); err != nil {
		return lease{}, false
	}
	if binary.LittleEndian.Uint64(b[24:]) != xxhash.Sum64(b[:24]) {
		return lease{}, false
	}
	return lease{epoch: binary.LittleEndian.Uint64(b[0:]), replica: binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint32(b[12:]), unixNs: int64(binary.LittleEndian.Uint64(b[16:]))}, true
}

// readEpoch returns the epoch in f, 0 for an empty file.
func readEpoch(f *os.File) (uint64, error) {
	var b [8]byte
	n, err := f.ReadAt(b[:], 0)
	if n == 0 && err == io.EOF {
		return 0, nil
	}
	if n != 8 {
		return 0, fmt.Errorf("read %s: %d of 8 bytes: %v (the file is damaged; stop every replica, then remove it or write the epoch back)", f.Name(), n, err)
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// ReadEpoch returns the epoch of the instance in dir (0 if it never ran
// with replicas).
func ReadEpoch(dir string) (uint64, error) {
	f, err := os.Open(filepath.Join(dir, EpochFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	return readEpoch(f)
}

func (e *FileElection) defaults() {
	if e.TTL <= 0 {
		e.TTL = DefaultLeaseTTL
	}
	if e.Renew <= 0 {
		e.Renew = DefaultLeaseRenew
	}
	if e.Poll <= 0 {
		e.Poll = DefaultLockPoll
	}
}

// Campaign implements Election.
func (e *FileElection) Campaign(ctx context.Context) (Primacy, error) {
	e.defaults()
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("replica %d: %w", e.Replica, err)
	}
	epochF, err := os.OpenFile(filepath.Join(e.Dir, EpochFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("replica %d: open the epoch: %w", e.Replica, err)
	}
	leaseF, err := os.OpenFile(filepath.Join(e.Dir, LeaseFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		epochF.Close()
		return nil, fmt.Errorf("replica %d: open the lease: %w", e.Replica, err)
	}
	p := &filePrimacy{e: e, epochF: epochF, leaseF: leaseF, deposed: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{}),
		mlock: flock.New(filepath.Join(e.Dir, ManifestLockFile))}
	primary := flock.New(filepath.Join(e.Dir, PrimaryLockFile))
	fail := func(err error) (Primacy, error) {
		_ = primary.Unlock()
		epochF.Close()
		leaseF.Close()
		return nil, err
	}
	var lastEpoch uint64
	var lastLease int64
	lastChange := time.Now()
	told := ""
	wait := func(reason string) {
		if reason != told && e.OnWait != nil {
			e.OnWait(reason)
		}
		told = reason
	}
	for {
		epoch, err := readEpoch(epochF)
		if err != nil {
			return fail(fmt.Errorf("replica %d: %w", e.Replica, err))
		}
		l, valid := readLease(leaseF)
		current := valid && l.epoch == epoch
		if epoch != lastEpoch || current && l.unixNs != lastLease {
			lastEpoch, lastChange = epoch, time.Now()
			if current {
				lastLease = l.unixNs
			}
		}
		stale := time.Since(lastChange) > e.TTL
		locked, err := primary.TryLock()
		if err != nil {
			return fail(fmt.Errorf("replica %d: lock %s: %w", e.Replica, primary.Path(), err))
		}
		take := false
		switch {
		case locked && (!current || l.flags&leaseHasFlock != 0 || stale):
			// The lock's holder is gone, or nobody holds the epoch's lease.
			take = true
		case locked:
			// The primary took over by lease and holds no lock: the lock
			// says nothing about it. Leave the lock for it to take.
			_ = primary.Unlock()
			wait(fmt.Sprintf("standby: the primary (replica %d, epoch %d) holds the lease", l.replica, epoch))
		case stale:
			take = true
		default:
			wait(fmt.Sprintf("standby: the primary (epoch %d) holds %s", epoch, PrimaryLockFile))
		}
		if take {
			won, err := p.bump(ctx, epoch)
			if err != nil {
				return fail(err)
			}
			if won {
				p.hasFlock.Store(locked)
				p.primaryLock = primary
				p.writeLease()
				go p.renew()
				return p, nil
			}
			if locked {
				_ = primary.Unlock()
			}
			lastChange = time.Now()
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(e.Poll):
		}
	}
}

// filePrimacy is a FileElection's primary.
type filePrimacy struct {
	e           *FileElection
	epoch       uint64
	epochF      *os.File
	leaseF      *os.File
	primaryLock *flock.Flock
	hasFlock    atomic.Bool

	mu    sync.Mutex // in-process exclusion around mlock (flock is per file)
	mlock *flock.Flock

	deposeOnce sync.Once
	deposed    chan struct{}
	stop, done chan struct{}
	resignOnce sync.Once
}

// bump raises the epoch from seen, under MANIFEST.lock; won is false when
// another replica raised it first. A primary holds that lock only for a
// MANIFEST write or a file creation, but a primary stalled in one holds it
// until it continues: bump then waits (and ctx can end the wait).
func (p *filePrimacy) bump(ctx context.Context, seen uint64) (won bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		ok, err := p.mlock.TryLock()
		if err != nil {
			return false, fmt.Errorf("replica %d: lock %s: %w", p.e.Replica, p.mlock.Path(), err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(p.e.Poll):
		}
	}
	defer p.mlock.Unlock()
	now, err := readEpoch(p.epochF)
	if err != nil {
		return false, fmt.Errorf("replica %d: %w", p.e.Replica, err)
	}
	if now != seen {
		return false, nil
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], seen+1)
	if _, err := p.epochF.WriteAt(b[:], 0); err != nil {
		return false, fmt.Errorf("replica %d: write the epoch: %w", p.e.Replica, err)
	}
	if err := unix.Fdatasync(int(p.epochF.Fd())); err != nil {
		return false, fmt.Errorf("replica %d: sync the epoch: %w", p.e.Replica, err)
	}
	if seen == 0 {
		// A new file's entry must be durable too.
		if d, err := os.Open(p.e.Dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	p.epoch = seen + 1
	return true, nil
}

// Epoch implements Fence.
func (p *filePrimacy) Epoch() uint64 { return p.epoch }

// Check implements Fence: nil while EPOCH still holds this primary's epoch.
func (p *filePrimacy) Check() error {
	now, err := readEpoch(p.epochF)
	if err != nil {
		return fmt.Errorf("replica %d: cannot confirm it is still primary: %w", p.e.Replica, err)
	}
	if now != p.epoch {
		p.deposeOnce.Do(func() { close(p.deposed) })
		return &DeposedError{Replica: p.e.Replica, Epoch: p.epoch, Newer: now}
	}
	return nil
}

// Do implements Fence.
func (p *filePrimacy) Do(op func() error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.mlock.Lock(); err != nil {
		return fmt.Errorf("replica %d: lock %s: %w", p.e.Replica, p.mlock.Path(), err)
	}
	defer p.mlock.Unlock()
	if err := p.Check(); err != nil {
		return err
	}
	return op()
}

// Deposed implements Primacy.
func (p *filePrimacy) Deposed() <-chan struct{} { return p.deposed }

func (p *filePrimacy) writeLease() {
	var flags uint32
	if p.hasFlock.Load() {
		flags |= leaseHasFlock
	}
	_, _ = p.leaseF.WriteAt(encodeLease(lease{epoch: p.epoch, replica: uint32(p.e.Replica), flags: flags, unixNs: time.Now().UnixNano()}), 0)
}

// renew keeps the lease moving, takes PRIMARY.lock if it was promoted
// without it, and notices a newer epoch even when nothing is written.
func (p *filePrimacy) renew() {
	defer close(p.done)
	t := time.NewTicker(p.e.Renew)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if p.Check() != nil {
			return
		}
		if !p.hasFlock.Load() {
			if ok, _ := p.primaryLock.TryLock(); ok {
				p.hasFlock.Store(true)
			}
		}
		p.writeLease()
	}
}

// hasFlockNow says whether the primary holds PRIMARY.lock.
func (p *filePrimacy) hasFlockNow() bool { return p.hasFlock.Load() }

// Resign implements Primacy.
func (p *filePrimacy) Resign() {
	p.resignOnce.Do(func() {
		close(p.stop)
		<-p.done
		_ = p.primaryLock.Unlock()
		p.epochF.Close()
		p.leaseF.Close()
	})
}

// fence returns the fence this coordinator writes under, nil with one
// replica.
func (c *Coordinator) fence() Fence {
	if c.primacy == nil {
		return nil
	}
	return c.primacy
}

// deposed returns the error to stop with when this replica was deposed (it
// also says so for err, the error a conversation ended with), else nil.
func (c *Coordinator) deposed(err error) error {
	var d *DeposedError
	if errors.As(err, &d) {
		return fmt.Errorf("%w: %w", ErrFatal, d)
	}
	if c.primacy == nil {
		return nil
	}
	select {
	case <-c.primacy.Deposed():
	default:
		return nil
	}
	if err := c.primacy.Check(); err != nil {
		return fmt.Errorf("%w: %w", ErrFatal, err)
	}
	return nil
}

// sealRecovered makes what recovery found the log of this epoch, before
// anything is written: the MANIFEST gets the epoch, whether an upgrade is
// under way, and the seal of the last segment at the valid end recovery
// read to. A segment sealed already
// keeps its seal. Once this MANIFEST is durable, nothing a deposed primary
// appends to that segment is read by anyone.
func (c *Coordinator) sealRecovered(rec *recovered) error {
	if c.primacy == nil || rec.fresh {
		return nil
	}
	m := *rec.manifest
	m.Epoch = c.primacy.Epoch()
	// Followers hold at the upgrade's first record until it ends (follow.go).
	m.UpgradeVersion = m.Version
	if rec.upgrading {
		m.UpgradeVersion++
	}
	m.Seals = make(map[uint64]int64, len(rec.manifest.Seals)+1)
	for n, l := range rec.manifest.Seals {
		if n >= m.FirstSegment {
			m.Seals[n] = l
		}
	}
	if _, sealed := m.Seals[rec.tailSeg]; rec.hasTail && !sealed {
		// What the predecessor wrote and had not synced when it died is
		// history from here on (it is replayed): durable before the seal
		// names it.
		if err := syncFile(c.opts.FS, filepath.Join(c.opts.Dir, layout.VersionDir(0), layout.SegmentName(rec.tailSeg))); err != nil {
			return fmt.Errorf("%w: seal the log at promotion: %w", ErrFatal, err)
		}
		m.Seals[rec.tailSeg] = rec.tailEnd
	}
	m.Updated = c.opts.Now().UnixNano()
	if err := fenced(c.primacy, func() error {
		mergeCheckpointer(c.opts.FS, c.opts.Dir, &m)
		return writeManifest(c.opts.FS, c.opts.Dir, &m)
	}); err != nil {
		return fmt.Errorf("%w: seal the log at promotion: %w", ErrFatal, err)
	}
	rec.manifest = &m
	return nil
}

// PeerRegistryCheck is how often an open link to a peer looks its address
// up again: when a replica takes over from a stalled primary, the old
// connection stays open (the stalled process holds it) and only the
// registry says that the peer now lives elsewhere.
const PeerRegistryCheck = 50 * time.Millisecond

// PeerBackoffMin and PeerBackoffMax bound the wait between a link's
// attempts to reconnect, for reports next to failover times.
const (
	PeerBackoffMin = peerBackoffMin
	PeerBackoffMax = peerBackoffMax
)

// watchRegistry ends the connection (cancel) to addr once the registry
// names another address for the peer, until ctx ends.
func (l *outLink) watchRegistry(ctx context.Context, cancel func(), addr string) {
	t := time.NewTicker(PeerRegistryCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if now, err := l.v.c.registry.Lookup(l.peer); err == nil && now != addr {
			l.v.c.log.Info("peer link: the peer registered a new address; reconnecting", "peer", l.peer, "old", addr, "new", now)
			cancel()
			return
		}
	}
}

// peerBackoffPoll is how often a link waiting to reconnect looks at the
// registry: a peer that registers a new address (a replica that took over,
// an instance restarted elsewhere) is tried at once, not after the backoff.
const peerBackoffPoll = 5 * time.Millisecond

// backoffWait waits d before the next attempt to connect, or less if the
// registry names an address other than the one last tried; false if the
// conversation ended.
func (l *outLink) backoffWait(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	tick := time.NewTicker(peerBackoffPoll)
	defer tick.Stop()
	for {
		select {
		case <-l.v.done:
			return false
		case <-timer.C:
			return true
		case <-tick.C:
			if now, err := l.v.c.registry.Lookup(l.peer); err == nil && now != l.tried {
				return true
			}
		}
	}
}

// ReadLease returns the lease in dir's LEASE file: the epoch and replica of
// the primary that wrote it and when (Unix ns); ok is false if there is
// none or it was caught mid-write.
func ReadLease(dir string) (epoch uint64, replica int, unixNs int64, ok bool) {
	f, err := os.Open(filepath.Join(dir, LeaseFile))
	if err != nil {
		return 0, 0, 0, false
	}
	defer f.Close()
	l, ok := readLease(f)
	return l.epoch, int(l.replica), l.unixNs, ok
}
