package logfmt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var updateDisk = flag.Bool("update-disk", false, "rewrite testdata/disk golden vectors")

// diskTestRPC frames an incoming RPC by hand (size, type 0, reserved, method,
// kind, args), independent of the protocol encoder, so these tests pin the
// on-disk format on their own.
func diskTestRPC(method int64, kind byte, args []byte) []byte {
	data := []byte{0}
	data = binary.AppendVarint(data, method)
	data = append(data, kind)
	data = append(data, args...)
	msg := binary.AppendVarint(nil, int64(1+len(data)))
	msg = append(msg, 0)
	return append(msg, data...)
}

func diskTestRecord(seq int64, nmsg int) *Record {
	r := &Record{Seq: seq, Time: 1_800_000_000_000_000_000 + seq*1000, OutCount: uint64(seq) * 2, OutDigest: uint64(seq) * 0x9e3779b97f4a7c15}
	for i := 0; i < nmsg; i++ {
		r.Messages = append(r.Messages, diskTestRPC(int64(i%3+1), byte(i%3), []byte(fmt.Sprintf("arg-%d-%d", seq, i)))...)
	}
	r.MessageCount = uint32(nmsg)
	if nmsg > 0 {
		r.Sources = []Source{{Peer: "client", FirstSeq: seq * 10, Count: uint32(nmsg - nmsg/2)}}
		if nmsg/2 > 0 {
			r.Sources = append(r.Sources, Source{Peer: "server", FirstSeq: 0, Count: uint32(nmsg / 2)})
		}
	}
	return r
}

func diskTestSegment(t testing.TB, n int) ([]byte, []int64) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewSegmentWriter(&buf, 7)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int64
	for i := 1; i <= n; i++ {
		if err := w.Append(diskTestRecord(int64(i), i%4+1)); err != nil {
			t.Fatal(err)
		}
		ends = append(ends, w.Offset())
	}
	return buf.Bytes(), ends
}

func readSegment(b []byte) ([]Record, int64, error) {
	r, err := NewSegmentReader(bytes.NewReader(b))
	if err != nil {
		return nil, 0, err
	}
	var out []Record
	for {
		rec, err := r.Next()
		if err != nil {
			if err == io.EOF {
				err = nil
			}
			return out, r.Offset(), err
		}
		c := *rec
		c.Sources = append([]Source(nil), rec.Sources...)
		c.Messages = append([]byte(nil), rec.Messages...)
		out = append(out, c)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7} {
		want := diskTestRecord(42, n)
		b, err := AppendRecord([]byte("prefix"), want)
		if err != nil {
			t.Fatal(err)
		}
		if len(b)-6 != want.EncodedSize() {
			t.Fatalf("EncodedSize %d, encoded %d", want.EncodedSize(), len(b)-6)
		}
		var got Record
		used, err := DecodeRecord(b[6:], &got)
		if err != nil {
			t.Fatal(err)
		}
		if used != len(b)-6 {
			t.Fatalf("used %d of %d", used, len(b)-6)
		}
		if got.Messages == nil {
			got.Messages = []byte{}
		}
		if want.Messages == nil {
			want.Messages = []byte{}
		}
		if diff := cmp.Diff(want, &got, cmp.Comparer(func(a, b []Source) bool { return len(a) == len(b) && (len(a) == 0 || cmp.Equal(a, b)) })); diff != "" {
			t.Fatalf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestAppendRecordRejectsInconsistentCounts(t *testing.T) {
	r := diskTestRecord(1, 3)
	r.MessageCount = 4
	if _, err := AppendRecord(nil, r); err == nil {
		t.Fatal("AppendRecord accepted sources counting 3 messages in a record claiming 4")
	}
}

func TestSegmentReadsEveryRecord(t *testing.T) {
	seg, ends := diskTestSegment(t, 20)
	recs, off, err := readSegment(seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 20 || off != ends[19] {
		t.Fatalf("read %d records to offset %d, want 20 to %d", len(recs), off, ends[19])
	}
	for i, r := range recs {
		if r.Seq != int64(i+1) {
			t.Fatalf("record %d has seq %d", i, r.Seq)
		}
		if diff := cmp.Diff(diskTestRecord(int64(i+1), (i+1)%4+1).Messages, r.Messages); diff != "" {
			t.Fatalf("record %d messages differ:\n%s", i+1, diff)
		}
	}
}

// TestSegmentTornAtEveryOffset cuts a segment at every byte offset of its
// last three records and checks that the reader returns exactly the complete
// records before the cut, then a torn tail at the end of the last of them.
func TestSegmentTornAtEveryOffset(t *testing.T) {
	seg, ends := diskTestSegment(t, 10)
	from := ends[6]
	for cut := from; cut <= int64(len(seg)); cut++ {
		recs, off, err := readSegment(seg[:cut])
		complete := 0
		for complete < len(ends) && ends[complete] <= cut {
			complete++
		}
		if len(recs) != complete {
			t.Fatalf("cut at %d: %d records, want %d", cut, len(recs), complete)
		}
		wantOff := ends[complete-1]
		if off != wantOff {
			t.Fatalf("cut at %d: offset %d, want %d", cut, off, wantOff)
		}
		atBoundary := cut == wantOff
		switch {
		case atBoundary && err != nil:
			t.Fatalf("cut at record boundary %d: %v", cut, err)
		case !atBoundary && !IsTornTail(err):
			t.Fatalf("cut at %d: err %v, want torn tail", cut, err)
		case !atBoundary && !strings.Contains(err.Error(), fmt.Sprintf("offset %d", wantOff)):
			t.Fatalf("cut at %d: error %q does not name offset %d", cut, err, wantOff)
		}
	}
}

func TestSegmentTornHeader(t *testing.T) {
	seg, _ := diskTestSegment(t, 1)
	for cut := 0; cut < SegmentHeaderSize; cut++ {
		_, err := NewSegmentReader(bytes.NewReader(seg[:cut]))
		if !IsTornTail(err) {
			t.Fatalf("header cut at %d: %v, want torn tail", cut, err)
		}
	}
}

// TestSegmentBitFlips flips every bit of a record in the middle and of the
// last record. A damaged middle record is corrupt (valid records follow it);
// a damaged last record is a torn tail. Either way the damaged record is never
// returned.
func TestSegmentBitFlips(t *testing.T) {
	seg, ends := diskTestSegment(t, 6)
	check := func(idx int) {
		start, end := ends[idx-1], ends[idx]
		for bit := start * 8; bit < end*8; bit++ {
			b := append([]byte(nil), seg...)
			b[bit/8] ^= 1 << (bit % 8)
			recs, off, err := readSegment(b)
			if err == nil {
				t.Fatalf("record %d, bit %d flipped: no error", idx+1, bit)
			}
			if len(recs) != idx || off != start {
				t.Fatalf("record %d, bit %d flipped: %d records to offset %d, want %d to %d (%v)", idx+1, bit, len(recs), off, idx, start, err)
			}
			last := idx == len(ends)-1
			if last && !IsTornTail(err) {
				t.Fatalf("last record, bit %d flipped: %v, want torn tail", bit, err)
			}
			if !last && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("record %d, bit %d flipped: %v, want corrupt", idx+1, bit, err)
			}
		}
	}
	check(2)
	check(len(ends) - 1)
}

func TestSegmentSequenceGapIsCorrupt(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewSegmentWriter(&buf, 1)
	for _, seq := range []int64{1, 2, 4} {
		if err := w.Append(diskTestRecord(seq, 1)); err != nil {
			t.Fatal(err)
		}
	}
	recs, _, err := readSegment(buf.Bytes())
	if len(recs) != 2 || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got %d records, %v; want 2 and corrupt", len(recs), err)
	}
}

func testCheckpoint() *Checkpoint {
	state := make([]byte, 3000)
	rand.New(rand.NewSource(1)).Read(state)
	return &Checkpoint{
		Number: 3, AppVersion: 2, NextSeq: 1001, Time: 1_800_000_000_123_456_789,
		OutCount: 77, OutDigest: 0xdeadbeefcafef00d,
		Inputs:  []Watermark{{Peer: "client", Seq: 500}, {Peer: "server", Seq: 12}},
		Outputs: []OutputStream{{Peer: "client", LastSeq: 40, AckedSeq: 38, Unacked: [][]byte{diskTestRPC(1, 1, []byte("x")), diskTestRPC(2, 0, nil)}}, {Peer: "server", LastSeq: 9, AckedSeq: 9}},
		State:   state,
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	want := testCheckpoint()
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCheckpoint(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
}

func TestCheckpointTruncatedOrFlipped(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, testCheckpoint()); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	for cut := 0; cut < len(b); cut += 1 + cut/64 {
		if _, err := ReadCheckpoint(bytes.NewReader(b[:cut])); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want truncated", cut, err)
		}
	}
	for i := 0; i < len(b); i += 1 + i/32 {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		if _, err := ReadCheckpoint(bytes.NewReader(c)); err == nil {
			t.Fatalf("byte %d flipped: checkpoint accepted", i)
		}
	}
}

// TestReadCheckpointSizeSameAsUnsized: knowing the file's size changes how
// the sections are allocated, never the result or the error, whether the
// size given is the input's own or (a file that grew or shrank after the
// stat) another.
func TestReadCheckpointSizeSameAsUnsized(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, testCheckpoint()); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	check := func(what string, in []byte, size int64) {
		t.Helper()
		want, werr := ReadCheckpoint(bytes.NewReader(in))
		got, gerr := ReadCheckpointSize(bytes.NewReader(in), size)
		if fmt.Sprint(werr) != fmt.Sprint(gerr) {
			t.Fatalf("%s, size %d: error %v, unsized %v", what, size, gerr, werr)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%s, size %d: (-unsized +sized):\n%s", what, size, diff)
		}
	}
	for cut := 0; cut <= len(b); cut += 1 + cut/64 {
		for _, size := range []int64{int64(cut), int64(len(b)), -1, 0, 1 << 40} {
			check(fmt.Sprintf("cut at %d", cut), b[:cut], size)
		}
	}
	for i := 0; i < len(b); i += 1 + i/32 {
		c := append([]byte(nil), b...)
		c[i] ^= 0x10
		check(fmt.Sprintf("byte %d flipped", i), c, int64(len(c)))
	}
}

func TestManifestRoundTripAndDamage(t *testing.T) {
	want := &Manifest{Instance: "server", CommitterID: 12345, Version: 1, UpgradeVersion: 1, Checkpoint: 4, FirstSegment: 1,
		App:     AppBuild{Source: "./samples/counter/server", Path: ".ambr/bin/ab12", SHA256: "ab12", Args: []string{"--x"}},
		Created: 1, Updated: 2}
	b, err := EncodeManifest(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeManifest(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("round trip (-want +got):\n%s", diff)
	}
	for i := range b {
		c := append([]byte(nil), b...)
		c[i] ^= 0x01
		if _, err := DecodeManifest(c); err == nil {
			t.Fatalf("byte %d flipped: manifest accepted", i)
		}
	}
	if _, err := DecodeManifest(b[:len(b)-1]); !errors.Is(err, ErrTruncated) {
		t.Fatalf("short manifest: %v", err)
	}
}

func TestChainDigestOrderMatters(t *testing.T) {
	a := ChainDigest(ChainDigest(0, []byte("s"), []byte{1}), []byte("s"), []byte{2})
	b := ChainDigest(ChainDigest(0, []byte("s"), []byte{2}), []byte("s"), []byte{1})
	if a == b {
		t.Fatal("digest does not depend on message order")
	}
	// The destination is framed by its length, so moving bytes between the
	// destination and the RPC changes the digest.
	if ChainDigest(0, []byte("ab"), []byte("c")) == ChainDigest(0, []byte("a"), []byte("bc")) {
		t.Fatal("digest does not separate destination from RPC")
	}
}

// Golden vectors pin the on-disk layouts byte for byte.
func TestDiskGoldenVectors(t *testing.T) {
	rec, _ := AppendRecord(nil, &Record{Seq: 5, Time: 1_800_000_000_000_000_000, OutCount: 3, OutDigest: 0x1122334455667788,
		Sources: []Source{{Peer: "client", FirstSeq: 9, Count: 1}}, Messages: diskTestRPC(1, 1, []byte("hi")), MessageCount: 1})
	var ck bytes.Buffer
	_ = WriteCheckpoint(&ck, &Checkpoint{Number: 1, AppVersion: 0, NextSeq: 1, Time: 1_800_000_000_000_000_000,
		Inputs: []Watermark{{Peer: "a", Seq: 2}}, Outputs: []OutputStream{{Peer: "a", LastSeq: 3, AckedSeq: 2, Unacked: [][]byte{{0xaa}}}}, State: []byte(`{"count":0}`)})
	man, _ := EncodeManifest(&Manifest{Instance: "server", CommitterID: 7, Checkpoint: 1, FirstSegment: 1, Created: 1, Updated: 1})
	pipelined, _ := AppendRecord(nil, &Record{Flags: FlagWriteStart, UnsyncedFrom: 4, Seq: 6, Time: 1_800_000_000_000_000_001,
		Sources: []Source{{Peer: "client", FirstSeq: 10, Count: 1}}, Messages: diskTestRPC(1, 1, []byte("ho")), MessageCount: 1})
	vectors := map[string][]byte{
		"segment-header.hex":   AppendSegmentHeader(nil, 3),
		"record.hex":           rec,
		"record-pipelined.hex": pipelined,
		"checkpoint.hex":       ck.Bytes(),
		"manifest.hex":         man,
	}
	for name, got := range vectors {
		path := filepath.Join("testdata", "disk", name)
		if *updateDisk {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("# "+name+", written by TestDiskGoldenVectors -update-disk\n"+hex.Dump(got)), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := loadDiskVector(path)
		if err != nil {
			t.Fatalf("%v (run go test ./logfmt -run TestDiskGoldenVectors -update-disk to create it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: encoding changed; this breaks existing logs.\n got: %x\nwant: %x", name, got, want)
		}
	}
}

// loadDiskVector reads a hex.Dump file: "offset  hex bytes  |ascii|" lines,
// with # comments.
func loadDiskVector(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.Index(line, "|"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		for _, f := range fields[1:] {
			v, err := hex.DecodeString(f)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			out = append(out, v...)
		}
	}
	return out, nil
}

func BenchmarkDecodeSegmentRecord(b *testing.B) {
	r := &Record{Seq: 1, Sources: []Source{{Peer: "client", FirstSeq: 1, Count: 1000}}, MessageCount: 1000}
	for i := 0; i < 1000; i++ {
		r.Messages = append(r.Messages, diskTestRPC(1, 1, make([]byte, 16))...)
	}
	enc, _ := AppendRecord(nil, r)
	var dec Record
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for i := 0; i < b.N; i++ {
		if _, err := DecodeRecord(enc, &dec); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSegmentDamageInLastWrite: the log is written in writes (group-commit
// flushes), each synced before the next begins and started by a record
// with FlagWriteStart. A crash can leave the last, unsynced write with a
// damaged record followed by valid ones (its pages reach the disk in any
// order): that is a torn tail. Damage in a write that a later write
// followed is corruption.
func TestSegmentDamageInLastWrite(t *testing.T) {
	var buf bytes.Buffer
	buf.Write(AppendSegmentHeader(nil, 1))
	var ends []int
	for seq := int64(1); seq <= 6; seq++ {
		r := diskTestRecord(seq, 1)
		if seq == 1 || seq == 4 { // two writes: records 1-3 and 4-6
			r.Flags = FlagWriteStart
		}
		b, err := AppendRecord(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		buf.Write(b)
		ends = append(ends, buf.Len())
	}
	seg := buf.Bytes()
	damage := func(rec int) []byte { // zero the middle of record rec (1-based)
		b := append([]byte(nil), seg...)
		start := SegmentHeaderSize
		if rec > 1 {
			start = ends[rec-2]
		}
		for i := start + 20; i < start+40; i++ {
			b[i] = 0
		}
		return b
	}
	recs, off, err := readSegment(damage(5))
	if !IsTornTail(err) || len(recs) != 4 || off != int64(ends[3]) {
		t.Fatalf("damage in the last write: %d records to offset %d, %v; want 4 records and a torn tail", len(recs), off, err)
	}
	recs, _, err = readSegment(damage(2))
	if !errors.Is(err, ErrCorrupt) || len(recs) != 1 || !strings.Contains(err.Error(), "a later write begins at offset") {
		t.Fatalf("damage in a synced write: %d records, %v; want corruption", len(recs), err)
	}
	if _, err := DecodeRecord(seg[SegmentHeaderSize:], new(Record)); err != nil {
		t.Fatal(err)
	}
	var r Record
	if _, err := DecodeRecord(seg[ends[2]:], &r); err != nil || r.Flags != FlagWriteStart {
		t.Fatalf("record 4 decodes with flags %d, %v", r.Flags, err)
	}
}

// compareOwnBuffers fails unless a segment reader with SetOwnBuffers reads
// b as one without does: the same records, offsets and error; and unless
// its records stay as they were read after later calls, each with its
// encoded bytes (RecordBytes) ending in its messages.
func compareOwnBuffers(t *testing.T, b []byte) {
	t.Helper()
	want, wantOff, werr := readSegment(b)
	r, err := NewSegmentReader(bytes.NewReader(b))
	if err != nil {
		return
	}
	r.SetOwnBuffers()
	var kept []*Record
	var raws [][]byte
	var gerr error
	for {
		rec, err := r.Next()
		if err != nil {
			if err != io.EOF {
				gerr = err
			}
			break
		}
		c := *rec // the struct and its Sources are reused; its bytes are the caller's
		c.Sources = append([]Source(nil), rec.Sources...)
		kept = append(kept, &c)
		raw := r.RecordBytes()
		off := r.Offset() - int64(len(raw))
		if !bytes.Equal(raw, b[off:r.Offset()]) {
			t.Fatalf("record %d: RecordBytes are not its bytes in the segment", rec.Seq)
		}
		if len(rec.Messages) > 0 && &raw[len(raw)-len(rec.Messages)] != &rec.Messages[0] {
			t.Fatalf("record %d: its messages are not the tail of RecordBytes", rec.Seq)
		}
		raws = append(raws, raw)
	}
	if fmt.Sprint(gerr) != fmt.Sprint(werr) || r.Offset() != wantOff {
		t.Fatalf("own buffers: error %v at offset %d; reused buffer: %v at %d", gerr, r.Offset(), werr, wantOff)
	}
	if len(kept) != len(want) {
		t.Fatalf("own buffers: %d records, reused buffer %d", len(kept), len(want))
	}
	for i := range kept {
		if diff := cmp.Diff(want[i], *kept[i], cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("record %d, kept after later reads (-reused +own):\n%s", i, diff)
		}
		if i > 0 && &raws[i][0] == &raws[i-1][0] {
			t.Fatalf("records %d and %d share a buffer", i-1, i)
		}
		if cap(raws[i]) != len(raws[i]) {
			t.Fatalf("record %d: %d bytes with room for %d: an append would reach the next record's", i, len(raws[i]), cap(raws[i]))
		}
	}
	// The caller may write over a record's bytes: the others stay (the
	// records are carved out of shared slabs).
	for i := 1; i < len(raws); i += 2 {
		clear(raws[i])
	}
	for i := 0; i < len(kept); i += 2 {
		if diff := cmp.Diff(want[i], *kept[i], cmpopts.EquateEmpty()); diff != "" {
			t.Fatalf("record %d, after the records beside it were written over (-reused +own):\n%s", i, diff)
		}
	}
}

// SetOwnBuffers changes where records are read to, never what is read: on
// a whole segment, cut at every offset, and with bytes flipped.
func TestSegmentReaderOwnBuffers(t *testing.T) {
	b, _ := diskTestSegment(t, 9)
	compareOwnBuffers(t, b)
	for cut := 0; cut < len(b); cut++ {
		compareOwnBuffers(t, b[:cut])
	}
	for i := SegmentHeaderSize; i < len(b); i += 7 {
		c := append([]byte(nil), b...)
		c[i] ^= 0x04
		compareOwnBuffers(t, c)
	}
}

// ReadCheckpointRoom reads what ReadCheckpoint reads, and, when it reads
// the state at once (the file's size known and large enough), returns the
// buffer the state is the end of, with the room asked for before it.
func TestReadCheckpointRoom(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, testCheckpoint()); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	want, err := ReadCheckpoint(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []int{0, 1, 40} {
		for _, size := range []int64{int64(len(b)), -1, 10} {
			got, framed, err := ReadCheckpointRoom(bytes.NewReader(b), size, room)
			if err != nil {
				t.Fatalf("room %d, size %d: %v", room, size, err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("room %d, size %d (-ReadCheckpoint +ReadCheckpointRoom):\n%s", room, size, diff)
			}
			if room == 0 || size != int64(len(b)) {
				if framed != nil {
					t.Fatalf("room %d, size %d: a framed buffer of %d bytes, want none", room, size, len(framed))
				}
				continue
			}
			if len(framed) != room+len(got.State) || &framed[room] != &got.State[0] {
				t.Fatalf("room %d: framed buffer of %d bytes for a state of %d, not ending with it", room, len(framed), len(got.State))
			}
		}
	}
}

// A state larger than the pieces it is read in reads back whole, and a file
// cut short inside it fails as the unsized read does, at the same offset.
func TestReadCheckpointLargeStateInPieces(t *testing.T) {
	ck := testCheckpoint()
	ck.State = bytes.Repeat([]byte("0123456789"), (2*sectionPiece+12345)/10)
	var buf bytes.Buffer
	if err := WriteCheckpoint(&buf, ck); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	got, err := ReadCheckpointSize(bytes.NewReader(b), int64(len(b)))
	if err != nil || !bytes.Equal(got.State, ck.State) {
		t.Fatalf("%d-byte state: %v", len(ck.State), err)
	}
	for _, cut := range []int{len(b) - 9, len(b) - len(ck.State)/2, len(b) - len(ck.State) + sectionPiece} {
		_, werr := ReadCheckpoint(bytes.NewReader(b[:cut]))
		_, gerr := ReadCheckpointSize(bytes.NewReader(b[:cut]), int64(len(b)))
		if werr == nil || fmt.Sprint(werr) != fmt.Sprint(gerr) {
			t.Fatalf("cut at %d: %v, unsized %v", cut, gerr, werr)
		}
	}
}

// BenchmarkSegmentReaderOwn reads a 64 MiB segment of 8 KiB records with
// SetOwnBuffers, as a recovery does, keeping the last 1000 records alive.
func BenchmarkSegmentReaderOwn(b *testing.B) {
	var buf bytes.Buffer
	w, err := NewSegmentWriter(&buf, 7)
	if err != nil {
		b.Fatal(err)
	}
	payload := bytes.Repeat([]byte{0xab}, 8<<10)
	for i := int64(1); buf.Len() < 64<<20; i++ {
		r := &Record{Seq: i, Time: i, MessageCount: 1, Messages: diskTestRPC(1, 0, payload), Sources: []Source{{Peer: "client", FirstSeq: i, Count: 1}}}
		if err := w.Append(r); err != nil {
			b.Fatal(err)
		}
	}
	seg := buf.Bytes()
	b.SetBytes(int64(len(seg)))
	kept := make([][]byte, 1000)
	for b.Loop() {
		r, err := NewSegmentReader(bytes.NewReader(seg))
		if err != nil {
			b.Fatal(err)
		}
		r.SetOwnBuffers()
		for i := 0; ; i++ {
			if _, err := r.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			kept[i%len(kept)] = r.RecordBytes()
		}
	}
}
