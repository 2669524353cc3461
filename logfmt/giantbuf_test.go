package logfmt

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"
)

// TestNextCap: every step grows, never past twice what the full buffer
// holds (the hostile-peer bound) nor past size, and the steps end on size
// exactly.
func TestNextCap(t *testing.T) {
	for _, size := range []int{1, 2, 3, 1000, 64 << 10, 64<<10 + 1, 1 << 20, 1<<20 + 6, 1<<28 + 6, 3<<27 + 1, MaxMessageSize} {
		for _, start := range []int{0, 1, 4 << 10, 64 << 10, 8 << 20} {
			if start >= size {
				continue
			}
			c, steps := start, 0
			for c < size {
				w := nextCap(c, size, minGrowth)
				if w <= c || w > size || w > max(2*c+1, minGrowth) {
					t.Fatalf("size %d: nextCap(%d) = %d, want in (%d, min(%d, max(2c+1, %d))]", size, c, w, c, size, minGrowth)
				}
				c = w
				steps++
				if steps > 64 {
					t.Fatalf("size %d from %d: no end", size, start)
				}
			}
		}
	}
}

// allocatedBy returns the bytes f allocates.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestGiantFrameJustOverPowerOfTwo: a frame a few bytes over a power of two
// (a payload of 2^k bytes and its headers) is read with buffers that add
// up to about twice the frame. Doubling from the first buffer allocated one
// more buffer of the frame's size at the end (3× in all), and held 2× at
// once while the last copy was made.
func TestGiantFrameJustOverPowerOfTwo(t *testing.T) {
	const payload = 4 << 20
	data := make([]byte, payload+3)
	data[len(data)-1] = 0x5a
	msg := AppendMessage(nil, TypeRPC, data)
	rec := AppendWireRecord(nil, 7, 0, msg)
	limit := uint64(2.2 * float64(len(msg)))

	rr := NewRecordReader(bytes.NewReader(rec))
	var body []byte
	n := allocatedBy(func() {
		var err error
		if _, body, err = rr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if !bytes.Equal(body, msg) {
		t.Fatal("record reader: body differs from the record's")
	}
	if n > limit {
		t.Errorf("record reader: allocated %d bytes for a body of %d, want at most %d", n, len(msg), limit)
	}

	var m Message
	mr := NewOwningMessageReader(bytes.NewReader(msg))
	n = allocatedBy(func() {
		var err error
		if m, err = mr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if !bytes.Equal(m.Data, data) {
		t.Fatal("owning message reader: data differs")
	}
	if n > limit {
		t.Errorf("owning message reader: allocated %d bytes for a message of %d, want at most %d", n, len(msg), limit)
	}

	frame := AppendPeerMessage(nil, 9, msg)
	pr := NewPeerReader(bytes.NewReader(frame))
	pr.Open()
	var f PeerFrame
	n = allocatedBy(func() {
		var err error
		if f, err = pr.Next(); err != nil {
			t.Fatal(err)
		}
	})
	if !bytes.Equal(f.Msg, msg) || f.Seq != 9 {
		t.Fatal("peer reader: message differs")
	}
	if n > limit {
		t.Errorf("peer reader: allocated %d bytes for a frame of %d, want at most %d", n, len(frame), limit)
	}
}

// TestGiantFrameArrivesSlowly: a giant frame whose bytes trickle in is
// cut short, and until then it cost buffers that hold at most twice what
// did arrive, so about four times that in all (a claimed length costs
// nothing).
func TestGiantFrameArrivesSlowly(t *testing.T) {
	const size = 3<<20 + 17
	hdr := make([]byte, 5)
	binary.LittleEndian.PutUint32(hdr, 1+8+size)
	hdr[4] = PeerMessage
	// The frame claims size bytes; only the first 1 MiB arrives.
	arrived := 1 << 20
	stream := append(hdr, make([]byte, 8+arrived)...)
	pr := NewPeerReader(bytes.NewReader(stream))
	pr.Open()
	n := allocatedBy(func() {
		if _, err := pr.Next(); err == nil {
			t.Fatal("a cut frame was read whole")
		}
	})
	if limit := uint64(4*arrived + 2*peerLargeBuffer); n > limit {
		t.Errorf("a frame cut after %d of %d bytes cost %d bytes, want at most %d", arrived, size, n, limit)
	}
}
