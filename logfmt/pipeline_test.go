package logfmt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// pipelinedLog is a log written the way the coordinator's LogWriter writes
// it: writes of a few records each, at most one sync running at a time,
// each sync covering everything written before it began, and writes issued
// while a sync runs. Each write's first record carries FlagWriteStart and
// UnsyncedFrom.
type pipelinedLog struct {
	bytes   []byte
	ends    []int // ends[i]: offset after record i+1
	records []*Record
	// states: after every operation (write, sync start, sync end), the
	// file's length, how much of it is durable, and the highest record
	// acknowledged (reported durable).
	states []logState
}

type logState struct {
	op            string
	written       int
	durable       int
	acked         int64
	lastWriteFrom int // offset of the newest write
}

// newPipelinedLog writes nrec records in writes of 1–3 records, with syncs
// started and completed in an order chosen by rng.
func newPipelinedLog(rng *rand.Rand, nrec int) *pipelinedLog {
	l := &pipelinedLog{bytes: AppendSegmentHeader(nil, 1)}
	var (
		written, synced int64 // highest record written, known synced
		syncing         bool
		syncOff         int   // bytes the running sync covers
		syncSeq         int64 // records it covers
		durable         = len(l.bytes)
		lastWrite       int
	)
	snap := func(op string) {
		l.states = append(l.states, logState{op: op, written: len(l.bytes), durable: durable, acked: synced, lastWriteFrom: lastWrite})
	}
	seq := int64(1)
	for seq <= int64(nrec) || syncing || written > synced {
		switch {
		case seq <= int64(nrec) && (rng.Intn(3) > 0 || !syncing && written == synced):
			// A write, while a sync may be running.
			n := 1 + rng.Intn(3)
			lastWrite = len(l.bytes)
			for i := 0; i < n && seq <= int64(nrec); i++ {
				r := diskTestRecord(seq, 1+rng.Intn(3))
				if i == 0 {
					r.Flags = FlagWriteStart
					if written > synced {
						r.UnsyncedFrom = synced + 1
					}
				}
				b, err := AppendRecord(nil, r)
				if err != nil {
					panic(err)
				}
				l.bytes = append(l.bytes, b...)
				l.ends = append(l.ends, len(l.bytes))
				l.records = append(l.records, r)
				written = seq
				seq++
			}
			snap(fmt.Sprintf("write to %d", written))
		case !syncing && written > synced:
			syncing, syncOff, syncSeq = true, len(l.bytes), written
			snap(fmt.Sprintf("sync of %d starts", syncSeq))
		case syncing:
			syncing, durable, synced = false, syncOff, syncSeq
			snap(fmt.Sprintf("sync of %d ends", syncSeq))
		}
	}
	return l
}

// TestSegmentPipelinedCrashStates: after every operation of many pipelined
// runs, every crash state a disk can leave (the file cut anywhere past its
// durable part, and any of the not yet durable 64-byte blocks before the
// cut lost, as pages reach the disk in any order) reads as a prefix of the
// log ending in a clean end or a torn tail, never as corruption, and holds
// every acknowledged record.
func TestSegmentPipelinedCrashStates(t *testing.T) {
	const block = 64
	for run := 0; run < 3; run++ {
		rng := rand.New(rand.NewSource(int64(run)))
		l := newPipelinedLog(rng, 12)
		for si, st := range l.states {
			check := func(what string, b []byte) {
				t.Helper()
				recs, _, err := readSegment(b)
				// The same state in a segment the writer had extended
				// with zeros ahead of its writes reads the same.
				zrecs, _, zerr := readSegment(append(bytes.Clone(b), make([]byte, 300)...))
				if len(zrecs) != len(recs) || (err == nil) != (zerr == nil) {
					t.Fatalf("run %d, crash after op %d (%s), %s: %d records and %v; extended with zeros: %d records and %v", run, si, st.op, what, len(recs), err, len(zrecs), zerr)
				}
				if err != nil && !IsTornTail(err) {
					t.Fatalf("run %d, crash after op %d (%s), %s: %v", run, si, st.op, what, err)
				}
				if int64(len(recs)) < st.acked {
					t.Fatalf("run %d, crash after op %d (%s), %s: %d records read, %d were acknowledged", run, si, st.op, what, len(recs), st.acked)
				}
				for i := range recs {
					if diff := cmp.Diff(*l.records[i], recs[i]); diff != "" {
						t.Fatalf("run %d, crash after op %d (%s), %s: record %d (-want +got):\n%s", run, si, st.op, what, i+1, diff)
					}
				}
			}
			// Every cut (the torn offsets), all blocks kept.
			for cut := st.durable; cut <= st.written; cut++ {
				check(fmt.Sprintf("cut at %d", cut), l.bytes[:cut])
			}
			// Scattered loss: each block past the durable part lost at
			// random, the whole file length present.
			nblocks := (st.written - st.durable + block - 1) / block
			for k := 0; k < 10 && nblocks > 0; k++ {
				b := bytes.Clone(l.bytes[:st.written])
				for i := 0; i < nblocks; i++ {
					if rng.Intn(2) == 0 {
						from := st.durable + i*block
						clear(b[from:min(from+block, len(b))])
					}
				}
				check(fmt.Sprintf("scattered loss %d", k), b)
			}
			// One block of the newest write lost, everything else kept:
			// the case the version 1 rule would have called corrupt.
			for from := st.lastWriteFrom; from < st.written && from >= st.durable; from += block {
				b := bytes.Clone(l.bytes[:st.written])
				clear(b[from:min(from+block, len(b))])
				check(fmt.Sprintf("block at %d lost", from), b)
			}
		}
	}
}

// TestSegmentZeroTail: zeros from a record boundary to the end of a
// segment (the writer's preallocation) are a clean end at that boundary,
// whatever their length, even shorter than a record header; zeros followed
// by a record that began a write after everything before it was synced are
// corruption (that record's predecessors were durable, and lost); zeros
// followed by other bytes, a torn tail.
func TestSegmentZeroTail(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(AppendSegmentHeader(nil, 1))
	for seq := int64(1); seq <= 3; seq++ {
		r := diskTestRecord(seq, 1)
		if seq == 1 {
			r.Flags = FlagWriteStart
		}
		b, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
	}
	seg, end := buf.Bytes(), int64(buf.Len())
	for _, n := range []int{1, RecordFixedSizeV1 - 1, RecordFixedSizeV1, 4096, 64 << 10} {
		recs, off, err := readSegment(append(bytes.Clone(seg), make([]byte, n)...))
		if err != nil || len(recs) != 3 || off != end {
			t.Fatalf("%d zeros after 3 records: %d records, offset %d, %v; want 3, %d, a clean end", n, len(recs), off, err, end)
		}
	}
	// A later write that began with everything before it synced.
	later := diskTestRecord(5, 1)
	later.Flags = FlagWriteStart
	lb, err := AppendRecord(nil, later)
	if err != nil {
		t.Fatal(err)
	}
	b := append(append(bytes.Clone(seg), make([]byte, 200)...), lb...)
	if recs, _, err := readSegment(b); !errors.Is(err, ErrCorrupt) || len(recs) != 3 {
		t.Fatalf("zeros, then a write issued after they were synced: %d records, %v; want 3 and corruption", len(recs), err)
	}
	// Read live (the segment may be being written: the zeros may be a
	// read from before the write), the same bytes are a torn tail.
	sr, err := NewSegmentReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	sr.SetLive(true)
	n := 0
	for ; ; n++ {
		if _, err = sr.Next(); err != nil {
			break
		}
	}
	if !IsTornTail(err) || n != 3 || sr.Offset() != end {
		t.Fatalf("live: zeros, then a later write: %d records, offset %d, %v; want 3, %d, a torn tail", n, sr.Offset(), err, end)
	}
	// The same write issued while record 4 was unsynced: a torn tail.
	later.UnsyncedFrom = 4
	if lb, err = AppendRecord(nil, later); err != nil {
		t.Fatal(err)
	}
	b = append(append(bytes.Clone(seg), make([]byte, 200)...), lb...)
	if recs, _, err := readSegment(b); !IsTornTail(err) || len(recs) != 3 {
		t.Fatalf("zeros, then a write issued while record 4 was unsynced: %d records, %v; want 3 and a torn tail", len(recs), err)
	}
	// Zeros, then garbage: a torn tail.
	b = append(append(bytes.Clone(seg), make([]byte, 200)...), 0xff, 0x01)
	if recs, _, err := readSegment(b); !IsTornTail(err) || len(recs) != 3 {
		t.Fatalf("zeros, then garbage: %d records, %v; want 3 and a torn tail", len(recs), err)
	}
}

// TestSegmentPipelinedCorruption: damage in a record that was synced
// before a later write began is corruption, even though the log is
// pipelined; damage in a record still unsynced when every later write
// began is a torn tail.
func TestSegmentPipelinedCorruption(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(AppendSegmentHeader(nil, 1))
	var ends []int
	// Writes: 1-2 (nothing unsynced), 3-4 (issued while 1-2 synced:
	// UnsyncedFrom 1), 5-6 (issued after 1-2 synced, 3-4 not: 3).
	flags := map[int64]int64{1: 0, 3: 1, 5: 3}
	for seq := int64(1); seq <= 6; seq++ {
		r := diskTestRecord(seq, 1)
		if from, ok := flags[seq]; ok {
			r.Flags, r.UnsyncedFrom = FlagWriteStart, from
		}
		b, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		ends = append(ends, buf.Len())
	}
	seg := buf.Bytes()
	damage := func(rec int) []byte {
		b := bytes.Clone(seg)
		start := SegmentHeaderSize
		if rec > 1 {
			start = ends[rec-2]
		}
		clear(b[start+20 : start+40])
		return b
	}
	for rec, want := range map[int]string{1: "corrupt", 2: "corrupt", 3: "torn", 4: "torn", 5: "torn", 6: "torn"} {
		recs, off, err := readSegment(damage(rec))
		got := "torn"
		if errors.Is(err, ErrCorrupt) {
			got = "corrupt"
		} else if !IsTornTail(err) {
			t.Fatalf("damage in record %d: %v", rec, err)
		}
		if got != want || len(recs) != rec-1 {
			t.Errorf("damage in record %d: %s after %d records (offset %d), want %s after %d: %v", rec, got, len(recs), off, want, rec-1, err)
		}
	}
}

// TestSegmentVersion1: a segment written before writes were pipelined
// (testdata/disk/segment-v1.log, written by the build of commit 47a838c:
// records 1–3 and 4–6 in two writes) still reads, record for record, and
// keeps its own rule: damage followed by a later write is corruption.
func TestSegmentVersion1(t *testing.T) {
	seg, err := os.ReadFile(filepath.Join("testdata", "disk", "segment-v1.log"))
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := readSegment(seg)
	if err != nil || len(recs) != 6 {
		t.Fatalf("%d records, %v", len(recs), err)
	}
	for i, got := range recs {
		want := diskTestRecord(int64(i+1), 1)
		if i == 0 || i == 3 {
			want.Flags = FlagWriteStart
		}
		if diff := cmp.Diff(*want, got); diff != "" {
			t.Fatalf("record %d (-want +got):\n%s", i+1, diff)
		}
	}
	// Records of 56+… bytes: find record 2's start and damage it.
	r, _ := NewSegmentReader(bytes.NewReader(seg))
	if r.Header().Version != SegmentFormatVersion1 {
		t.Fatalf("header version %d", r.Header().Version)
	}
	r.Next()
	start := r.Offset()
	b := bytes.Clone(seg)
	clear(b[start+20 : start+40])
	if _, _, err := readSegment(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damage in a synced version 1 write: %v, want corruption", err)
	}
	// The old golden record decodes into the record the new one encodes.
	old, _ := loadDiskVector(filepath.Join("testdata", "disk", "record-v1.hex"))
	cur, _ := loadDiskVector(filepath.Join("testdata", "disk", "record.hex"))
	var a, c Record
	if _, err := DecodeRecord(old, &a); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeRecord(cur, &c); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c, a); diff != "" {
		t.Fatalf("version 1 and 2 of the golden record (-v2 +v1):\n%s", diff)
	}
	// A version 1 record in a version 2 segment is not a record.
	hdr, _ := loadDiskVector(filepath.Join("testdata", "disk", "segment-header.hex"))
	if recs, _, err := readSegment(append(bytes.Clone(hdr), old...)); len(recs) != 0 || err == nil {
		t.Fatalf("version 1 record in a version 2 segment: %d records, %v", len(recs), err)
	}
}
