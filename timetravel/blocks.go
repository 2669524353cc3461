package timetravel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// BlockSize is how many records one index block describes. The index
// keeps a block of records per Badger key rather than a key per record:
// writing ten million keys was what held indexing to ~225k records/s, and
// a block of varints is ~5 bytes a record instead of ~60.
const BlockSize = 1024

// A block is, for records start..start+n-1 (start = 1 + k·BlockSize):
//
//	uvarint segment ‖ uvarint offset ‖ varint time      of the first record
//	per record:  [uvarint 0 ‖ uvarint segment ‖ uvarint offset]   when it starts a new segment
//	             uvarint size ‖ varint time − the previous record's time
//
// Records follow each other in a segment, so each one's offset is the
// previous one's plus its size.
type blockWriter struct {
	start    int64
	n        int
	buf      []byte
	seg      uint64
	next     int64 // offset after the last record
	lastTime int64
}

func blockStart(seq int64) int64 { return (seq-1)/BlockSize*BlockSize + 1 }

func blockKey(start int64) []byte { return binary.BigEndian.AppendUint64([]byte("b"), uint64(start)) }

// add appends a record that starts at off in seg.
func (b *blockWriter) add(seq int64, seg uint64, off int64, size int, t int64) {
	if b.n == 0 {
		b.start = seq
		b.buf = binary.AppendUvarint(b.buf[:0], seg)
		b.buf = binary.AppendUvarint(b.buf, uint64(off))
		b.buf = binary.AppendVarint(b.buf, t)
		b.seg, b.next, b.lastTime = seg, off, t
	}
	if seg != b.seg || off != b.next {
		b.buf = binary.AppendUvarint(b.buf, 0)
		b.buf = binary.AppendUvarint(b.buf, seg)
		b.buf = binary.AppendUvarint(b.buf, uint64(off))
	}
	b.buf = binary.AppendUvarint(b.buf, uint64(size))
	b.buf = binary.AppendVarint(b.buf, t-b.lastTime)
	b.seg, b.next, b.lastTime = seg, off+int64(size), t
	b.n++
}

var errBadBlock = errors.New("timetravel: index block is damaged (delete the cache: it is only a cache)")

// decodeBlock calls f for each record of the block that starts at start,
// in order, until f returns false.
func decodeBlock(start int64, v []byte, f func(IndexEntry) bool) error {
	seg, n := binary.Uvarint(v)
	if n <= 0 {
		return errBadBlock
	}
	v = v[n:]
	off, n := binary.Uvarint(v)
	if n <= 0 {
		return errBadBlock
	}
	v = v[n:]
	t, n := binary.Varint(v)
	if n <= 0 {
		return errBadBlock
	}
	v = v[n:]
	next := int64(off)
	for seq := start; len(v) > 0; seq++ {
		size, n := binary.Uvarint(v)
		if n <= 0 {
			return errBadBlock
		}
		v = v[n:]
		if size == 0 { // a new segment
			s, n1 := binary.Uvarint(v)
			if n1 <= 0 {
				return errBadBlock
			}
			o, n2 := binary.Uvarint(v[n1:])
			if n2 <= 0 {
				return errBadBlock
			}
			v = v[n1+n2:]
			seg, next = s, int64(o)
			if size, n = binary.Uvarint(v); n <= 0 {
				return errBadBlock
			}
			v = v[n:]
		}
		dt, n := binary.Varint(v)
		if n <= 0 {
			return errBadBlock
		}
		v = v[n:]
		t += dt
		e := IndexEntry{Seq: seq, Segment: seg, Offset: next, Time: time.Unix(0, t).UTC(), Size: int(size)}
		next += int64(size)
		if !f(e) {
			return nil
		}
	}
	return nil
}

// reload resumes a partial block from its stored bytes.
func (b *blockWriter) reload(start int64, v []byte) error {
	b.n, b.buf = 0, b.buf[:0]
	var err error
	derr := decodeBlock(start, v, func(e IndexEntry) bool {
		if e.Seq != start+int64(b.n) {
			err = fmt.Errorf("%w: record %d out of order", errBadBlock, e.Seq)
			return false
		}
		b.add(e.Seq, e.Segment, e.Offset, e.Size, e.Time.UnixNano())
		return true
	})
	if derr != nil {
		return derr
	}
	return err
}
