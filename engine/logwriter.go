package engine

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// LogWriter appends records to an instance's log segments with adaptive
// group commit and no timers: while one write+sync is in flight, submitted
// records accumulate; when it completes, everything accumulated goes out in
// one write and one sync. Batch size therefore follows the storage's latency
// by itself.
//
// It only ever creates new segments: recovery always continues in a segment
// numbered above every existing one, so a valid record is never overwritten.
type LogWriter struct {
	fs  vfs.FS
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []LogWrite
	closing bool
	err     error
	done    chan struct{}

	onDurable func(seq int64)
	onError   func(error)
	// fence, when replicas share the log: checked before each write and
	// after each sync, so a deposed primary writes nothing more and
	// reports nothing of its last flush durable.
	fence Fence

	// Owned by the writer goroutine. A write is parts, in order: ranges of
	// buf (record heads, small records) and large records' messages where
	// they are, sent with one vectored write.
	f     vfs.File
	seg   uint64
	buf   []byte
	parts []writePart
	iov   [][]byte

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

// WriterStats counts what the writer did, for benchmarks and `ambr ls`.
type WriterStats struct {
	Flushes int64
	Records int64
	Bytes   int64
	// MaxBatch is the largest number of records written by one flush.
	MaxBatch int
}

// NewLogWriter starts a writer for the log directory dir. onDurable is called
// from the writer's goroutine with the highest sequence number synced;
// onError once, with the error that stopped it.
func NewLogWriter(fsys vfs.FS, dir string, onDurable func(int64), onError func(error)) *LogWriter {
	return NewFencedLogWriter(fsys, dir, nil, onDurable, onError)
}

// NewFencedLogWriter is NewLogWriter for a primary among replicas: fence
// (nil: none) is checked before every write and after every sync, and
// segments are created under it.
func NewFencedLogWriter(fsys vfs.FS, dir string, fence Fence, onDurable func(int64), onError func(error)) *LogWriter {
	w := &LogWriter{fs: fsys, dir: dir, fence: fence, onDurable: onDurable, onError: onError, done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.loop()
	return w
}

// Submit queues records for writing. It never blocks on I/O.
func (w *LogWriter) Submit(writes []LogWrite) {
	if len(writes) == 0 {
		return
	}
	w.mu.Lock()
	w.queue = append(w.queue, writes...)
	w.mu.Unlock()
	w.cond.Signal()
}

// Close writes what is queued, syncs, and stops. It returns the error that
// stopped the writer, if any.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	w.cond.Signal()
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

func (w *LogWriter) loop() {
	defer close(w.done)
	defer func() {
		if w.f != nil {
			w.f.Close()
		}
	}()
	for {
		w.mu.Lock()
		for len(w.queue) == 0 && !w.closing {
			w.cond.Wait()
		}
		batch := w.queue
		w.queue = nil
		closing := w.closing
		w.mu.Unlock()
		if len(batch) > 0 {
			if err := w.flush(batch); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				if w.onError != nil {
					w.onError(err)
				}
				return
			}
		}
		if closing {
			w.mu.Lock()
			empty := len(w.queue) == 0
			w.mu.Unlock()
			if empty {
				return
			}
		}
	}
}

// flush writes one batch: records of the current segment in one write, a
// roll (sync, create the next segment, make its entry durable) where the
// segment changes, and one sync at the end.
func (w *LogWriter) flush(batch []LogWrite) error {
	w.buf, w.parts = w.buf[:0], w.parts[:0]
	var last int64
	for i, lw := range batch {
		start := i == 0
		if lw.Segment != w.seg {
			if err := w.writeBuf(); err != nil {
				return err
			}
			if err := w.roll(lw.Segment); err != nil {
				return err
			}
			start = true
		}
		// The first record of each file's part of this write starts a write:
		// readers use it to tell a torn last write from corruption.
		if start {
			lw.Record.Flags |= logfmt.FlagWriteStart
		}
		if err := w.add(lw.Record); err != nil {
			return fmt.Errorf("log writer: %w", err)
		}
		last = lw.Record.Seq
	}
	if err := w.writeBuf(); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("log writer: sync %s: %w", layout.SegmentName(w.seg), err)
	}
	// Synced is not yet durable for a replica: only if no newer primary
	// has sealed the log before the sync may any of it count.
	if w.fence != nil {
		if err := w.fence.Check(); err != nil {
			return err
		}
	}
	w.statsMu.Lock()
	w.stats.Flushes++
	w.stats.Records += int64(len(batch))
	w.stats.MaxBatch = max(w.stats.MaxBatch, len(batch))
	w.statsMu.Unlock()
	if w.onDurable != nil {
		w.onDurable(last)
	}
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

// writeBuf writes what add gathered, in one vectored write.
func (w *LogWriter) writeBuf() error {
	if len(w.parts) == 0 {
		return nil
	}
	if w.fence != nil {
		if err := w.fence.Check(); err != nil {
			return err
		}
	}
	w.iov = w.iov[:0]
	for _, p := range w.parts {
		if p.ext != nil {
			w.iov = append(w.iov, p.ext)
		} else {
			w.iov = append(w.iov, w.buf[p.start:p.end])
		}
	}
	n, err := vfs.WriteVec(w.f, w.iov)
	clear(w.iov) // do not keep records' messages alive
	if err != nil {
		return fmt.Errorf("log writer: write %s: %w", layout.SegmentName(w.seg), err)
	}
	w.statsMu.Lock()
	w.stats.Bytes += n
	w.statsMu.Unlock()
	clear(w.parts)
	w.buf, w.parts = w.buf[:0], w.parts[:0]
	return nil
}

func (w *LogWriter) roll(seg uint64) error {
	if w.f != nil {
		if err := w.f.Sync(); err != nil {
			return fmt.Errorf("log writer: sync %s: %w", layout.SegmentName(w.seg), err)
		}
		if err := w.f.Close(); err != nil {
			return fmt.Errorf("log writer: close %s: %w", layout.SegmentName(w.seg), err)
		}
		w.f = nil
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
	w.f, w.seg = f, seg
	return nil
}
