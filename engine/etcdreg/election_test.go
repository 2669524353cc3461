package etcdreg

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/internal/etcdtest"
)

// TestElection: two replicas campaign for one instance in a real etcd; the
// first is primary with the leader revision as its epoch, the second waits;
// when the first resigns the second wins a higher epoch and the first's
// fence refuses. When etcd goes away, the primary's fence fails before its
// lease can have run out, saying it lost the lease.
func TestElection(t *testing.T) {
	srv := etcdtest.Start(t)
	eps, _ := ParseURL(srv.URL())
	reg, err := Open(eps)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	a := &Election{Registry: reg, Instance: "svc", Dir: dir, Replica: 0}
	t0 := time.Now()
	pa, err := a.Campaign(ctx)
	t.Logf("campaign: %v", time.Since(t0))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Check(); err != nil {
		t.Fatalf("a fresh primary's fence: %v", err)
	}
	if got, _ := engine.ReadEpoch(dir); got != pa.Epoch() || got == 0 {
		t.Fatalf("EPOCH holds %d, the primacy says %d", got, pa.Epoch())
	}
	won := make(chan engine.Primacy, 1)
	go func() {
		b := &Election{Registry: reg, Instance: "svc", Dir: dir, Replica: 1}
		pb, err := b.Campaign(ctx)
		if err != nil {
			t.Error(err)
			close(won)
			return
		}
		won <- pb
	}()
	select {
	case <-won:
		t.Fatal("a second replica won while the first holds the lease")
	case <-time.After(500 * time.Millisecond):
	}
	epochA := pa.Epoch()
	pa.Resign()
	pb := <-won
	t.Logf("takeover: %v", time.Since(t0))
	if pb == nil {
		t.FailNow()
	}
	defer pb.Resign()
	if pb.Epoch() <= epochA {
		t.Fatalf("the new primary's epoch %d is not above the old one's %d", pb.Epoch(), epochA)
	}
	var dep *engine.DeposedError
	if err := pa.Check(); !errors.As(err, &dep) && err == nil {
		t.Fatalf("the resigned primary's fence: %v", err)
	}

	// An epoch at or below the instance's is refused.
	if _, err := engine.TakeEpoch(ctx, dir, 2, pb.Epoch()); err == nil || !strings.Contains(err.Error(), "not above") {
		t.Fatalf("TakeEpoch of the current epoch: %v", err)
	}

	// etcd goes away: the primary steps down on its own.
	t.Logf("before stop: %v", time.Since(t0))
	srv.Stop()
	t.Logf("stopped: %v", time.Since(t0))
	deadline := time.Now().Add(30 * time.Second)
	for pb.Check() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the primary kept its fence 30 s after etcd went away")
		}
		time.Sleep(20 * time.Millisecond)
	}
	err = pb.Check()
	if !IsLostLease(err) || !strings.Contains(err.Error(), "lost the lease at epoch") {
		t.Fatalf("after etcd went away: %v", err)
	}
	select {
	case <-pb.Deposed():
	default:
		t.Fatal("a primary that lost its lease is not marked deposed")
	}
	t.Logf("lost: %v", time.Since(t0))
}
