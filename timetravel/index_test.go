package timetravel

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
)

func stateCount(t *testing.T, c *Cursor) int {
	t.Helper()
	var w struct {
		State struct{ Count int }
	}
	if err := json.Unmarshal(c.State, &w); err != nil {
		t.Fatalf("state after %d: %v (%q)", c.Seq, err, c.State)
	}
	return w.State.Count
}

func openIndexed(t *testing.T, dir, cache string, every int64) (*Session, *Index) {
	t.Helper()
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(cache, in)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Update(nil); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Options{Dir: dir, Index: ix, SnapshotEvery: every})
	if err != nil {
		t.Fatal(err)
	}
	return s, ix
}

// TestIndexSnapshots: a replay leaves snapshots behind; later moves start
// from the nearest one; a grown log keeps them; a changed log drops them.
func TestIndexSnapshots(t *testing.T) {
	app := counterServer(t)
	dir := filepath.Join(t.TempDir(), "server")
	cache := filepath.Join(t.TempDir(), "cache")
	writeCounterLog(t, dir, 3000, 700, app)
	ctx := context.Background()

	s, ix := openIndexed(t, dir, cache, 256)
	if ix.Last() != 3000 {
		t.Fatalf("indexed through %d, want 3000", ix.Last())
	}
	if e, ok, _ := ix.Entry(1234); !ok || e.Summary != "client call Inc" || !e.Time.Equal(synthStart.Add(1234*time.Millisecond)) {
		t.Fatalf("entry 1234: %+v %v", e, ok)
	}
	c, err := s.Goto(ctx, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if c.From != 1 || stateCount(t, c) != 2999 || c.SentTotal != 2999 {
		t.Fatalf("cold goto end: from %d, count %d, sent %d", c.From, stateCount(t, c), c.SentTotal)
	}
	// Back to 1500: from the snapshot at 1280, not from the checkpoint.
	c, err = s.Goto(ctx, 1500)
	if err != nil {
		t.Fatal(err)
	}
	if c.From != 1281 || stateCount(t, c) != 1499 {
		t.Fatalf("warm goto 1500: from %d, count %d", c.From, stateCount(t, c))
	}
	if c, err = s.Step(ctx, -1); err != nil || c.From != 1281 || c.Seq != 1499 || stateCount(t, c) != 1498 {
		t.Fatalf("step back: %+v %v", c, err)
	}
	s.Close()
	ix.Close()

	// The log grows: only the new records are indexed; snapshots stay.
	appendRecords(t, dir, 3001, 3500, 700)
	s, ix = openIndexed(t, dir, cache, 256)
	if ix.Last() != 3500 {
		t.Fatalf("after growth indexed through %d, want 3500", ix.Last())
	}
	if c, err = s.Goto(ctx, 1500); err != nil || c.From != 1281 {
		t.Fatalf("after growth, goto 1500 started at %d (%v): the snapshots should have stayed", c.From, err)
	}
	if seq, err := ix.Resolve(Point{Kind: PointTime, Time: synthStart.Add(3333*time.Millisecond + time.Microsecond)}); err != nil || seq != 3333 {
		t.Fatalf("time point: %d, %v", seq, err)
	}
	s.Close()
	ix.Close()

	// The log changes under the index (rewritten with other segments):
	// everything is indexed again and old snapshots are gone.
	if err := os.RemoveAll(filepath.Join(dir, layout.VersionDir(0))); err != nil {
		t.Fatal(err)
	}
	writeCounterLog(t, dir, 2000, 333, app)
	s, ix = openIndexed(t, dir, cache, 256)
	defer ix.Close()
	defer s.Close()
	if ix.Last() != 2000 {
		t.Fatalf("after the change indexed through %d, want 2000", ix.Last())
	}
	if c, err = s.Goto(ctx, 1500); err != nil || c.From != 1 || stateCount(t, c) != 1499 {
		t.Fatalf("after the change, goto 1500: from %d, %v", c.From, err)
	}
}

func layoutOpen(dir string) (*layout.Instance, error) { return layout.Open(vfs.Default(), dir) }
