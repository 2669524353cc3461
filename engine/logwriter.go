package engine

import (
	"fmt"
	"github.com/ambr-dev/ambr/engine/hoptrace"
	"path/filepath"
	"sync"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// LogWriter appends records to an instance's log segments with adaptive
// group commit and no timers. Writes are pipelined with syncs: one
// fdatasync runs at a time, each covering everything written before it
// began, while the writer goes on writing what is submitted
// meanwhile (once it has gathered pipelineBytes, so that the writes stay
// large); when a sync completes, the next one starts at once over
// everything written since. Batch size therefore still follows the
// storage's latency by itself, and the writes no longer wait for it.
//
// Only what a completed sync covers is reported durable. The first record
// of each write says what was still unsynced when it was issued
// (logfmt.Record.UnsyncedFrom), so that a reader can tell what a crash can
// leave from corruption.
//
// It only ever creates new segments: recovery always continues in a segment
// numbered above every existing one, so a valid record is never overwritten.
// A roll to the next segment drains the pipeline: the old segment is synced
// before the new one is created, so a torn tail is only ever in the last.
type LogWriter struct {
	fs  vfs.FS
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []LogWrite
	queued  int // message bytes in queue
	closing bool
	err     error
	done    chan struct{}
	// The pipeline, under mu: the highest sequence number written, the
	// highest known synced, and whether a worker is writing, syncing.
	written, synced  int64
	writing, syncing bool
	// reported is the last sequence number reported durable (owned by
	// the worker that syncs).
	reported int64
	// segFirst is the sequence number of the current segment's first
	// record. No write follows a segment's first write before it is
	// synced: a reader that has read no record of a segment does not know
	// its first sequence number, and reads UnsyncedFrom against 1
	// (logfmt.SegmentReader).
	segFirst int64

	onDurable func(seq int64)
	onError   func(error)
	// fence, when replicas share the log: checked before each write and
	// after each sync, so a deposed primary writes nothing more and
	// reports nothing of its last flush durable.
	fence Fence

	// Owned by the writer goroutine. A write is parts, in order: ranges of
	// buf (record heads, small records) and large records' messages where
	// they are, sent with one vectored write.
	f   vfs.File
	seg uint64
	// end is where f's records end, alloc its size: the writer extends a
	// segment with zeros ahead of its writes (preallocBytes at a time) and
	// cuts them off when it closes the segment.
	end, alloc int64
	buf        []byte
	parts      []writePart
	iov        [][]byte

	statsMu sync.Mutex
	stats   WriterStats
}

// writePart is a range of the writer's buf, or, if ext is set, bytes of
// their own.
type writePart struct {
	start, end int
	ext        []byte
}

// minVecMessages is the size of a record's messages from which they are
// written from where they are rather than copied into the write buffer:
// below it, a copy is cheaper than another entry in the vectored write.
const minVecMessages = 16 << 10

// preallocBytes is how far ahead of its writes the writer extends a
// segment (Truncate, zeros; sparse on disk). An fdatasync after a write
// inside the file's size need not commit a new size: on ext4 here a 200 B
// write + fdatasync takes ~100 µs instead of ~180 appending
// (BENCHMARKS.md). Readers take zeros from a record boundary to the end
// of a segment as its end (logfmt.SegmentReader); 64 KiB keeps what a
// reader of a live segment reads past the last record small.
var preallocBytes int64 = 64 << 10

// pipelineBytes is how much the writer gathers while a sync runs before it
// writes: enough that writes stay large, little next to what one sync
// covers at full speed.
var pipelineBytes = 256 << 10

// WriterStats counts what the writer did, for benchmarks and `ambr ls`.
type WriterStats struct {
	// Flushes counts syncs, Writes the writes between them.
	Flushes int64
	Writes  int64
	Records int64
	Bytes   int64
	// MaxBatch is the largest number of records one sync made durable.
	MaxBatch int
}

// NewLogWriter starts a writer for the log directory dir. onDurable is called
// from the writer's goroutines, one call at a time, with the highest
// sequence number synced; onError once, with the error that stopped it.
func NewLogWriter(fsys vfs.FS, dir string, onDurable func(int64), onError func(error)) *LogWriter {
	return NewFencedLogWriter(fsys, dir, nil, onDurable, onError)
}

// NewFencedLogWriter is NewLogWriter for a primary among replicas: fence
// (nil: none) is checked before every write and after every sync, and
// segments are created under it.
func NewFencedLogWriter(fsys vfs.FS, dir string, fence Fence, onDurable func(int64), onError func(error)) *LogWriter {
	w := &LogWriter{fs: fsys, dir: dir, fence: fence, onDurable: onDurable, onError: onError, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	var wg sync.WaitGroup
	wg.Add(2)
	for range 2 {
		go func() { defer wg.Done(); w.work() }()
	}
	go func() {
		wg.Wait()
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		if w.f != nil {
			if err == nil {
				// Everything is synced: cut the zeros ahead of the last
				// record (a crash before this leaves them, which readers
				// take as the end).
				w.trim()
			}
			w.f.Close()
		}
		close(w.done)
		if err != nil && w.onError != nil {
			w.onError(err)
		}
	}()
	return w
}

// Submit queues records for writing. It never blocks on I/O.
func (w *LogWriter) Submit(writes []LogWrite) {
	if len(writes) == 0 {
		return
	}
	n := 0
	for _, lw := range writes {
		n += len(lw.Record.Messages)
	}
	w.mu.Lock()
	w.queue = append(w.queue, writes...)
	w.queued += n
	w.mu.Unlock()
	w.cond.Signal()
}

// Close writes what is queued, syncs, and stops. It returns the error that
// stopped the writer, if any.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.cond.Broadcast()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Stats returns a copy of the writer's counters.
func (w *LogWriter) Stats() WriterStats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stats
}

// work is one of the writer's two workers. Each takes whichever role is
// free and has work: the writer's (write what is queued, once it has
// pipelineBytes while a sync runs) or the syncer's (sync everything written
// so far). The worker that has just written goes on to sync it itself when
// no sync runs, so a lone record waits for no hand-off between goroutines;
// while it syncs, the other one writes what comes meanwhile.
func (w *LogWriter) work() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for w.err == nil {
		switch {
		case !w.writing && len(w.queue) > 0 && (!w.syncing || w.queued >= pipelineBytes || w.closing) && w.synced >= w.segFirst:
			batch := w.queue
			w.queue, w.queued = nil, 0
			w.writing = true
			w.mu.Unlock()
			err := w.write(batch)
			w.mu.Lock()
			w.writing = false
			w.fail(err)
			w.wakeOther()
		case !w.syncing && w.written > w.synced:
			w.syncing = true
			f, seg, seq := w.f, w.seg, w.written
			w.mu.Unlock()
			err := w.sync(f, seg, seq)
			w.mu.Lock()
			w.syncing = false
			if err == nil {
				w.synced = max(w.synced, seq)
			}
			w.fail(err)
			w.wakeOther()
		case w.closing && len(w.queue) == 0 && !w.writing && !w.syncing:
			w.cond.Broadcast() // the other worker stops too
			return
		default:
			w.cond.Wait()
		}
	}
}

// wakeOther wakes the other worker after this one finished a write or a
// sync, if it may have something to do: this worker looks at every case
// again itself before it waits, so the other is needed only for a second
// piece of work at the same time (a write beside a sync: there is a
// queue), to go on with a roll that waits for the sync to end (a write is
// under way), or to stop. A lone record, written and then synced by the
// same worker, wakes no one: waking an idle thread costs a futex call and,
// on a VM, an interprocessor interrupt (~10–15 µs here), on the way from
// the write to its sync. Called with mu held.
func (w *LogWriter) wakeOther() {
	if len(w.queue) > 0 || w.writing || w.closing || w.err != nil {
		w.cond.Broadcast()
	}
}

// fail records the first error that stops the writer. Called with mu held.
func (w *LogWriter) fail(err error) {
	if err != nil && w.err == nil {
		w.err = err
	}
}

// sync makes f durable up to record seq and reports it. Only one sync runs
// at a time, and it reports before it lets the next one start, so
// onDurable calls never overlap.
func (w *LogWriter) sync(f vfs.File, seg uint64, seq int64) error {
	if err := f.Sync(); err != nil {
		return fmt.Errorf("log writer: sync %s: %w", layout.SegmentName(seg), err)
	}
	hoptrace.Mark(hoptrace.LogSynced)
	// Synced is not yet durable for a replica: only if no newer primary
	// has sealed the log before the sync may any of it count.
	if w.fence != nil {
		if err := w.fence.Check(); err != nil {
			return err
		}
	}
	w.statsMu.Lock()
	w.stats.Flushes++
	w.stats.MaxBatch = max(w.stats.MaxBatch, int(seq-w.reported))
	w.statsMu.Unlock()
	w.reported = seq
	if w.onDurable != nil {
		w.onDurable(seq)
	}
	return nil
}

// unsyncedFrom returns what the first record of a write issued now must
// carry: the lowest sequence number written and not known synced, or 0.
func (w *LogWriter) unsyncedFrom() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.written > w.synced {
		return w.synced + 1
	}
	return 0
}

// write writes one batch: records of the current segment in one write, and
// a roll (drain the pipeline, create the next segment, make its entry
// durable) where the segment changes.
func (w *LogWriter) write(batch []LogWrite) error {
	hoptrace.Mark(hoptrace.LogWrite)
	w.buf, w.parts = w.buf[:0], w.parts[:0]
	var last int64
	for i, lw := range batch {
		start := i == 0
		if lw.Segment != w.seg {
			if err := w.writeBuf(last); err != nil {
				return err
			}
			if err := w.roll(lw.Segment); err != nil {
				return err
			}
			w.mu.Lock()
			w.segFirst = lw.Record.Seq
			w.mu.Unlock()
			start = true
		}
		// The first record of each file's part of this write starts a write:
		// readers use it to tell a torn tail from corruption.
		if start {
			lw.Record.Flags |= logfmt.FlagWriteStart
			lw.Record.UnsyncedFrom = w.unsyncedFrom()
		}
		if err := w.add(lw.Record); err != nil {
			return fmt.Errorf("log writer: %w", err)
		}
		last = lw.Record.Seq
	}
	if err := w.writeBuf(last); err != nil {
		return err
	}
	w.statsMu.Lock()
	w.stats.Records += int64(len(batch))
	w.statsMu.Unlock()
	return nil
}

// add encodes r into the write being gathered.
func (w *LogWriter) add(r *logfmt.Record) error {
	start := len(w.buf)
	var err error
	if len(r.Messages) < minVecMessages {
		w.buf, err = logfmt.AppendRecord(w.buf, r)
	} else {
		w.buf, err = logfmt.AppendRecordHead(w.buf, r)
	}
	if err != nil {
		w.buf = w.buf[:start]
		return err
	}
	if n := len(w.parts); n > 0 && w.parts[n-1].ext == nil && w.parts[n-1].end == start {
		w.parts[n-1].end = len(w.buf)
	} else {
		w.parts = append(w.parts, writePart{start: start, end: len(w.buf)})
	}
	if len(r.Messages) >= minVecMessages {
		w.parts = append(w.parts, writePart{ext: r.Messages})
	}
	return nil
}

// writeBuf writes what add gathered, in one vectored write; last is the
// sequence number of its last record.
func (w *LogWriter) writeBuf(last int64) error {
	if len(w.parts) == 0 {
		return nil
	}
	if w.fence != nil {
		if err := w.fence.Check(); err != nil {
			return err
		}
	}
	w.iov = w.iov[:0]
	var size int64
	for _, p := range w.parts {
		if p.ext != nil {
			w.iov = append(w.iov, p.ext)
		} else {
			w.iov = append(w.iov, w.buf[p.start:p.end])
		}
		size += int64(len(w.iov[len(w.iov)-1]))
	}
	if w.end+size > w.alloc && preallocBytes > 0 {
		// Extend the segment past this write: the fdatasync after it
		// commits the new size once, and the next ones over the zeros
		// have none to commit.
		alloc := w.end + size + preallocBytes
		if err := w.f.Truncate(alloc); err != nil {
			return fmt.Errorf("log writer: extend %s: %w", layout.SegmentName(w.seg), err)
		}
		w.alloc = alloc
	}
	n, err := vfs.WriteVec(w.f, w.iov)
	w.end += n
	clear(w.iov) // do not keep records' messages alive
	if err != nil {
		return fmt.Errorf("log writer: write %s: %w", layout.SegmentName(w.seg), err)
	}
	w.statsMu.Lock()
	w.stats.Bytes += n
	w.stats.Writes++
	w.statsMu.Unlock()
	clear(w.parts)
	w.buf, w.parts = w.buf[:0], w.parts[:0]
	w.mu.Lock()
	w.written = last
	w.mu.Unlock()
	return nil
}

func (w *LogWriter) roll(seg uint64) error {
	if w.f != nil {
		// Drain the pipeline: the old segment is synced as a whole before
		// the next one exists, so only the last segment can have a torn
		// tail. Its records are reported durable by the next sync, of the
		// new segment, which covers higher sequence numbers.
		w.mu.Lock()
		for w.syncing && w.err == nil {
			w.cond.Wait()
		}
		err := w.err
		w.syncing = err == nil // no sync of the old file while it closes
		w.mu.Unlock()
		if err != nil {
			return err
		}
		defer func() {
			w.mu.Lock()
			w.syncing = false
			w.mu.Unlock()
			w.cond.Broadcast()
		}()
		if err := w.cutZeros(); err != nil {
			return err
		}
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("log writer: sync %s: %w", layout.SegmentName(w.seg), err)
		}
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("log writer: close %s: %w", layout.SegmentName(w.seg), err)
		}
		w.mu.Lock()
		w.f = nil
		w.synced = w.written
		w.mu.Unlock()
	}
	path := filepath.Join(w.dir, layout.SegmentName(seg))
	var f vfs.File
	err := fenced(w.fence, func() (err error) {
		if f, err = w.fs.Create(path); err != nil {
			return fmt.Errorf("log writer: %w", err)
		}
		if _, err := f.Write(logfmt.AppendSegmentHeader(nil, uint32(seg))); err != nil {
			f.Close()
			return fmt.Errorf("log writer: write header of %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The new file's directory entry must be durable before any record in
	// it is acknowledged.
	if err := w.fs.SyncDir(w.dir); err != nil {
		f.Close()
		return fmt.Errorf("log writer: %w", err)
	}
	w.mu.Lock()
	w.f, w.seg = f, seg
	w.end, w.alloc = logfmt.SegmentHeaderSize, logfmt.SegmentHeaderSize
	w.mu.Unlock()
	return nil
}

// cutZeros truncates the current segment to its last record, dropping the
// zeros it was extended with, before the sync that closes it.
func (w *LogWriter) cutZeros() error {
	if w.alloc <= w.end {
		return nil
	}
	if err := w.f.Truncate(w.end); err != nil {
		return fmt.Errorf("log writer: cut %s to its records: %w", layout.SegmentName(w.seg), err)
	}
	w.alloc = w.end
	return nil
}

// trim is cutZeros and a sync, for a writer that stops with everything
// synced. Its errors change nothing durable: the zeros stay, and readers
// take them as the end.
func (w *LogWriter) trim() {
	if w.alloc <= w.end {
		return
	}
	if w.cutZeros() == nil {
		_ = w.f.Sync()
	}
}
