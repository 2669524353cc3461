package timetravel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// Index is the time-travel cache of one instance, kept in Badger under the
// home (never in the instance's directory): for every record its place in
// the log, logged time and a one-line summary, and snapshots of the app's
// state every few records, per app build. It is a cache: deleting it loses
// nothing. It notices a log that has grown (and indexes the rest) and one
// that has changed or shrunk (and starts over).
//
//	key                          value
//	m                            meta: JSON of what was indexed (segments, sizes, last record)
//	b ‖ be64(first seq)          a block: place, size and logged time of BlockSize records (blocks.go)
//	s ‖ build sha256 ‖ be64(seq) out count u64 ‖ out digest u64 ‖ the app's state after record
//	                             seq, replayed with that build (count and digest: its output so far)
//
// The summaries of records are not stored: a page of entries is read from
// the log as it is shown. While Build indexes in the background, entries
// past what is indexed come straight from the segments.
type Index struct {
	db *badger.DB
	in *layout.Instance
	// mu guards m and damage, which Update changes as it goes; Badger
	// itself may be read from any goroutine.
	mu sync.Mutex
	m  indexMeta
	// dir is the first record of each segment (Peek), for entries read
	// from the log before they are indexed; building says Build runs.
	dir      []segStart
	building atomic.Bool
	updating sync.Mutex
	closing  atomic.Bool
	// peekFirst and peekLast are the first and last records Peek found.
	peekFirst, peekLast atomic.Int64
	// private says the shared cache was in use by another reader: this
	// index lives in memory, for this process only.
	private bool
	// damage is the damaged record the last Update stopped at (nil: none):
	// the records before it are indexed and can be replayed.
	damage error
}

// IndexFormat is the version of the index layout; a cache of another version
// is rebuilt.
const IndexFormat = 3

type indexMeta struct {
	Format   int                  `json:"format"`
	Dir      string               `json:"dir"`
	Segments map[uint64]*segIndex `json:"segments"`
	Last     int64                `json:"last"`
}

// segIndex is how far a segment is indexed: its size then, where its last
// indexed record starts and ends, and that record's sequence number.
type segIndex struct {
	Size    int64 `json:"size"`
	LastOff int64 `json:"last_off"`
	End     int64 `json:"end"`
	LastSeq int64 `json:"last_seq"`
}

// IndexEntry is what the index knows about one record.
type IndexEntry struct {
	Seq     int64
	Segment uint64
	Offset  int64
	Time    time.Time
	Size    int
	// Summary is one line: sender, kind and method of each message.
	Summary string
}

// CacheDir is where the index of the instance in dir lives under home.
func CacheDir(home, dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	sum := sha256.Sum256([]byte(abs))
	return filepath.Join(home, ".timetravel", filepath.Base(abs)+"-"+hex.EncodeToString(sum[:6]))
}

// OpenIndex opens (or creates) the index in cacheDir for in.
//
// Any number of readers may work on one instance at once, live or not.
// Badger lets one process at a time hold a store, so the first reader gets
// the shared cache in cacheDir; a reader that finds it held by another
// (another ambr replay, ambr tui, …) gets a private index in memory
// instead (Private reports it), rather than waiting for or failing on the
// other's lock: the index is a cache, and a private one only costs the
// indexing and the snapshots the shared one would have saved.
func OpenIndex(cacheDir string, in *layout.Instance) (*Index, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("timetravel: index: %w", err)
	}
	opts := badger.DefaultOptions(cacheDir).WithLogger(nil).WithNumVersionsToKeep(1).
		WithMemTableSize(16 << 20).WithValueLogFileSize(64 << 20).WithBlockCacheSize(32 << 20).WithIndexCacheSize(16 << 20)
	db, err := badger.Open(opts)
	private := false
	if err != nil && isLockHeld(err) {
		private = true
		db, err = badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).WithNumVersionsToKeep(1).
			WithMemTableSize(16 << 20).WithBlockCacheSize(8 << 20).WithIndexCacheSize(4 << 20))
	}
	if err != nil {
		return nil, fmt.Errorf("timetravel: open index in %s (delete it if it is damaged: it is only a cache): %w", cacheDir, err)
	}
	ix := &Index{db: db, in: in, private: private}
	if err := ix.loadMeta(); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

// isLockHeld reports whether Badger refused to open a store because another
// process (or another Index in this one) holds its directory lock. Badger
// formats the flock error into its message rather than wrapping it.
func isLockHeld(err error) bool {
	return errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "Cannot acquire directory lock")
}

// Private reports that the shared cache was held by another reader when
// the index was opened: this one is in memory and goes when it is closed.
func (ix *Index) Private() bool { return ix.private }

// Close closes the index. An Update under way (Build's) stops at its next
// commit point; what it committed stays.
func (ix *Index) Close() error {
	ix.closing.Store(true)
	ix.updating.Lock()
	defer ix.updating.Unlock()
	return ix.db.Close()
}

// errClosing ends an Update when the index is closed under it.
var errClosing = errors.New("timetravel: index closed while indexing")

func (ix *Index) loadMeta() error {
	ix.m = indexMeta{Format: IndexFormat, Dir: ix.in.Dir, Segments: map[uint64]*segIndex{}}
	return ix.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get([]byte("m"))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			var m indexMeta
			if json.Unmarshal(v, &m) == nil && m.Format == IndexFormat && m.Segments != nil {
				ix.m = m
			}
			return nil
		})
	})
}

// Damage returns the damaged record the index stopped at, nil if the log
// reads to its end.
func (ix *Index) Damage() error {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.damage
}

// Last returns the last indexed record (0 if none).
func (ix *Index) Last() int64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return ix.m.Last
}

// flushEvery is how many blocks Update writes before it commits them and
// moves Last: what a reader sees of an index being built.
const flushEvery = 64

// Update brings the index up to date with the log: it indexes records
// appended since, or starts over when the log changed under it. progress,
// if set, is called with the number of records indexed so far. Readers may
// use the index meanwhile (see Build).
func (ix *Index) Update(progress func(n int64)) error {
	ix.updating.Lock() // one Update at a time (Build's may be running)
	defer ix.updating.Unlock()
	segs, err := ix.in.Segments()
	if err != nil {
		return err
	}
	ix.mu.Lock()
	ix.damage = nil
	valid := ix.stillValid(segs)
	ix.mu.Unlock()
	if !valid {
		if err := ix.db.DropAll(); err != nil {
			return fmt.Errorf("timetravel: reset index: %w", err)
		}
		ix.mu.Lock()
		ix.m = indexMeta{Format: IndexFormat, Dir: ix.in.Dir, Segments: map[uint64]*segIndex{}}
		ix.mu.Unlock()
	}
	// Resume after the last indexed record, or from the first segment.
	m := ix.copyMeta()
	var lr *layout.LogReader
	var bw blockWriter
	if m.Last > 0 {
		seg, si := lastSegment(m)
		lr, err = ix.in.NewLogReaderAt(seg, si.End, si.LastSeq)
		if err == nil && m.Last%BlockSize != 0 { // a partial block to go on with
			start := blockStart(m.Last)
			err = ix.db.View(func(txn *badger.Txn) error {
				it, err := txn.Get(blockKey(start))
				if err != nil {
					return err
				}
				return it.Value(func(v []byte) error { return bw.reload(start, v) })
			})
		}
	} else {
		lr, err = ix.in.NewLogReader(0)
	}
	if err != nil {
		return err
	}
	defer lr.Close()
	wb := ix.db.NewWriteBatch()
	defer func() { wb.Cancel() }()
	var n int64
	blocks := 0
	commit := func() error {
		if bw.n > 0 {
			if err := wb.Set(blockKey(bw.start), append([]byte(nil), bw.buf...)); err != nil {
				return fmt.Errorf("timetravel: index: %w", err)
			}
		}
		for s, si := range m.Segments {
			if st, err := os.Stat(ix.in.SegmentPath(s)); err == nil {
				si.Size = st.Size()
			}
		}
		meta, _ := json.Marshal(m)
		if err := wb.Set([]byte("m"), meta); err != nil {
			return err
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("timetravel: index: %w", err)
		}
		wb = ix.db.NewWriteBatch()
		ix.mu.Lock()
		ix.m = copyMeta(m)
		ix.mu.Unlock()
		return nil
	}
	var damage error
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, logfmt.ErrCorrupt) {
			// What comes before the damage can still be replayed.
			damage = err
			break
		}
		if err != nil {
			return err
		}
		seg, off := lr.Position()
		size := rec.EncodedSize()
		bw.add(rec.Seq, seg, off, size, rec.Time)
		si := m.Segments[seg]
		if si == nil {
			si = &segIndex{}
			m.Segments[seg] = si
		}
		si.LastOff, si.End, si.LastSeq = off, off+int64(size), rec.Seq
		m.Last = rec.Seq
		n++
		if bw.n == BlockSize {
			if err := wb.Set(blockKey(bw.start), append([]byte(nil), bw.buf...)); err != nil {
				return fmt.Errorf("timetravel: index: %w", err)
			}
			bw.n = 0
			if blocks++; blocks%flushEvery == 0 {
				if err := commit(); err != nil {
					return err
				}
			}
		}
		if n%4096 == 0 {
			if progress != nil {
				progress(n)
			}
			if ix.closing.Load() {
				return errClosing
			}
		}
	}
	if err := commit(); err != nil {
		return err
	}
	ix.mu.Lock()
	ix.damage = damage
	ix.mu.Unlock()
	if progress != nil {
		progress(n)
	}
	return nil
}

// Build runs Update in the background; the channel gets its result. The
// index answers meanwhile: Range reads the records not yet indexed from
// the log, and Peek says where the log ends.
func (ix *Index) Build(progress func(n int64)) <-chan error {
	done := make(chan error, 1)
	ix.building.Store(true)
	go func() {
		err := ix.Update(progress)
		ix.building.Store(false)
		done <- err
	}()
	return done
}

// Open makes the index ready for a browser and returns the log's first
// and last records: an index that holds records is brought up to date
// (what was appended since, usually little); a log never indexed opens at
// once with Peek, and Build indexes it in the background (done gets the
// result; nil when there was nothing to wait for).
func (ix *Index) Open(progress func(n int64)) (first, last int64, done <-chan error, err error) {
	if ix.Last() > 0 {
		if err := ix.Update(progress); err != nil {
			return 0, 0, nil, err
		}
		if last = ix.Last(); last == 0 {
			return 0, 0, nil, nil
		}
		err = ix.blocks(1, last, func(e IndexEntry) bool { first = e.Seq; return false })
		return first, last, nil, err
	}
	if first, last, err = ix.Peek(); err != nil {
		return 0, 0, nil, err
	}
	return first, last, ix.Build(progress), nil
}

// Building reports whether Build is still indexing; Peeked is then the
// log's first and last records as Peek found them.
func (ix *Index) Building() bool { return ix.building.Load() }

// Peeked returns the first and last records Peek found (0, 0 before).
func (ix *Index) Peeked() (first, last int64) { return ix.peekFirst.Load(), ix.peekLast.Load() }

func (ix *Index) copyMeta() indexMeta {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	return copyMeta(ix.m)
}

func copyMeta(m indexMeta) indexMeta {
	c := m
	c.Segments = make(map[uint64]*segIndex, len(m.Segments))
	for k, v := range m.Segments {
		si := *v
		c.Segments[k] = &si
	}
	return c
}

// stillValid checks that what was indexed is still in the log as it was:
// every indexed segment is there, no smaller, and its last indexed record is
// still the same record.
func (ix *Index) stillValid(present []uint64) bool {
	if ix.m.Dir != ix.in.Dir && ix.m.Last > 0 {
		return false
	}
	have := map[uint64]bool{}
	for _, s := range present {
		have[s] = true
	}
	for s, si := range ix.m.Segments {
		if !have[s] {
			return false
		}
		st, err := os.Stat(ix.in.SegmentPath(s))
		if err != nil || st.Size() < si.End {
			return false
		}
		lr, err := ix.in.NewLogReaderAt(s, si.LastOff, si.LastSeq-1)
		if err != nil {
			return false
		}
		rec, err := lr.Next()
		ok := err == nil && rec.Seq == si.LastSeq
		lr.Close()
		if !ok {
			return false
		}
	}
	return true
}

func lastSegment(m indexMeta) (uint64, *segIndex) {
	keys := make([]uint64, 0, len(m.Segments))
	for s := range m.Segments {
		keys = append(keys, s)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	s := keys[len(keys)-1]
	return s, m.Segments[s]
}

// summarize is a one-line description of a record's messages.
func summarize(rec *logfmt.Record) string {
	var parts []string
	src, left := 0, uint32(0)
	if len(rec.Sources) > 0 {
		left = rec.Sources[0].Count
	}
	it := logfmt.NewMessageIter(rec.Messages)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		for left == 0 && src+1 < len(rec.Sources) {
			src++
			left = rec.Sources[src].Count
		}
		left--
		from := ""
		if src < len(rec.Sources) {
			from = rec.Sources[src].Peer
		}
		desc := m.Type.String()
		if m.Type == logfmt.TypeRPC {
			r, err := logfmt.ParseRPC(m.Data)
			if err == nil {
				desc = strings.ToLower(r.Kind.String())
				if name, result, _, ok := immortal.DecodeArgs(r.Args, r.Reserved); ok {
					if result {
						name = "result"
					}
					desc += " " + name
				} else {
					desc += fmt.Sprintf(" method %d", r.MethodID)
				}
			}
		}
		parts = append(parts, from+" "+desc)
		if len(parts) == 8 {
			parts = append(parts, "…")
			break
		}
	}
	return strings.Join(parts, "; ")
}

// Entry returns what the index knows about record seq, with its summary
// read from the log.
func (ix *Index) Entry(seq int64) (IndexEntry, bool, error) {
	var e IndexEntry
	found := false
	err := ix.Range(seq, seq, func(x IndexEntry) bool { e, found = x, true; return false })
	return e, found, err
}

// entryAt is Entry without the summary (no read of the log).
func (ix *Index) entryAt(seq int64) (IndexEntry, bool, error) {
	if seq < 1 || seq > ix.Last() {
		return IndexEntry{}, false, nil
	}
	var e IndexEntry
	found := false
	err := ix.blocks(seq, seq, func(x IndexEntry) bool { e, found = x, true; return false })
	return e, found, err
}

// blocks calls f for the indexed records from..to in order, from the
// index alone (no summaries).
func (ix *Index) blocks(from, to int64, f func(IndexEntry) bool) error {
	from = max(from, 1)
	return ix.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 4, Prefix: []byte("b")})
		defer it.Close()
		more := true
		for it.Seek(blockKey(blockStart(from))); it.Valid() && more; it.Next() {
			start := int64(binary.BigEndian.Uint64(it.Item().Key()[1:]))
			if start > to {
				return nil
			}
			err := it.Item().Value(func(v []byte) error {
				return decodeBlock(start, v, func(e IndexEntry) bool {
					switch {
					case e.Seq < from:
						return true
					case e.Seq > to:
						more = false
						return false
					}
					more = f(e)
					return more
				})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Range calls f for records from..to in order (a page of the log view),
// each with its summary, read from the log. Records not indexed yet (while
// Build runs) are read from the log alone.
func (ix *Index) Range(from, to int64, f func(IndexEntry) bool) error {
	from = max(from, 1)
	last := ix.Last()
	var lr *layout.LogReader
	defer func() {
		if lr != nil {
			lr.Close()
		}
	}()
	var readErr error
	stopped := false
	if from <= last {
		err := ix.blocks(from, min(to, last), func(e IndexEntry) bool {
			if lr == nil && readErr == nil {
				lr, readErr = ix.in.NewLogReaderAt(e.Segment, e.Offset, e.Seq-1)
			}
			e.Summary = "(unreadable)"
			if readErr == nil {
				rec, err := lr.Next()
				switch {
				case err != nil:
					readErr = err
				case rec.Seq != e.Seq:
					readErr = fmt.Errorf("%s: found record %d where the index has %d (the log changed: update the index)", ix.in.Dir, rec.Seq, e.Seq)
				default:
					e.Summary = summarize(rec)
				}
			}
			if !f(e) {
				stopped = true
				return false
			}
			return true
		})
		if err != nil || stopped || to <= last {
			return err
		}
		from = last + 1
	}
	if !ix.building.Load() {
		return nil // past the end of the log as indexed
	}
	return ix.scanRange(from, to, f)
}

// AtOrBefore returns the last record logged at or before t (0 if none),
// by binary search over the records' logged times.
func (ix *Index) AtOrBefore(t time.Time) (int64, error) {
	lo, hi := int64(1), ix.Last()
	ans := int64(0)
	for lo <= hi {
		mid := lo + (hi-lo)/2
		e, ok, err := ix.entryAt(mid)
		if err != nil {
			return 0, err
		}
		if !ok {
			// Below the oldest kept record.
			lo = mid + 1
			continue
		}
		if e.Time.After(t) {
			hi = mid - 1
		} else {
			ans, lo = mid, mid+1
		}
	}
	return ans, nil
}

func snapKey(build string, seq int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte("s"), build...), uint64(seq))
}

// Snapshot is a stored state of the app after record Seq, with the count
// and chained digest of its output up to there (to check what it sends
// from there on against the log).
type Snapshot struct {
	Seq                 int64
	OutCount, OutDigest uint64
	State               []byte
}

// Snapshot returns the newest snapshot of build's state at or before seq.
func (ix *Index) Snapshot(build string, seq int64) (snap Snapshot, ok bool, err error) {
	err = ix.db.View(func(txn *badger.Txn) error {
		prefix := append([]byte("s"), build...)
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
		defer it.Close()
		it.Seek(snapKey(build, seq))
		if !it.Valid() {
			return nil
		}
		k := it.Item().Key()
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		if len(v) < 16 {
			return fmt.Errorf("timetravel: snapshot at record %d is damaged (delete the cache: it is only a cache)", int64(binary.BigEndian.Uint64(k[len(k)-8:])))
		}
		snap = Snapshot{Seq: int64(binary.BigEndian.Uint64(k[len(k)-8:])), OutCount: binary.BigEndian.Uint64(v), OutDigest: binary.BigEndian.Uint64(v[8:]), State: v[16:]}
		ok = true
		return nil
	})
	return snap, ok, err
}

// PutSnapshot stores build's state after a record.
func (ix *Index) PutSnapshot(build string, snap Snapshot) error {
	v := make([]byte, 16, 16+len(snap.State))
	binary.BigEndian.PutUint64(v, snap.OutCount)
	binary.BigEndian.PutUint64(v[8:], snap.OutDigest)
	v = append(v, snap.State...)
	return ix.db.Update(func(txn *badger.Txn) error { return txn.Set(snapKey(build, snap.Seq), v) })
}
