package timetravel

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentReaders: several readers of one instance at once, each
// with its own Index on the same cache directory (as separate ambr replay
// and ambr tui processes would be), all index the log and reach the same
// states; exactly the ones that found the shared cache held got a private
// index, and the shared cache serves a reader that comes after them.
// .ci/run runs it under -race.
func TestConcurrentReaders(t *testing.T) {
	app := counterServer(t)
	dir := filepath.Join(t.TempDir(), "server")
	cache := filepath.Join(t.TempDir(), "cache")
	writeCounterLog(t, dir, 600, 200, app)
	ctx := context.Background()

	const readers = 4
	targets := []int64{1, 250, 600, 399}
	var wg sync.WaitGroup
	counts := make([]int, readers)
	private := make([]bool, readers)
	errs := make([]error, readers)
	hold := make(chan struct{})
	opened := make(chan struct{}, readers)
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			in, err := layoutOpen(dir)
			if err != nil {
				errs[i] = err
				return
			}
			ix, err := OpenIndex(cache, in)
			if err != nil {
				errs[i] = err
				opened <- struct{}{}
				return
			}
			defer ix.Close()
			opened <- struct{}{}
			<-hold // every reader has its index open before any closes one
			private[i] = ix.Private()
			if err := ix.Update(nil); err != nil {
				errs[i] = err
				return
			}
			s, err := Open(Options{Dir: dir, Index: ix, SnapshotEvery: 128})
			if err != nil {
				errs[i] = err
				return
			}
			defer s.Close()
			c, err := s.Goto(ctx, targets[i])
			if err != nil {
				errs[i] = err
				return
			}
			counts[i] = stateCount(t, c)
		}(i)
	}
	for i := 0; i < readers; i++ {
		<-opened
	}
	close(hold)
	wg.Wait()
	shared := 0
	for i := 0; i < readers; i++ {
		if errs[i] != nil {
			t.Fatalf("reader %d: %v", i, errs[i])
		}
		// The counter server's count after record r is r-1 (record 1 is
		// the initial message).
		if want := int(targets[i] - 1); counts[i] != want {
			t.Errorf("reader %d at record %d: count %d, want %d", i, targets[i], counts[i], want)
		}
		if !private[i] {
			shared++
		}
	}
	if shared != 1 {
		t.Fatalf("%d readers got the shared cache, want exactly 1 (private: %v)", shared, private)
	}
	// All closed: the next reader gets the shared cache, already indexed.
	in, err := layoutOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := OpenIndex(cache, in)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Private() || ix.Last() != 600 {
		t.Fatalf("after the readers: private %v, indexed through %d; want the shared cache through 600", ix.Private(), ix.Last())
	}
}
