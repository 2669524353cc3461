package logfmt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// protoSeedSet is what the golden vectors in testdata/protocol offer as
// seeds: the files' bytes, and the pieces in them.
type protoSeedSet struct {
	files    [][]byte  // each file as it is
	messages []Message // each message framed in a file, nested ones too
	outgoing []Message // those in app → IC form
	headers  [][]byte  // wire record headers
	appStrm  []byte    // the app → IC vectors back to back
	icStrm   []byte    // the record vectors back to back
}

func protoSeeds(f *testing.F) protoSeedSet {
	f.Helper()
	var s protoSeedSet
	var addMsg func(m Message, outgoing bool)
	addMsg = func(m Message, outgoing bool) {
		if outgoing {
			s.outgoing = append(s.outgoing, m)
		} else {
			s.messages = append(s.messages, m)
		}
		if b, err := ParseBatch(m); err == nil {
			it := b.Iter()
			for sub, ok := it.Next(); ok; sub, ok = it.Next() {
				addMsg(sub, outgoing)
			}
		}
	}
	for _, v := range protoVectors {
		b, err := protoReadHexFile(filepath.Join(protoVectorDir, v.name+".hex"))
		if err != nil {
			f.Fatal(err)
		}
		s.files = append(s.files, b)
		switch v.kind {
		case protoHeader:
			s.headers = append(s.headers, b)
		case protoRecord:
			s.headers = append(s.headers, b[:WireHeaderSize])
			s.icStrm = append(s.icStrm, b...)
			it := NewMessageIter(b[WireHeaderSize:binary.LittleEndian.Uint32(b[4:])])
			for m, ok := it.Next(); ok; m, ok = it.Next() {
				addMsg(m, false)
			}
		default:
			m, _, err := ParseMessage(b)
			if err != nil {
				f.Fatal(err)
			}
			addMsg(m, v.kind == protoOut)
			if v.kind != protoIn {
				s.appStrm = append(s.appStrm, b...)
			}
		}
	}
	return s
}

// protoCheckErr fails unless err is one of the package's decode errors, with
// the package prefix.
func protoCheckErr(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrMalformed) {
		t.Fatalf("error %v wraps neither ErrTruncated nor ErrMalformed", err)
	}
	if !strings.HasPrefix(err.Error(), "logfmt: ") {
		t.Fatalf("error %q lacks the logfmt: prefix", err)
	}
}

func FuzzReadZigZag(f *testing.F) {
	for _, b := range protoSeeds(f).files {
		f.Add(b)
	}
	f.Add(bytes.Repeat([]byte{0xff}, 10))
	f.Add([]byte{0x80, 0x80, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, n, err := ReadZigZag(b)
		sv, sn := binary.Varint(b)
		if err != nil {
			protoCheckErr(t, err)
			if errors.Is(err, ErrTruncated) != (sn == 0 && len(b) < MaxZigZagLen) {
				t.Fatalf("ReadZigZag(% x) = %v; binary.Varint n = %d", b, err, sn)
			}
			return
		}
		if v != sv || n != sn {
			t.Fatalf("ReadZigZag(% x) = %d, %d; binary.Varint = %d, %d", b, v, n, sv, sn)
		}
		enc := AppendZigZag(nil, v)
		if len(enc) != ZigZagLen(v) || len(enc) > n {
			t.Fatalf("AppendZigZag(%d) = % x, ZigZagLen %d, decoded from %d bytes", v, enc, ZigZagLen(v), n)
		}
		v2, n2, err := ReadZigZag(enc)
		if err != nil || v2 != v || n2 != len(enc) {
			t.Fatalf("round trip of %d: %d, %d, %v", v, v2, n2, err)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	for _, b := range protoSeeds(f).files {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, n, err := ParseMessage(b)
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		if n > len(b) || n < 2 {
			t.Fatalf("ParseMessage consumed %d of %d bytes", n, len(b))
		}
		if !bytes.Equal(b[n-len(m.Data)-1:n], append([]byte{byte(m.Type)}, m.Data...)) {
			t.Fatalf("type and data are not the frame's last bytes")
		}
		enc := AppendMessage(nil, m.Type, m.Data)
		if len(enc) != m.EncodedLen() {
			t.Fatalf("AppendMessage wrote %d bytes, EncodedLen says %d", len(enc), m.EncodedLen())
		}
		m2, n2, err := ParseMessage(enc)
		if err != nil || n2 != len(enc) {
			t.Fatalf("round trip: %d of %d bytes, %v", n2, len(enc), err)
		}
		if diff := cmp.Diff(m, m2, protoCmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		if m.Type != TypeCheckpoint {
			return
		}
		sl, err := m.CheckpointStateLen()
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		m3, _, err := ParseMessage(AppendCheckpointMessage(nil, sl))
		if err != nil {
			t.Fatal(err)
		}
		if sl3, err := m3.CheckpointStateLen(); err != nil || sl3 != sl {
			t.Fatalf("checkpoint round trip: %d, %v; want %d", sl3, err, sl)
		}
	})
}

func FuzzParseRPC(f *testing.F) {
	s := protoSeeds(f)
	for _, m := range s.messages {
		f.Add(m.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseRPC(data)
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		enc := AppendRPC(nil, r)
		m, n, err := ParseMessage(enc)
		if err != nil || n != len(enc) || m.Type != TypeRPC {
			t.Fatalf("AppendRPC(%+v) = % x: %v, %d, %v", r, enc, m.Type, n, err)
		}
		if len(m.Data) > len(data) {
			t.Fatalf("re-encoded data is %d bytes, decoded from %d", len(m.Data), len(data))
		}
		r2, err := ParseRPC(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, r2, protoCmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseOutgoingRPC(f *testing.F) {
	s := protoSeeds(f)
	for _, m := range s.outgoing {
		f.Add(m.Data)
	}
	for _, m := range s.messages {
		f.Add(m.Data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseOutgoingRPC(data)
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		enc := AppendOutgoingRPC(nil, string(o.Dest), o.RPC)
		m, n, err := ParseMessage(enc)
		if err != nil || n != len(enc) || m.Type != TypeRPC {
			t.Fatalf("AppendOutgoingRPC = % x: %v, %d, %v", enc, m.Type, n, err)
		}
		o2, err := ParseOutgoingRPC(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(o, o2, protoCmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		if o.IsSelf() != (len(o.Dest) == 0) {
			t.Fatal("IsSelf disagrees with Dest")
		}
	})
}

func FuzzParseBatch(f *testing.F) {
	s := protoSeeds(f)
	for _, m := range append(s.messages, s.outgoing...) {
		f.Add(byte(m.Type), m.Data)
	}
	f.Fuzz(func(t *testing.T, typ byte, data []byte) {
		m := Message{Type: MessageType(typ), Data: data}
		b, err := ParseBatch(m)
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		// Re-frame each RPC, then the batch.
		var rpcs []byte
		n := 0
		it := b.Iter()
		for rm, ok := it.Next(); ok; rm, ok = it.Next() {
			rpcs = AppendMessage(rpcs, rm.Type, rm.Data)
			n++
		}
		if it.Err() != nil || n != b.Count {
			t.Fatalf("batch of %d holds %d messages, %v", b.Count, n, it.Err())
		}
		var enc []byte
		if m.Type == TypeRPCBatch {
			enc = AppendRPCBatch(nil, rpcs, b.Count)
		} else {
			enc = AppendCountReplayableRPCBatch(nil, rpcs, b.Count, b.Replayable)
		}
		m2, k, err := ParseMessage(enc)
		if err != nil || k != len(enc) {
			t.Fatal(err)
		}
		b2, err := ParseBatch(m2)
		if err != nil {
			t.Fatal(err)
		}
		if b2.Count != b.Count || b2.Replayable != b.Replayable || !bytes.Equal(b2.Messages, rpcs) {
			t.Fatalf("round trip: %+v, then %+v", b, b2)
		}
		if m.Type == TypeRPCBatch && b.Replayable != -1 || m.Type == TypeCountReplayableRPCBatch && (b.Replayable < 0 || b.Replayable > b.Count) {
			t.Fatalf("%v with Replayable %d of %d", m.Type, b.Replayable, b.Count)
		}
	})
}

func FuzzParseWireHeader(f *testing.F) {
	for _, b := range protoSeeds(f).headers {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseWireHeader(b)
		if err != nil {
			protoCheckErr(t, err)
			return
		}
		if enc := AppendWireHeader(nil, h); !bytes.Equal(enc, b[:WireHeaderSize]) {
			t.Fatalf("AppendWireHeader(%+v) = % x, decoded from % x", h, enc, b[:WireHeaderSize])
		}
		if h.Size < WireHeaderSize || h.Seq < SeqCheckpointRecord || h.BodyLen() < 0 {
			t.Fatalf("ParseWireHeader accepted %+v", h)
		}
	})
}

// protoCheckStreamErr fails unless err ends a stream as the readers promise.
func protoCheckStreamErr(t *testing.T, err error) {
	t.Helper()
	if err == io.EOF {
		return
	}
	protoCheckErr(t, err)
	if errors.Is(err, ErrTruncated) != errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("stream error %v: ErrTruncated without io.ErrUnexpectedEOF or the reverse", err)
	}
}

// protoErrClass names the kind of error that ended a stream.
func protoErrClass(err error) string {
	switch {
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, ErrTruncated):
		return "truncated"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "other: " + err.Error()
}

// protoSplitMessages is a MessageReader built from the buffer decoders, to
// test one against the other: it returns what the reader should return for
// the stream b and the kind of error that should end it.
func protoSplitMessages(b []byte) ([]protoItem, string) {
	var items []protoItem
	for len(b) > 0 {
		if size, _, err := ReadZigZag(b); err == nil && size > MaxMessageSize {
			return items, "malformed" // The reader's limit.
		}
		m, n, err := ParseMessage(b)
		if err != nil {
			return items, protoErrClass(err)
		}
		b = b[n:]
		it := protoItem{Type: m.Type, Data: m.Data}
		if m.Type == TypeCheckpoint {
			sl, err := m.CheckpointStateLen()
			if err != nil {
				return items, "malformed"
			}
			if sl > int64(len(b)) {
				return items, "truncated"
			}
			it.State, b = b[:sl], b[sl:]
		}
		items = append(items, it)
	}
	return items, "EOF"
}

// protoSplitRecords is protoSplitMessages for a RecordReader.
func protoSplitRecords(b []byte) ([]protoRecItem, string) {
	var items []protoRecItem
	for len(b) > 0 {
		h, err := ParseWireHeader(b)
		if err != nil {
			return items, protoErrClass(err)
		}
		if h.BodyLen() > MaxMessageSize {
			return items, "malformed" // The reader's limit.
		}
		if int(h.Size) > len(b) {
			return items, "truncated"
		}
		it := protoRecItem{Header: h, Body: b[WireHeaderSize:h.Size]}
		b = b[h.Size:]
		body := NewMessageIter(it.Body)
		var last Message
		for m, ok := body.Next(); ok; m, ok = body.Next() {
			if last.Type == TypeCheckpoint {
				return items, "malformed"
			}
			last = m
		}
		if body.Err() != nil {
			return items, "malformed"
		}
		if len(it.Body) > 0 && last.Type == TypeCheckpoint {
			sl, err := last.CheckpointStateLen()
			if err != nil {
				return items, "malformed"
			}
			if sl > int64(len(b)) {
				return items, "truncated"
			}
			it.State, b = b[:sl], b[sl:]
		}
		items = append(items, it)
	}
	return items, "EOF"
}

func FuzzMessageReader(f *testing.F) {
	s := protoSeeds(f)
	for _, b := range s.files {
		f.Add(b)
	}
	f.Add(s.appStrm)
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := protoReadMessages(NewMessageReader(bytes.NewReader(b)))
		protoCheckStreamErr(t, err)
		// The same bytes one at a time give the same result.
		items1, err1 := protoReadMessages(NewMessageReader(iotest.OneByteReader(bytes.NewReader(b))))
		if diff := cmp.Diff(items, items1, protoCmpOpts); diff != "" {
			t.Fatalf("one byte at a time (-whole +one byte):\n%s", diff)
		}
		if err.Error() != err1.Error() {
			t.Fatalf("one byte at a time: %v, whole: %v", err1, err)
		}
		// The buffer decoders agree.
		want, class := protoSplitMessages(b)
		if diff := cmp.Diff(want, items, protoCmpOpts); diff != "" || class != protoErrClass(err) {
			t.Fatalf("MessageReader ends with %v, buffer decoders with %s; messages (-buffer +reader):\n%s", err, class, diff)
		}
		// What decoded re-encodes to a stream that decodes the same.
		items2, err := protoReadMessages(NewMessageReader(bytes.NewReader(protoEncodeItems(items))))
		if err != io.EOF {
			t.Fatalf("re-encoded stream: %v", err)
		}
		if diff := cmp.Diff(items, items2, protoCmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzRecordReader(f *testing.F) {
	s := protoSeeds(f)
	for _, b := range s.files {
		f.Add(b)
	}
	f.Add(s.icStrm)
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := protoReadRecords(NewRecordReader(bytes.NewReader(b)))
		protoCheckStreamErr(t, err)
		items1, err1 := protoReadRecords(NewRecordReader(iotest.OneByteReader(bytes.NewReader(b))))
		if diff := cmp.Diff(items, items1, protoCmpOpts); diff != "" {
			t.Fatalf("one byte at a time (-whole +one byte):\n%s", diff)
		}
		if err.Error() != err1.Error() {
			t.Fatalf("one byte at a time: %v, whole: %v", err1, err)
		}
		want, class := protoSplitRecords(b)
		if diff := cmp.Diff(want, items, protoCmpOpts); diff != "" || class != protoErrClass(err) {
			t.Fatalf("RecordReader ends with %v, buffer decoders with %s; records (-buffer +reader):\n%s", err, class, diff)
		}
		for _, it := range items {
			body := NewMessageIter(it.Body)
			for _, ok := body.Next(); ok; _, ok = body.Next() {
			}
			if body.Err() != nil {
				t.Fatalf("RecordReader returned a body that does not iterate: %v", body.Err())
			}
		}
		items2, err := protoReadRecords(NewRecordReader(bytes.NewReader(protoEncodeRecords(items))))
		if err != io.EOF {
			t.Fatalf("re-encoded stream: %v", err)
		}
		if diff := cmp.Diff(items, items2, protoCmpOpts); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
