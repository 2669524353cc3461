package timetravel

import (
	"errors"
	"io"
	"path/filepath"
	"testing"
)

// logEntries is what a scan of the log says of every record.
func logEntries(t *testing.T, dir string) []IndexEntry {
	t.Helper()
	in, err := layoutOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer lr.Close()
	var out []IndexEntry
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		seg, off := lr.Position()
		out = append(out, IndexEntry{Seq: rec.Seq, Segment: seg, Offset: off, Time: rec.LoggedTime(), Size: rec.EncodedSize(), Summary: summarize(rec)})
	}
}

func checkEntries(t *testing.T, what string, ix *Index, want []IndexEntry) {
	t.Helper()
	var got []IndexEntry
	if err := ix.Range(1, int64(len(want))+10, func(e IndexEntry) bool { got = append(got, e); return true }); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d entries, want %d", what, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%s: entry %d is %+v, the log says %+v", what, i, got[i], want[i])
		}
	}
}

// TestIndexBlocks: the index's blocks give every record's place, size,
// time and summary as a scan of the log does, across segment boundaries
// inside a block, after resuming a partial block when the log grew, and
// while Build runs (records not indexed yet come from the segments).
func TestIndexBlocks(t *testing.T) {
	app := counterServer(t)
	dir := filepath.Join(t.TempDir(), "server")
	writeCounterLog(t, dir, 3000, 700, app)
	in, err := layoutOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	ix, err := OpenIndex(cache, in)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	first, last, err := ix.Peek()
	if err != nil || first != 1 || last != 3000 {
		t.Fatalf("peek: %d..%d, %v; want 1..3000", first, last, err)
	}
	// Before and while the index builds: from the segments.
	done := ix.Build(nil)
	checkEntries(t, "during Build", ix, logEntries(t, dir))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkEntries(t, "built", ix, logEntries(t, dir))
	appendRecords(t, dir, 3001, 3500, 700) // 3000 is inside a block
	if err := ix.Update(nil); err != nil {
		t.Fatal(err)
	}
	want := logEntries(t, dir)
	checkEntries(t, "grown", ix, want)
	if e, ok, err := ix.Entry(3001); err != nil || !ok || e != want[3000] {
		t.Fatalf("entry 3001: %+v %v %v, want %+v", e, ok, err, want[3000])
	}
}

// TestIndexOpenClose: Open on a never-indexed log answers from Peek and
// builds in the background; closing the index under the build stops it
// cleanly, and the next Open completes the index from what it committed.
func TestIndexOpenClose(t *testing.T) {
	app := counterServer(t)
	dir := filepath.Join(t.TempDir(), "server")
	writeCounterLog(t, dir, 150_000, 40_000, app)
	in, err := layoutOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(t.TempDir(), "cache")
	ix, err := OpenIndex(cache, in)
	if err != nil {
		t.Fatal(err)
	}
	first, last, done, err := ix.Open(nil)
	if err != nil || first != 1 || last != 150_000 || done == nil {
		t.Fatalf("open: %d..%d done %v, %v", first, last, done != nil, err)
	}
	if seq, err := ix.Resolve(Point{Kind: PointEnd, text: "end"}); err != nil || seq != 150_000 {
		t.Fatalf("end while building: %d, %v", seq, err)
	}
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil && !errors.Is(err, errClosing) {
		t.Fatalf("the build, closed under it: %v", err)
	}
	ix, err = OpenIndex(cache, in)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if _, _, done, err = ix.Open(nil); err != nil {
		t.Fatal(err)
	}
	if done != nil {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if ix.Last() != 150_000 {
		t.Fatalf("indexed through %d after reopening, want 150000", ix.Last())
	}
	checkEntries(t, "reopened", ix, logEntries(t, dir))
}
