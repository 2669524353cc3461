package logfmt

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func addDiskSeeds(f *testing.F, names ...string) {
	for _, n := range names {
		b, err := loadDiskVector(filepath.Join("testdata", "disk", n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	addDiskSeeds(f, "record.hex", "record-pipelined.hex", "record-v1.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		n, err := DecodeRecord(b, &r)
		if err != nil {
			return
		}
		enc, err := AppendRecord(nil, &r)
		if err != nil {
			t.Fatalf("decoded record does not encode: %v", err)
		}
		if b[recOffVersion] == RecordFormatVersion1 {
			// An old record is re-encoded in the current version: the
			// same record, other bytes.
			var again Record
			if _, err := DecodeRecord(enc, &again); err != nil {
				t.Fatalf("version 1 record re-encoded does not decode: %v", err)
			}
			if diff := cmp.Diff(r, again); diff != "" {
				t.Fatalf("version 1 record re-encoded (-old +new):\n%s", diff)
			}
			return
		}
		if !bytes.Equal(enc, b[:n]) {
			t.Fatalf("decode → encode changed the bytes:\n in: %x\nout: %x", b[:n], enc)
		}
	})
}

// claimsMoreThanItHolds reports whether a record of segment b claims a
// length beyond b's.
func claimsMoreThanItHolds(b []byte) bool {
	for off := SegmentHeaderSize; off < len(b); {
		n, err := RecordLength(b[off:])
		if err != nil || n <= 0 {
			return false
		}
		if n > len(b) {
			return true
		}
		off += n
	}
	return false
}

func FuzzSegmentReader(f *testing.F) {
	hdr, _ := loadDiskVector(filepath.Join("testdata", "disk", "segment-header.hex"))
	rec, _ := loadDiskVector(filepath.Join("testdata", "disk", "record.hex"))
	f.Add(append(append([]byte(nil), hdr...), rec...))
	f.Add(hdr)
	if v1, err := os.ReadFile(filepath.Join("testdata", "disk", "segment-v1.log")); err == nil {
		f.Add(v1)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !claimsMoreThanItHolds(b) {
			// (Either reader allocates what a record's length claims,
			// up to 2 GiB: twice that is more than the fuzzer allows.)
			compareOwnBuffers(t, b)
		}
		r, err := NewSegmentReader(bytes.NewReader(b))
		if err != nil {
			return
		}
		for {
			rec, err := r.Next()
			if err != nil {
				if err != io.EOF && r.Offset() > int64(len(b)) {
					t.Fatalf("offset %d past the input's %d bytes", r.Offset(), len(b))
				}
				return
			}
			if _, err := AppendRecord(nil, rec); err != nil {
				t.Fatalf("record read from a segment does not encode: %v", err)
			}
		}
	})
}

func FuzzReadCheckpoint(f *testing.F) {
	addDiskSeeds(f, "checkpoint.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ReadCheckpoint(bytes.NewReader(b))
		cs, errs := ReadCheckpointSize(bytes.NewReader(b), int64(len(b)))
		if fmt.Sprint(err) != fmt.Sprint(errs) || !cmp.Equal(c, cs) {
			t.Fatalf("ReadCheckpointSize gives %v, %v; ReadCheckpoint %v, %v", cs, errs, c, err)
		}
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := WriteCheckpoint(&buf, c); err != nil {
			t.Fatal(err)
		}
		c2, err := ReadCheckpoint(&buf)
		if err != nil {
			t.Fatalf("re-encoded checkpoint does not decode: %v", err)
		}
		if diff := cmp.Diff(c, c2); diff != "" {
			t.Fatalf("decode → encode → decode differs:\n%s", diff)
		}
	})
}

func FuzzDecodeManifest(f *testing.F) {
	addDiskSeeds(f, "manifest.hex")
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		enc, err := EncodeManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("re-encoded manifest does not decode: %v", err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("decode → encode → decode differs:\n%s", diff)
		}
	})
}

var _ = os.ReadFile
