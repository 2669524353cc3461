package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gofrs/flock"
	"golang.org/x/sys/unix"
)

// EpochFence is the fence of a primary elected elsewhere (an etcd lease):
// the same EPOCH file and MANIFEST.lock in the instance directory that
// FileElection uses, with the epoch the election handed out (etcd's leader
// revision) written into EPOCH. Every replica's writes check EPOCH, so a
// deposed primary stops whichever election deposed it.
type EpochFence struct {
	dir     string
	replica int
	epoch   uint64
	epochF  *os.File

	mu    sync.Mutex // in-process exclusion around mlock (flock is per file)
	mlock *flock.Flock

	once    sync.Once
	deposed chan struct{}
}

// TakeEpoch makes epoch the instance's epoch, under MANIFEST.lock: it must
// be above the one in EPOCH (an election's epochs only grow; an instance
// run before with another election may be ahead, and is refused with an
// error saying so). From then on a primary of an older epoch writes nothing.
func TakeEpoch(ctx context.Context, dir string, replica int, epoch uint64) (*EpochFence, error) {
	f, err := os.OpenFile(filepath.Join(dir, EpochFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("replica %d: %w", replica, err)
	}
	e := &EpochFence{dir: dir, replica: replica, epochF: f, mlock: flock.New(filepath.Join(dir, ManifestLockFile)), deposed: make(chan struct{})}
	for {
		ok, err := e.mlock.TryLock()
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("replica %d: lock %s: %w", replica, e.mlock.Path(), err)
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(DefaultLockPoll):
		}
	}
	defer e.mlock.Unlock()
	now, err := readEpoch(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("replica %d: %w", replica, err)
	}
	if epoch <= now {
		f.Close()
		return nil, fmt.Errorf("replica %d: the election's epoch %d is not above the instance's epoch %d in %s (was it run with another election or another etcd?): stop every replica and remove %s to start the epochs over", replica, epoch, now, f.Name(), f.Name())
	}
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], epoch)
	if _, err := f.WriteAt(b[:], 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("replica %d: write the epoch: %w", replica, err)
	}
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		f.Close()
		return nil, fmt.Errorf("replica %d: sync the epoch: %w", replica, err)
	}
	if now == 0 {
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			d.Close()
		}
	}
	e.epoch = epoch
	return e, nil
}

// Epoch implements Fence.
func (e *EpochFence) Epoch() uint64 { return e.epoch }

// Check implements Fence: nil while EPOCH still holds this epoch.
func (e *EpochFence) Check() error {
	now, err := readEpoch(e.epochF)
	if err != nil {
		return fmt.Errorf("replica %d: cannot confirm it is still primary: %w", e.replica, err)
	}
	if now != e.epoch {
		e.Depose()
		return &DeposedError{Replica: e.replica, Epoch: e.epoch, Newer: now}
	}
	return nil
}

// Do implements Fence.
func (e *EpochFence) Do(op func() error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if err := e.mlock.Lock(); err != nil {
		return fmt.Errorf("replica %d: lock %s: %w", e.replica, e.mlock.Path(), err)
	}
	defer e.mlock.Unlock()
	if err := e.Check(); err != nil {
		return err
	}
	return op()
}

// Deposed is closed once the fence found a newer epoch or Depose was
// called.
func (e *EpochFence) Deposed() <-chan struct{} { return e.deposed }

// Depose marks the fence deposed (its election lost the lease).
func (e *EpochFence) Depose() { e.once.Do(func() { close(e.deposed) }) }

// Close releases the EPOCH file.
func (e *EpochFence) Close() error { return e.epochF.Close() }
