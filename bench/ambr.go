package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/hosted"
	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/vfs"
)

// Logging modes of an ambr system under test. The engine has no option to
// turn logging off, so the two cheaper modes wrap the file system.
const (
	logDurable = "durable" // the real disk, fdatasync per flush
	logNoSync  = "nosync"  // written to the page cache, Sync and SyncDir do nothing
	logOff     = "off"     // log segments are discarded; no syncs at all
)

// fsFor returns the file system for a logging mode.
func fsFor(mode string) vfs.FS {
	switch mode {
	case logNoSync:
		return noSyncFS{vfs.Default(), false}
	case logOff:
		return noSyncFS{vfs.Default(), true}
	}
	return vfs.Default()
}

// noSyncFS makes syncs free and, with discardLog, throws log segments away.
type noSyncFS struct {
	vfs.FS
	discardLog bool
}

func (f noSyncFS) Create(name string) (vfs.File, error) {
	if f.discardLog && strings.HasPrefix(filepath.Base(name), "log-") {
		return discardFile{}, nil
	}
	file, err := f.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}

func (f noSyncFS) OpenAppend(name string) (vfs.File, error) {
	file, err := f.FS.OpenAppend(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{file}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

type noSyncFile struct{ vfs.File }

func (noSyncFile) Sync() error { return nil }

// discardFile is a log segment that is never written.
type discardFile struct{}

func (discardFile) Read([]byte) (int, error)          { return 0, io.EOF }
func (discardFile) ReadAt([]byte, int64) (int, error) { return 0, io.EOF }
func (discardFile) Write(p []byte) (int, error)       { return len(p), nil }
func (discardFile) Close() error                      { return nil }
func (discardFile) Sync() error                       { return nil }
func (discardFile) Truncate(int64) error              { return nil }
func (discardFile) Stat() (os.FileInfo, error) {
	return nil, errors.New("bench: discarded log segment")
}

// quiet is the logger of the coordinators and apps under test.
var quiet = slog.New(slog.DiscardHandler)

// node is one hosted immortal (app and coordinator in this process).
type node struct {
	name   string
	done   chan error
	live   chan struct{}
	once   sync.Once
	status atomic.Pointer[engine.Status]
	// firstStatus is when the coordinator first reported (it has read the
	// instance from disk); liveAt when it reported the app primary.
	startAt, firstStatus, liveAt atomic.Int64
	// phaseLiveAt is when the coordinator first reported phase "live",
	// before the checkpoint that follows is durable.
	phaseLiveAt atomic.Int64
}

// startNode runs an app under a coordinator for the instance home/name.
// Coordinator links are TLS, as by default, unless plaintext.
func startNode(ctx context.Context, home, name string, fsys vfs.FS, segSize int64, plaintext bool, newApp func() hosted.App) *node {
	n := &node{name: name, done: make(chan error, 1), live: make(chan struct{})}
	opts := engine.Options{
		Dir: filepath.Join(home, name), Name: name, FS: fsys, Logger: quiet, SegmentSize: segSize, PlaintextPeers: plaintext,
		OnStatus: func(s engine.Status) {
			now := time.Now().UnixNano()
			n.firstStatus.CompareAndSwap(0, now)
			if s.Phase == "live" {
				n.phaseLiveAt.CompareAndSwap(0, now)
			}
			if s.Phase == "live" && !s.CheckpointBusy && s.Checkpoint >= 1 {
				n.once.Do(func() { n.liveAt.Store(now); close(n.live) })
			}
			n.status.Store(&s)
		},
	}
	n.startAt.Store(time.Now().UnixNano())
	go func() { n.done <- hosted.Run(ctx, newApp, opts) }()
	return n
}

// waitLive waits until the coordinator reports the app primary with its
// checkpoint durable.
func (n *node) waitLive(ctx context.Context) error {
	select {
	case <-n.live:
		return nil
	case err := <-n.done:
		n.done <- err
		return fmt.Errorf("%s stopped before it was live: %v", n.name, err)
	case <-ctx.Done():
		return fmt.Errorf("%s: not live in time: %w", n.name, ctx.Err())
	}
}

// impulse sends an impulse, retrying while the app is not primary yet.
func impulse[S any](ctx context.Context, app *immortal.App[S], method string, args any) error {
	for {
		err := app.Impulse(method, args)
		if err == nil || !errors.Is(err, immortal.ErrNotPrimary) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("impulse %s: %w (%v)", method, ctx.Err(), err)
		case <-time.After(time.Millisecond):
		}
	}
}

// stopNodes cancels the nodes' context and waits for them.
func stopNodes(cancel context.CancelFunc, nodes ...*node) error {
	cancel()
	var errs []error
	for _, n := range nodes {
		select {
		case err := <-n.done:
			if err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, fmt.Errorf("%s: %w", n.name, err))
			}
		case <-time.After(30 * time.Second):
			errs = append(errs, fmt.Errorf("%s did not stop within 30 s", n.name))
		}
	}
	return errors.Join(errs...)
}

// signal is a one-shot event raised from a handler.
type signal struct {
	once sync.Once
	ch   chan struct{}
}

func newSignal() *signal { return &signal{ch: make(chan struct{})} }
func (s *signal) raise() { s.once.Do(func() { close(s.ch) }) }

// wait waits for the signal, a node stopping, or ctx.
func (s *signal) wait(ctx context.Context, what string, nodes ...*node) error {
	cases := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	for _, n := range nodes {
		go func() {
			select {
			case err := <-n.done:
				n.done <- err
				select {
				case cases <- fmt.Errorf("%s stopped while waiting for %s: %v", n.name, what, err):
				default:
				}
			case <-stop:
			}
		}()
	}
	select {
	case <-s.ch:
		return nil
	case err := <-cases:
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	}
}
