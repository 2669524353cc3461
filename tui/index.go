package tui

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/timetravel"
)

// logIndex is an instance's time-travel index shared by the commands of one
// browser. Reading pages only touches Badger, which is safe from any
// goroutine; Update, Resolve and Last also touch the index's bookkeeping and
// are serialized by mu. Close waits for readers (but not for a first
// indexing of a huge log: see close).
type logIndex struct {
	in   *layout.Instance
	ix   *timetravel.Index
	mu   sync.Mutex   // Update, Resolve
	life sync.RWMutex // readers hold it shared, close exclusively
	done bool
}

var errIndexClosed = errors.New("tui: the index is closed")

func openLogIndex(home string, in *layout.Instance) (*logIndex, error) {
	ix, err := timetravel.OpenIndex(timetravel.CacheDir(home, in.Dir), in)
	if err != nil {
		return nil, err // another reader's lock is not an error: OpenIndex falls back to a private index
	}
	return &logIndex{in: in, ix: ix}, nil
}

// use runs f unless the index is closed.
func (l *logIndex) use(f func() error) error {
	l.life.RLock()
	defer l.life.RUnlock()
	if l.done {
		return errIndexClosed
	}
	return f()
}

// update indexes what was appended to the log and returns the first and
// last records (0, 0 for an empty log).
func (l *logIndex) update(progress func(int64)) (first, last int64, err error) {
	err = l.use(func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.ix.Building() { // indexing in the background since open: the log as Peek found it
			first, last = l.ix.Peeked()
			return nil
		}
		if err := l.ix.Update(progress); err != nil {
			return fmt.Errorf("index the log of %s: %w", l.in.Dir, err)
		}
		last = l.ix.Last()
		if last == 0 {
			return nil
		}
		return l.ix.Range(0, last, func(e timetravel.IndexEntry) bool { first = e.Seq; return false })
	})
	return first, last, err
}

// open is update for the first look at the log: a log never indexed
// opens at once and is indexed in the background (timetravel.Index.Open).
func (l *logIndex) open(progress func(int64)) (first, last int64, err error) {
	err = l.use(func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		first, last, _, err = l.ix.Open(progress)
		if err != nil {
			return fmt.Errorf("index the log of %s: %w", l.in.Dir, err)
		}
		return nil
	})
	return first, last, err
}

// page returns the index entries of records from..to.
func (l *logIndex) page(from, to int64) ([]timetravel.IndexEntry, error) {
	var out []timetravel.IndexEntry
	err := l.use(func() error {
		out = make([]timetravel.IndexEntry, 0, max(0, to-from+1))
		return l.ix.Range(from, to, func(e timetravel.IndexEntry) bool {
			out = append(out, e)
			return true
		})
	})
	return out, err
}

// resolve turns a point into a record through the index.
func (l *logIndex) resolve(p timetravel.Point) (int64, error) {
	var seq int64
	err := l.use(func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		var err error
		seq, err = l.ix.Resolve(p)
		return err
	})
	return seq, err
}

// records reads the records of entries (consecutive) from the log, starting
// at the first one's indexed offset, and calls f for each.
func (l *logIndex) records(entries []timetravel.IndexEntry, f func(timetravel.IndexEntry, *logfmt.Record) error) error {
	if len(entries) == 0 {
		return nil
	}
	return l.use(func() error {
		e0 := entries[0]
		lr, err := l.in.NewLogReaderAt(e0.Segment, e0.Offset, e0.Seq-1)
		if err != nil {
			return err
		}
		defer lr.Close()
		for _, e := range entries {
			rec, err := lr.Next()
			if err == io.EOF {
				return fmt.Errorf("%s: the log ends before record %d", l.in.Dir, e.Seq)
			}
			if err != nil {
				return err
			}
			if rec.Seq != e.Seq {
				return fmt.Errorf("%s: found record %d where the index has %d (the log changed: reopen the instance)", l.in.Dir, rec.Seq, e.Seq)
			}
			if err := f(e, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// close closes the index once no command reads it. A command still
// indexing a long log is not waited for beyond a few seconds: the index is
// a cache, and Badger recovers one that was not closed.
func (l *logIndex) close() {
	done := make(chan struct{})
	go func() {
		l.life.Lock()
		defer l.life.Unlock()
		if !l.done {
			l.done = true
			l.ix.Close()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

// readMarkers returns, for each record that a checkpoint's state precedes,
// the checkpoints' numbers (the log view draws a line above the record).
func readMarkers(in *layout.Instance) map[int64][]uint64 {
	markers := map[int64][]uint64{}
	nums, _ := in.Checkpoints()
	for _, n := range nums {
		if c, err := in.ReadCheckpoint(n); err == nil {
			markers[c.NextSeq] = append(markers[c.NextSeq], n)
		}
	}
	for _, ks := range markers {
		sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	}
	return markers
}
