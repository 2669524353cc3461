package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// TestFollowerHoldsAcrossAnUpgradeAndSwitchesBuilds: a follower holds at
// the first record of the segment an upgrading primary starts, goes on
// when the upgrade failed, and stops (naming the new build) when it moved
// the version.
func TestFollowerHoldsAcrossAnUpgradeAndSwitchesBuilds(t *testing.T) {
	f := newFollowFixture(t)
	lf := f.follower()
	var moved []logfmt.AppBuild
	v := &conversation{c: &Coordinator{opts: Options{FS: vfs.Default(), Dir: f.dir, App: logfmt.AppBuild{SHA256: "old"},
		OnBuildMoved: func(b logfmt.AppBuild) { moved = append(moved, b) }}, log: slog.Default()},
		fw: &followState{f: lf}}
	gated := func() (seqs []int64, err error) {
		limit, err := lf.committedLimit()
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = lf.read(limit, followBatch, func(r *logfmt.Record, seg uint64) error {
			if err := v.upgradeGate(seg); err != nil {
				return err
			}
			seqs = append(seqs, r.Seq)
			return nil
		})
		return seqs, err
	}
	write := func(m logfmt.Manifest) {
		m.Instance, m.Checkpoint, m.FirstSegment, m.Epoch = "x", 1, 1, 1
		if err := writeManifest(vfs.Default(), f.dir, &m); err != nil {
			t.Fatal(err)
		}
	}
	f.write(1, "a", 1, 2, 3)
	f.commit(1, 3)
	if got, err := gated(); err != nil || len(got) != 3 {
		t.Fatalf("fed %v (%v), want 1..3", got, err)
	}
	// The primary recovers with an upgrade: UpgradeVersion 1 before its
	// new segment's first record. The follower holds there.
	write(logfmt.Manifest{Version: 0, UpgradeVersion: 1, App: logfmt.AppBuild{SHA256: "old"}})
	f.write(2, "b", 4, 5)
	f.commit(1, 5)
	if got, err := gated(); !errors.Is(err, errFollowHold) || len(got) != 0 {
		t.Fatalf("fed %v (%v) during the upgrade; want a hold before record 4", got, err)
	}
	// The upgrade failed: the old build's recovery puts UpgradeVersion
	// back, and segment 2's records are the old build's to run.
	write(logfmt.Manifest{Version: 0, UpgradeVersion: 0, App: logfmt.AppBuild{SHA256: "old"}})
	if got, err := gated(); err != nil || len(got) != 2 || got[0] != 4 {
		t.Fatalf("fed %v (%v) after the failed upgrade, want 4, 5", got, err)
	}
	// A good upgrade moves the version: the follower stops before the new
	// build's records and names the build to switch to.
	write(logfmt.Manifest{Version: 0, UpgradeVersion: 1, App: logfmt.AppBuild{SHA256: "old"}})
	f.write(3, "c", 6)
	f.commit(1, 6)
	if _, err := gated(); !errors.Is(err, errFollowHold) {
		t.Fatalf("%v, want a hold", err)
	}
	write(logfmt.Manifest{Version: 1, UpgradeVersion: 1, App: logfmt.AppBuild{SHA256: "new", Path: "/bin/new"}})
	if got, err := gated(); !errors.Is(err, errFollowAgain) || len(got) != 0 {
		t.Fatalf("fed %v (%v) after the version moved; want errFollowAgain before record 6", got, err)
	}
	if len(moved) != 1 || moved[0].Path != "/bin/new" || v.c.app().SHA256 != "new" {
		t.Fatalf("OnBuildMoved got %+v, app %+v; want the new build once", moved, v.c.app())
	}
}

// TestCancelUpgradeTaken: CancelUpgrade withdraws an upgrade no app
// connection took, and says when one took it (the upgrade is then under
// way: upgrade.Live waits for its outcome rather than switching back).
func TestCancelUpgradeTaken(t *testing.T) {
	c, err := New(Options{Dir: t.TempDir(), Name: "s", Listener: NewPipeListener()})
	if err != nil {
		t.Fatal(err)
	}
	c.PrepareUpgrade(logfmt.AppBuild{Path: "/bin/v2"})
	if !c.CancelUpgrade() {
		t.Error("CancelUpgrade of an upgrade not taken = false")
	}
	c.PrepareUpgrade(logfmt.AppBuild{Path: "/bin/v2"})
	if c.takeUpgradeFor(0) == nil {
		t.Fatal("takeUpgradeFor(0) = nil")
	}
	if c.CancelUpgrade() {
		t.Error("CancelUpgrade of an upgrade an app connection took = true")
	}
}

// TestUpgradeDoneOnceItsManifestIsDurable: an app that goes away right
// after its converted checkpoint and the MANIFEST naming the new build are
// durable, before the coordinator's loop hears of the write, has upgraded
// the instance: OnUpgrade is told so, and the next app connection recovers
// it on the new build at the new version. (Told it failed, the run would
// bring back the old build, which recovered the new version's state and
// wrote itself into the MANIFEST at that version: a downgrade.)
func TestUpgradeDoneOnceItsManifestIsDurable(t *testing.T) {
	mem, _, _ := ranInstance(t, 20)
	var closeApp atomic.Value // func()
	var fired atomic.Bool
	fsys := vfs.NewErrorFS(mem, vfs.InjectorFunc(func(op vfs.Op) error {
		if op.Kind != vfs.OpSyncDir || op.Path != testDir || fired.Load() {
			return nil
		}
		m, err := layout.ReadManifest(mem, testDir)
		if err != nil || m.Version != 1 {
			return nil
		}
		// The converted checkpoint's MANIFEST is in place: the app goes,
		// and the loop sees that before this writer returns.
		fired.Store(true)
		closeApp.Load().(func())()
		time.Sleep(300 * time.Millisecond)
		return nil
	}))
	outcome := make(chan error, 1)
	pl := NewPipeListener()
	old, next := logfmt.AppBuild{Source: "old", SHA256: "old"}, logfmt.AppBuild{Source: "new", SHA256: "new", Path: "/bin/new"}
	c, err := New(Options{Dir: testDir, Name: "counter", FS: fsys, Listener: pl, Logger: quietLogger(), App: old,
		Registry: FileRegistry{Dir: t.TempDir()}, OnUpgrade: func(err error) { outcome <- err },
		Now: (&testClock{t: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}).Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	c.PrepareUpgrade(next)

	toIC, fromIC, err := pl.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closeApp.Store(func() { toIC.Close(); fromIC.Close() })
	go newRawApp(20).run(ctx, toIC, fromIC)
	select {
	case err := <-outcome:
		if err != nil || !fired.Load() {
			t.Fatalf("OnUpgrade(%v) (app closed after the MANIFEST: %v); want the upgrade done", err, fired.Load())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no upgrade outcome")
	}
	if got := c.app(); got.SHA256 != "new" {
		t.Fatalf("the coordinator runs %+v after the upgrade; want the new build", got)
	}

	// The next app connection (the supervisor's restart) recovers on the
	// new build, at version 1.
	toIC, fromIC, err = pl.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	up, err := layout.ReadManifest(mem, testDir)
	if err != nil {
		t.Fatal(err)
	}
	app := newRawApp(20)
	go app.run(ctx, toIC, fromIC)
	<-app.reachedCh
	var m *logfmt.Manifest
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m, err = layout.ReadManifest(mem, testDir); err == nil && m.Checkpoint > up.Checkpoint {
			break
		}
	}
	if m == nil || m.Checkpoint <= up.Checkpoint || m.App.SHA256 != "new" || m.Version != 1 || m.Builds[len(m.Builds)-1].App.SHA256 != "new" {
		t.Fatalf("MANIFEST after the next recovery: %+v; want the new build at version 1", m)
	}
	cancel()
	<-errc
}
