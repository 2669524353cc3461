package timetravel

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestReplayBeforeDamage: a record damaged in the middle of the log (not a
// torn tail) ends what can be read, but every point before it is reached,
// with and without the index, from the checkpoint before it; points past
// it are refused with ErrDamaged, naming the last readable record.
func TestReplayBeforeDamage(t *testing.T) {
	app := counterServer(t)
	dir := filepath.Join(t.TempDir(), "server")
	writeCounterLog(t, dir, 400, 100, app)
	in, err := layoutOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Damage record 250 (in log-3), in its messages.
	lr, err := in.NewLogReader(0)
	if err != nil {
		t.Fatal(err)
	}
	var seg uint64
	var off int64
	for {
		rec, err := lr.Next()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Seq == 250 {
			seg, off = lr.Position()
			off += int64(rec.EncodedSize()) - 3
			break
		}
	}
	lr.Close()
	f, err := os.OpenFile(in.SegmentPath(seg), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	ctx := context.Background()
	for _, indexed := range []bool{false, true} {
		opts := Options{Dir: dir}
		resolve := func(p Point) (int64, error) { return Resolve(in, p) }
		if indexed {
			ix, err := OpenIndex(filepath.Join(t.TempDir(), "cache"), in)
			if err != nil {
				t.Fatal(err)
			}
			defer ix.Close()
			if err := ix.Update(nil); err != nil {
				t.Fatalf("indexing a damaged log: %v", err)
			}
			if ix.Last() != 249 || ix.Damage() == nil {
				t.Fatalf("indexed through %d (damage %v), want 249 and the damage", ix.Last(), ix.Damage())
			}
			opts.Index, resolve = ix, ix.Resolve
		}
		seq, err := resolve(Point{Kind: PointSeq, Seq: 249})
		if err != nil || seq != 249 {
			t.Fatalf("indexed %v: resolve 249: %d, %v", indexed, seq, err)
		}
		for _, p := range []Point{{Kind: PointSeq, Seq: 250, text: "250"}, {Kind: PointSeq, Seq: 390, text: "390"}, {Kind: PointEnd, text: "end"}} {
			if _, err := resolve(p); !errors.Is(err, ErrDamaged) || errors.Is(err, ErrBadPoint) {
				t.Fatalf("indexed %v: resolve %s past the damage: %v, want ErrDamaged", indexed, p, err)
			}
		}
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Goto(ctx, 249)
		if err != nil {
			t.Fatalf("indexed %v: replay to 249, before the damage: %v", indexed, err)
		}
		if n := stateCount(t, c); n != 248 {
			t.Fatalf("indexed %v: count %d after record 249, want 248", indexed, n)
		}
		if _, err := s.Goto(ctx, 260); err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("indexed %v: replay past the damage: %v, want the damage named", indexed, err)
		}
		s.Close()
	}
}
