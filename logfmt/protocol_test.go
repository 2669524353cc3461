package logfmt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var updateProtocol = flag.Bool("update", false, "rewrite the testdata/protocol golden vectors from the Append* API")

const protoVectorDir = "testdata/protocol"

// protoKind says how to read a golden vector.
type protoKind int

const (
	protoIn         protoKind = iota // one message, IC → app form
	protoOut                         // one message, app → IC form
	protoCheckpoint                  // a Checkpoint message frame, then its state bytes
	protoHeader                      // a 24-byte wire record header
	protoRecord                      // a wire record (header + body), then any state bytes
)

// protoMsg is a message decoded for comparison with what a vector should hold.
type protoMsg struct {
	Type       MessageType
	RPC        *RPC         // TypeRPC, IC → app
	Out        *OutgoingRPC // TypeRPC, app → IC
	Count      int          // batches
	Replayable int          // batches
	Batch      []protoMsg   // batches: their RPCs
	StateLen   int64        // TypeCheckpoint
	Data       []byte       // any other type
}

// protoDecoded is a whole vector decoded.
type protoDecoded struct {
	Header *WireHeader
	Msgs   []protoMsg
	State  []byte // checkpoint state bytes after the frame or record
}

// protoCmpOpts makes nil equal empty and compares byte slices with
// bytes.Equal, fast for large states.
var protoCmpOpts = cmp.Options{
	cmpopts.EquateEmpty(),
	cmpopts.IgnoreFields(OutgoingRPC{}, "BodyAt"), // decoding detail, not content
	cmp.FilterValues(func(a, b []byte) bool { return len(a) > 0 || len(b) > 0 }, cmp.Comparer(bytes.Equal)),
}

// Fixtures shared by the vectors.
var (
	protoCall    = RPC{Reserved: 0, MethodID: 300, Kind: RPCCall, Args: []byte("hello")}
	protoFork    = RPC{Reserved: 1, MethodID: 1, Kind: RPCFork, Args: []byte{0x01, 0x02}}
	protoImpulse = RPC{Reserved: 0, MethodID: -2, Kind: RPCImpulse, Args: []byte("tick")}
	protoInit    = RPC{Reserved: 0, MethodID: 5, Kind: RPCFork, Args: []byte("start")}
	protoSelf    = RPC{Reserved: 0, MethodID: 3, Kind: RPCFork, Args: []byte("x")}
)

func protoState(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func protoRecordBody() []byte {
	body := AppendRPC(nil, protoCall)
	return AppendControl(body, TypeTakeCheckpoint)
}

func protoRPCMsg(r RPC) protoMsg { return protoMsg{Type: TypeRPC, RPC: &r} }

func protoOutMsg(dest string, r RPC) protoMsg {
	return protoMsg{Type: TypeRPC, Out: &OutgoingRPC{Dest: []byte(dest), RPC: r}}
}

// protoVector is one golden vector: built with the Append* API, compared byte
// for byte with testdata/protocol/<name>.hex, and decoded back into want.
type protoVector struct {
	name    string
	comment string
	kind    protoKind
	build   func() []byte
	want    protoDecoded
}

var protoVectors = []protoVector{
	{
		name: "rpc-call", kind: protoIn,
		comment: "RPC (type 0) as the IC delivers it: a call (rpc kind 0) to method 300.",
		build:   func() []byte { return AppendRPC(nil, protoCall) },
		want:    protoDecoded{Msgs: []protoMsg{protoRPCMsg(protoCall)}},
	},
	{
		name: "rpc-fork", kind: protoIn,
		comment: "RPC (type 0) as the IC delivers it: a fork (rpc kind 1) to method 1, reserved byte 1 (the binding's).",
		build:   func() []byte { return AppendRPC(nil, protoFork) },
		want:    protoDecoded{Msgs: []protoMsg{protoRPCMsg(protoFork)}},
	},
	{
		name: "rpc-impulse", kind: protoIn,
		comment: "RPC (type 0) as the IC delivers it: an impulse (rpc kind 2) to system method -2.",
		build:   func() []byte { return AppendRPC(nil, protoImpulse) },
		want:    protoDecoded{Msgs: []protoMsg{protoRPCMsg(protoImpulse)}},
	},
	{
		name: "outgoing-rpc-call", kind: protoOut,
		comment: "RPC (type 0) as the app sends it: a call to method 300 of instance \"server\".",
		build:   func() []byte { return AppendOutgoingRPC(nil, "server", protoCall) },
		want:    protoDecoded{Msgs: []protoMsg{protoOutMsg("server", protoCall)}},
	},
	{
		name: "outgoing-rpc-fork", kind: protoOut,
		comment: "RPC (type 0) as the app sends it: a fork to method 1 of instance \"server\".",
		build:   func() []byte { return AppendOutgoingRPC(nil, "server", protoFork) },
		want:    protoDecoded{Msgs: []protoMsg{protoOutMsg("server", protoFork)}},
	},
	{
		name: "outgoing-rpc-impulse", kind: protoOut,
		comment: "RPC (type 0) as the app sends it: an impulse to system method -2 of instance \"server\".",
		build:   func() []byte { return AppendOutgoingRPC(nil, "server", protoImpulse) },
		want:    protoDecoded{Msgs: []protoMsg{protoOutMsg("server", protoImpulse)}},
	},
	{
		name: "outgoing-rpc-self", kind: protoOut,
		comment: "RPC (type 0) as the app sends it: a self-call, destination length 0 and no name.",
		build:   func() []byte { return AppendOutgoingRPC(nil, "", protoSelf) },
		want:    protoDecoded{Msgs: []protoMsg{protoOutMsg("", protoSelf)}},
	},
	{
		name: "attachto", kind: protoOut,
		comment: "AttachTo (type 1), app -> IC: the destination name, UTF-8, before the first RPC to it.",
		build:   func() []byte { return AppendAttachTo(nil, "server") },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeAttachTo, Data: []byte("server")}}},
	},
	{
		name: "takecheckpoint", kind: protoIn,
		comment: "TakeCheckpoint (type 2), both directions, no data.",
		build:   func() []byte { return AppendControl(nil, TypeTakeCheckpoint) },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeTakeCheckpoint}}},
	},
	{
		name: "rpcbatch", kind: protoIn,
		comment: "RPCBatch (type 5) as the IC delivers it: count 2, then two framed RPC messages.",
		build: func() []byte {
			rpcs := AppendRPC(AppendRPC(nil, protoCall), protoFork)
			return AppendRPCBatch(nil, rpcs, 2)
		},
		want: protoDecoded{Msgs: []protoMsg{{
			Type: TypeRPCBatch, Count: 2, Replayable: -1,
			Batch: []protoMsg{protoRPCMsg(protoCall), protoRPCMsg(protoFork)},
		}}},
	},
	{
		name: "rpcbatch-outgoing", kind: protoOut,
		comment: "RPCBatch (type 5) as the app sends it: count 2, then two framed outgoing RPC messages.",
		build: func() []byte {
			rpcs := AppendOutgoingRPC(AppendOutgoingRPC(nil, "server", protoCall), "", protoSelf)
			return AppendRPCBatch(nil, rpcs, 2)
		},
		want: protoDecoded{Msgs: []protoMsg{{
			Type: TypeRPCBatch, Count: 2, Replayable: -1,
			Batch: []protoMsg{protoOutMsg("server", protoCall), protoOutMsg("", protoSelf)},
		}}},
	},
	{
		name: "countreplayablerpcbatch", kind: protoIn,
		comment: "CountReplayableRPCBatch (type 13), IC -> app: count 3, replayable 2 (not impulses), three framed RPCs.",
		build: func() []byte {
			rpcs := AppendRPC(AppendRPC(AppendRPC(nil, protoCall), protoImpulse), protoFork)
			return AppendCountReplayableRPCBatch(nil, rpcs, 3, 2)
		},
		want: protoDecoded{Msgs: []protoMsg{{
			Type: TypeCountReplayableRPCBatch, Count: 3, Replayable: 2,
			Batch: []protoMsg{protoRPCMsg(protoCall), protoRPCMsg(protoImpulse), protoRPCMsg(protoFork)},
		}}},
	},
	{
		name: "checkpoint-804", kind: protoCheckpoint,
		comment: "Checkpoint (type 8), both directions, announcing 804 state bytes: 06 08 c8 0c.\n" +
			"The 804 state bytes follow the frame, outside its size.",
		build: func() []byte { return append(AppendCheckpointMessage(nil, 804), protoState(804)...) },
		want: protoDecoded{
			Msgs:  []protoMsg{{Type: TypeCheckpoint, StateLen: 804}},
			State: protoState(804),
		},
	},
	{
		name: "initialmessage", kind: protoIn,
		comment: "InitialMessage (type 9), both directions: any bytes, here a framed incoming RPC,\n" +
			"which the IC echoes back as the first input.",
		build: func() []byte { return AppendInitialMessage(nil, AppendRPC(nil, protoInit)) },
		want:  protoDecoded{Msgs: []protoMsg{{Type: TypeInitialMessage, Data: AppendRPC(nil, protoInit)}}},
	},
	{
		name: "upgradetakecheckpoint", kind: protoIn,
		comment: "UpgradeTakeCheckpoint (type 10), IC -> app, no data.",
		build:   func() []byte { return AppendControl(nil, TypeUpgradeTakeCheckpoint) },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeUpgradeTakeCheckpoint}}},
	},
	{
		name: "takebecomingprimarycheckpoint", kind: protoIn,
		comment: "TakeBecomingPrimaryCheckpoint (type 11), IC -> app, no data.",
		build:   func() []byte { return AppendControl(nil, TypeTakeBecomingPrimaryCheckpoint) },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeTakeBecomingPrimaryCheckpoint}}},
	},
	{
		name: "upgradeservice", kind: protoIn,
		comment: "UpgradeService (type 12), IC -> app, no data.",
		build:   func() []byte { return AppendControl(nil, TypeUpgradeService) },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeUpgradeService}}},
	},
	{
		name: "trimto", kind: protoIn,
		comment: "TrimTo (type 14) passes between ICs only and is never sent to an app; its data is\n" +
			"opaque to logfmt. Framed here without data.",
		build: func() []byte { return AppendMessage(nil, TypeTrimTo, nil) },
		want:  protoDecoded{Msgs: []protoMsg{{Type: TypeTrimTo}}},
	},
	{
		name: "becomingprimary", kind: protoIn,
		comment: "BecomingPrimary (type 15), IC -> app, no data.",
		build:   func() []byte { return AppendControl(nil, TypeBecomingPrimary) },
		want:    protoDecoded{Msgs: []protoMsg{{Type: TypeBecomingPrimary}}},
	},
	{
		name: "wireheader", kind: protoHeader,
		comment: "The 24-byte header of a record the IC sends to the app, little-endian.",
		build: func() []byte {
			return AppendWireHeader(nil, WireHeader{CommitterID: 0x11223344, Size: 64, CheckBytes: 0x0102030405060708, Seq: 42})
		},
		want: protoDecoded{Header: &WireHeader{CommitterID: 0x11223344, Size: 64, CheckBytes: 0x0102030405060708, Seq: 42}},
	},
	{
		name: "wirerecord", kind: protoRecord,
		comment: "A whole record, IC -> app: header (check bytes = xxhash64 of the body), then an RPC\n" +
			"and a TakeCheckpoint message.",
		build: func() []byte { return AppendWireRecord(nil, 7, 42, protoRecordBody()) },
		want: protoDecoded{
			Header: &WireHeader{CommitterID: 7, Size: int32(WireHeaderSize + len(protoRecordBody())), CheckBytes: int64(xxhash.Sum64(protoRecordBody())), Seq: 42},
			Msgs:   []protoMsg{protoRPCMsg(protoCall), {Type: TypeTakeCheckpoint}},
		},
	},
	{
		name: "wirerecord-control", kind: protoRecord,
		comment: "A control record (sequence id -1) the IC makes up: TakeBecomingPrimaryCheckpoint.",
		build: func() []byte {
			return AppendWireRecord(nil, 7, SeqControl, AppendControl(nil, TypeTakeBecomingPrimaryCheckpoint))
		},
		want: protoDecoded{
			Header: &WireHeader{CommitterID: 7, Size: 26, CheckBytes: int64(xxhash.Sum64([]byte{0x02, 0x0b})), Seq: -1},
			Msgs:   []protoMsg{{Type: TypeTakeBecomingPrimaryCheckpoint}},
		},
	},
	{
		name: "wirerecord-checkpoint", kind: protoRecord,
		comment: "The record carrying the checkpoint to recover from (sequence id -2). The 16 state\n" +
			"bytes follow the record on the stream, outside its size.",
		build: func() []byte {
			rec := AppendWireRecord(nil, 7, SeqCheckpointRecord, AppendCheckpointMessage(nil, 16))
			return append(rec, protoState(16)...)
		},
		want: protoDecoded{
			Header: &WireHeader{CommitterID: 7, Size: 27, CheckBytes: int64(xxhash.Sum64([]byte{0x04, 0x08, 0x20})), Seq: -2},
			Msgs:   []protoMsg{{Type: TypeCheckpoint, StateLen: 16}},
			State:  protoState(16),
		},
	},
}

// protoDecode decodes a vector's bytes with the package's decoders.
func protoDecode(kind protoKind, b []byte) (protoDecoded, error) {
	var d protoDecoded
	switch kind {
	case protoHeader:
		if len(b) != WireHeaderSize {
			return d, fmt.Errorf("header vector has %d bytes", len(b))
		}
		h, err := ParseWireHeader(b)
		if err != nil {
			return d, err
		}
		d.Header = &h
		return d, nil
	case protoRecord:
		h, err := ParseWireHeader(b)
		if err != nil {
			return d, err
		}
		if int(h.Size) > len(b) {
			return d, fmt.Errorf("record of size %d in %d bytes", h.Size, len(b))
		}
		d.Header = &h
		it := NewMessageIter(b[WireHeaderSize:h.Size])
		for m, ok := it.Next(); ok; m, ok = it.Next() {
			pm, err := protoDecodeMessage(m, false)
			if err != nil {
				return d, err
			}
			d.Msgs = append(d.Msgs, pm)
		}
		if err := it.Err(); err != nil {
			return d, err
		}
		d.State = b[h.Size:]
		if len(d.Msgs) > 0 && d.Msgs[len(d.Msgs)-1].StateLen != int64(len(d.State)) {
			return d, fmt.Errorf("%d state bytes after the record", len(d.State))
		}
		return d, nil
	}
	m, n, err := ParseMessage(b)
	if err != nil {
		return d, err
	}
	pm, err := protoDecodeMessage(m, kind == protoOut)
	if err != nil {
		return d, err
	}
	d.Msgs = []protoMsg{pm}
	d.State = b[n:]
	if pm.StateLen != int64(len(d.State)) {
		return d, fmt.Errorf("%d bytes after the message, want %d", len(d.State), pm.StateLen)
	}
	return d, nil
}

func protoDecodeMessage(m Message, outgoing bool) (protoMsg, error) {
	pm := protoMsg{Type: m.Type}
	switch m.Type {
	case TypeRPC:
		if outgoing {
			o, err := ParseOutgoingRPC(m.Data)
			if err != nil {
				return pm, err
			}
			pm.Out = &o
		} else {
			r, err := ParseRPC(m.Data)
			if err != nil {
				return pm, err
			}
			pm.RPC = &r
		}
	case TypeRPCBatch, TypeCountReplayableRPCBatch:
		b, err := ParseBatch(m)
		if err != nil {
			return pm, err
		}
		pm.Count, pm.Replayable = b.Count, b.Replayable
		it := b.Iter()
		for bm, ok := it.Next(); ok; bm, ok = it.Next() {
			sub, err := protoDecodeMessage(bm, outgoing)
			if err != nil {
				return pm, err
			}
			pm.Batch = append(pm.Batch, sub)
		}
		if err := it.Err(); err != nil {
			return pm, err
		}
	case TypeCheckpoint:
		n, err := m.CheckpointStateLen()
		if err != nil {
			return pm, err
		}
		pm.StateLen = n
	default:
		pm.Data = m.Data
	}
	return pm, nil
}

func TestProtocolGolden(t *testing.T) {
	if *updateProtocol {
		if err := os.MkdirAll(protoVectorDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, v := range protoVectors {
		t.Run(v.name, func(t *testing.T) {
			built := v.build()
			path := filepath.Join(protoVectorDir, v.name+".hex")
			if *updateProtocol {
				if err := os.WriteFile(path, protoFormatVector(v, built), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			file, err := protoReadHexFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestProtocolGolden -update to write it)", err)
			}
			if !bytes.Equal(built, file) {
				t.Errorf("%s: Append* output differs from the golden vector (-file +built):\n%s",
					path, cmp.Diff(strings.Split(hex.Dump(file), "\n"), strings.Split(hex.Dump(built), "\n")))
			}
			got, err := protoDecode(v.kind, file)
			if err != nil {
				t.Fatalf("decode %s: %v", path, err)
			}
			if diff := cmp.Diff(v.want, got, protoCmpOpts); diff != "" {
				t.Errorf("decode %s (-want +got):\n%s", path, diff)
			}
		})
	}
}

// TestProtocolGoldenCoverage checks that every message type of the protocol
// has a vector and that every file in testdata/protocol belongs to one.
func TestProtocolGoldenCoverage(t *testing.T) {
	covered := map[MessageType]bool{}
	names := map[string]bool{}
	for _, v := range protoVectors {
		names[v.name+".hex"] = true
		for _, m := range v.want.Msgs {
			covered[m.Type] = true
		}
	}
	for i := range 256 {
		if typ := MessageType(i); typ.IsKnown() && !covered[typ] {
			t.Errorf("no golden vector for %v", typ)
		}
	}
	files, err := filepath.Glob(filepath.Join(protoVectorDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !names[filepath.Base(f)] {
			t.Errorf("%s is not a golden vector of TestProtocolGolden", f)
		}
	}
}

// TestCheckpoint804 pins the golden fact of the protocol in code, apart from
// the vector files: a Checkpoint message announcing 804 state bytes.
func TestCheckpoint804(t *testing.T) {
	want := []byte{0x06, 0x08, 0xc8, 0x0c}
	if got := AppendCheckpointMessage(nil, 804); !bytes.Equal(got, want) {
		t.Fatalf("AppendCheckpointMessage(804) = % x, want % x", got, want)
	}
	file, err := protoReadHexFile(filepath.Join(protoVectorDir, "checkpoint-804.hex"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(file, want) || len(file) != len(want)+804 {
		t.Fatalf("checkpoint-804.hex: % x... (%d bytes), want % x then 804 bytes", file[:min(len(file), 8)], len(file), want)
	}
	m, n, err := ParseMessage(file)
	if err != nil || n != 4 || m.Type != TypeCheckpoint {
		t.Fatalf("ParseMessage = %v, %d, %v; want Checkpoint, 4, nil", m.Type, n, err)
	}
	if sl, err := m.CheckpointStateLen(); err != nil || sl != 804 {
		t.Fatalf("CheckpointStateLen = %d, %v; want 804", sl, err)
	}
}

// protoReadHexFile reads a golden vector: hex byte pairs separated by
// whitespace; "#" starts a comment that runs to the end of the line.
func protoReadHexFile(path string) ([]byte, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return protoParseHex(string(text))
}

func protoParseHex(text string) ([]byte, error) {
	var out []byte
	for i, line := range strings.Split(text, "\n") {
		if j := strings.IndexByte(line, '#'); j >= 0 {
			line = line[:j]
		}
		for _, f := range strings.Fields(line) {
			b, err := hex.DecodeString(f)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", i+1, err)
			}
			out = append(out, b...)
		}
	}
	return out, nil
}

// protoLine is one line of an annotated vector: some bytes and what they are.
type protoLine struct {
	b    []byte
	note string
}

// protoFormatVector renders a vector file: the comment, then the bytes with
// a note on each field.
func protoFormatVector(v protoVector, b []byte) []byte {
	var w bytes.Buffer
	fmt.Fprintf(&w, "# %s: ", v.name)
	for i, l := range strings.Split(v.comment, "\n") {
		if i > 0 {
			w.WriteString("# ")
		}
		w.WriteString(l + "\n")
	}
	w.WriteString("# Hex byte pairs; \"#\" starts a comment. Written by go test -run TestProtocolGolden -update.\n")
	for _, l := range protoAnnotate(v.kind, b) {
		for i := 0; i < len(l.b) || i == 0; i += 16 {
			chunk := l.b[i:min(i+16, len(l.b))]
			line := fmt.Sprintf("% x", chunk)
			if i == 0 && l.note != "" {
				line = fmt.Sprintf("%-48s # %s", line, l.note)
			}
			w.WriteString(strings.TrimRight(line, " ") + "\n")
		}
	}
	return w.Bytes()
}

// protoAnnotate splits a vector into fields, walking the bytes by hand. It
// only has to cope with the vectors' valid bytes.
func protoAnnotate(kind protoKind, b []byte) []protoLine {
	var lines []protoLine
	switch kind {
	case protoHeader:
		return protoAnnotateHeader(b)
	case protoRecord:
		lines = protoAnnotateHeader(b[:WireHeaderSize])
		size := int(binary.LittleEndian.Uint32(b[4:]))
		body := b[WireHeaderSize:size]
		for len(body) > 0 {
			ml, n := protoAnnotateMessage(body, false, "")
			lines = append(lines, ml...)
			body = body[n:]
		}
		b = b[size:]
	default:
		ml, n := protoAnnotateMessage(b, kind == protoOut, "")
		lines = append(lines, ml...)
		b = b[n:]
	}
	if len(b) > 0 {
		lines = append(lines, protoLine{b, fmt.Sprintf("%d checkpoint state bytes, outside the frame", len(b))})
	}
	return lines
}

func protoAnnotateHeader(b []byte) []protoLine {
	return []protoLine{
		{b[0:4], fmt.Sprintf("committer id %d (IntFixed)", int32(binary.LittleEndian.Uint32(b[0:])))},
		{b[4:8], fmt.Sprintf("record size %d, header included (IntFixed)", int32(binary.LittleEndian.Uint32(b[4:])))},
		{b[8:16], fmt.Sprintf("check bytes %#x (LongFixed)", binary.LittleEndian.Uint64(b[8:]))},
		{b[16:24], fmt.Sprintf("sequence id %d (LongFixed)", int64(binary.LittleEndian.Uint64(b[16:])))},
	}
}

// protoAnnotateMessage annotates the message framed at the start of b and
// returns its lines and its frame length.
func protoAnnotateMessage(b []byte, outgoing bool, indent string) ([]protoLine, int) {
	var lines []protoLine
	off := 0
	varint := func(what string) int64 {
		v, n, err := ReadZigZag(b[off:])
		if err != nil {
			panic(err)
		}
		enc := "ZigZagInt"
		if what == "state length" {
			enc = "ZigZagLong"
		}
		lines = append(lines, protoLine{b[off : off+n], fmt.Sprintf("%s%s %d (%s)", indent, what, v, enc)})
		off += n
		return v
	}
	one := func(note string) byte {
		c := b[off]
		lines = append(lines, protoLine{b[off : off+1], indent + note})
		off++
		return c
	}
	text := func(what string, n int) {
		if n > 0 {
			lines = append(lines, protoLine{b[off : off+n], fmt.Sprintf("%s%s %q", indent, what, b[off:off+n])})
		}
		off += n
	}
	size := varint("size")
	end := off + int(size)
	typ := MessageType(b[off])
	one(fmt.Sprintf("type %d = %v", typ, typ))
	switch typ {
	case TypeRPC:
		if outgoing {
			text("destination", int(varint("destination length")))
		}
		one(fmt.Sprintf("reserved %d", b[off]))
		varint("method id")
		one(fmt.Sprintf("rpc kind %d = %v", b[off], RPCKind(b[off])))
		text("arguments", end-off)
	case TypeRPCBatch, TypeCountReplayableRPCBatch:
		varint("count")
		if typ == TypeCountReplayableRPCBatch {
			varint("replayable (not impulses)")
		}
		for i := 1; off < end; i++ {
			sub, n := protoAnnotateMessage(b[off:end], outgoing, fmt.Sprintf("%s  RPC %d: ", indent, i))
			lines = append(lines, sub...)
			off += n
		}
	case TypeCheckpoint:
		varint("state length")
	case TypeInitialMessage:
		sub, n := protoAnnotateMessage(b[off:end], false, indent+"  payload: ")
		lines = append(lines, sub...)
		off += n
	case TypeAttachTo:
		text("destination", end-off)
	default:
		if end > off {
			lines = append(lines, protoLine{b[off:end], indent + "data"})
		}
	}
	return lines, end
}

func TestZigZag(t *testing.T) {
	tests := []struct {
		v    int64
		want []byte
	}{
		{0, []byte{0x00}},
		{-1, []byte{0x01}},
		{1, []byte{0x02}},
		{63, []byte{0x7e}},
		{-64, []byte{0x7f}},
		{64, []byte{0x80, 0x01}},
		{804, []byte{0xc8, 0x0c}},
		{3, []byte{0x06}},
		{math.MaxInt32, []byte{0xfe, 0xff, 0xff, 0xff, 0x0f}},
		{math.MinInt32, []byte{0xff, 0xff, 0xff, 0xff, 0x0f}},
		{math.MaxInt64, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{math.MinInt64, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, tt := range tests {
		got := AppendZigZag([]byte{0xaa}, tt.v)
		if !bytes.Equal(got[1:], tt.want) || got[0] != 0xaa {
			t.Errorf("AppendZigZag(%d) = % x, want % x", tt.v, got[1:], tt.want)
		}
		if std := binary.AppendVarint(nil, tt.v); !bytes.Equal(std, tt.want) {
			t.Errorf("binary.AppendVarint(%d) = % x, want % x", tt.v, std, tt.want)
		}
		if n := ZigZagLen(tt.v); n != len(tt.want) {
			t.Errorf("ZigZagLen(%d) = %d, want %d", tt.v, n, len(tt.want))
		}
		v, n, err := ReadZigZag(append(slices.Clone(tt.want), 0x55))
		if err != nil || v != tt.v || n != len(tt.want) {
			t.Errorf("ReadZigZag(% x) = %d, %d, %v; want %d, %d, nil", tt.want, v, n, err, tt.v, len(tt.want))
		}
	}
	// Non-shortest encodings decode, as with binary.Varint.
	if v, n, err := ReadZigZag([]byte{0x82, 0x80, 0x00}); v != 1 || n != 3 || err != nil {
		t.Errorf("ReadZigZag(82 80 00) = %d, %d, %v; want 1, 3, nil", v, n, err)
	}
}

func TestReadZigZagErrors(t *testing.T) {
	ff := func(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"continuation", []byte{0x80}, ErrTruncated},
		{"nine continuations", ff(9), ErrTruncated},
		{"ten continuations", ff(10), ErrMalformed},
		{"eleven bytes", append(ff(10), 0x01), ErrMalformed},
		{"overflow in tenth byte", append(ff(9), 0x02), ErrMalformed},
	}
	for _, tt := range tests {
		_, _, err := ReadZigZag(tt.b)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ReadZigZag(% x) error = %v, want %v", tt.name, tt.b, err, tt.want)
		}
		if err != nil && !strings.HasPrefix(err.Error(), "logfmt: ") {
			t.Errorf("%s: error %q lacks the logfmt: prefix", tt.name, err)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		got  fmt.Stringer
		want string
	}{
		{TypeRPC, "RPC"},
		{TypeAttachTo, "AttachTo"},
		{TypeTakeCheckpoint, "TakeCheckpoint"},
		{TypeRPCBatch, "RPCBatch"},
		{TypeCheckpoint, "Checkpoint"},
		{TypeInitialMessage, "InitialMessage"},
		{TypeUpgradeTakeCheckpoint, "UpgradeTakeCheckpoint"},
		{TypeTakeBecomingPrimaryCheckpoint, "TakeBecomingPrimaryCheckpoint"},
		{TypeUpgradeService, "UpgradeService"},
		{TypeCountReplayableRPCBatch, "CountReplayableRPCBatch"},
		{TypeTrimTo, "TrimTo"},
		{TypeBecomingPrimary, "BecomingPrimary"},
		{MessageType(3), "Type(3)"},
		{MessageType(16), "Type(16)"},
		{MessageType(255), "Type(255)"},
		{RPCCall, "Call"},
		{RPCFork, "Fork"},
		{RPCImpulse, "Impulse"},
		{RPCKind(3), "RPCKind(3)"},
	}
	for _, tt := range tests {
		if s := tt.got.String(); s != tt.want {
			t.Errorf("String() = %q, want %q", s, tt.want)
		}
	}
}

func TestParseMessage(t *testing.T) {
	b := AppendAttachTo(nil, "a")
	b = AppendControl(b, TypeTakeCheckpoint)
	m, n, err := ParseMessage(b)
	if err != nil || n != 3 {
		t.Fatalf("ParseMessage = %d, %v; want 3, nil", n, err)
	}
	if diff := cmp.Diff(Message{Type: TypeAttachTo, Data: []byte("a")}, m); diff != "" {
		t.Errorf("ParseMessage (-want +got):\n%s", diff)
	}
	b[2] = 'b' // Data aliases the input.
	if string(m.Data) != "b" {
		t.Errorf("Data = %q after changing the input, want %q", m.Data, "b")
	}
	if got := (Message{Type: TypeAttachTo, Data: make([]byte, 200)}).EncodedLen(); got != 203 {
		t.Errorf("EncodedLen = %d, want 203", got)
	}
}

func TestParseMessageErrors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"size varint cut", []byte{0x80}, ErrTruncated},
		{"size 0", []byte{0x00, 0x02}, ErrMalformed},
		{"size -1", []byte{0x01, 0x02}, ErrMalformed},
		{"size beyond ZigZagInt", AppendZigZag(nil, math.MaxInt32+1), ErrMalformed},
		{"data cut", []byte{0x06, 0x08, 0xc8}, ErrTruncated},
		{"type missing", []byte{0x02}, ErrTruncated},
	}
	for _, tt := range tests {
		_, _, err := ParseMessage(tt.b)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseMessage(% x) error = %v, want %v", tt.name, tt.b, err, tt.want)
		}
	}
}

func TestCheckpointStateLenErrors(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"not a checkpoint", Message{Type: TypeRPC, Data: []byte{0x02}}, ErrMalformed},
		{"no data", Message{Type: TypeCheckpoint}, ErrTruncated},
		{"trailing bytes", Message{Type: TypeCheckpoint, Data: []byte{0x02, 0x00}}, ErrMalformed},
		{"negative", Message{Type: TypeCheckpoint, Data: []byte{0x01}}, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := tt.m.CheckpointStateLen()
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: CheckpointStateLen error = %v, want %v", tt.name, err, tt.want)
		}
	}
	if n, err := (Message{Type: TypeCheckpoint, Data: []byte{0x00}}).CheckpointStateLen(); n != 0 || err != nil {
		t.Errorf("empty state: CheckpointStateLen = %d, %v; want 0, nil", n, err)
	}
	big := AppendCheckpointMessage(nil, math.MaxInt64)
	m, _, err := ParseMessage(big)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := m.CheckpointStateLen(); n != math.MaxInt64 || err != nil {
		t.Errorf("CheckpointStateLen = %d, %v; want MaxInt64, nil", n, err)
	}
}

func TestAppendPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("AppendCheckpointMessage(-1) did not panic")
		}
	}()
	AppendCheckpointMessage(nil, -1)
}

func TestParseRPCErrors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"no method id", []byte{0x00}, ErrTruncated},
		{"method id cut", []byte{0x00, 0x80}, ErrTruncated},
		{"no kind", []byte{0x00, 0x02}, ErrTruncated},
		{"unknown kind", []byte{0x00, 0x02, 0x03}, ErrMalformed},
		{"method id beyond 32 bits", append(AppendZigZag([]byte{0x00}, math.MaxInt32+1), 0x00), ErrMalformed},
		{"method id below 32 bits", append(AppendZigZag([]byte{0x00}, math.MinInt32-1), 0x00), ErrMalformed},
	}
	for _, tt := range tests {
		_, err := ParseRPC(tt.data)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseRPC(% x) error = %v, want %v", tt.name, tt.data, err, tt.want)
		}
	}
	r, err := ParseRPC([]byte{0x07, 0x01, 0x02})
	want := RPC{Reserved: 7, MethodID: -1, Kind: RPCImpulse}
	if err != nil || !cmp.Equal(want, r, protoCmpOpts) {
		t.Errorf("ParseRPC(07 01 02) = %+v, %v; want %+v, nil", r, err, want)
	}
	r, err = ParseRPC(append(AppendZigZag([]byte{0x00}, math.MinInt32), 0x00))
	if err != nil || r.MethodID != math.MinInt32 {
		t.Errorf("ParseRPC(MinInt32 method) = %+v, %v", r, err)
	}
}

func TestParseOutgoingRPC(t *testing.T) {
	m, _, err := ParseMessage(AppendOutgoingRPC(nil, "héllo", protoCall))
	if err != nil {
		t.Fatal(err)
	}
	o, err := ParseOutgoingRPC(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if o.IsSelf() || string(o.Dest) != "héllo" {
		t.Errorf("Dest = %q, IsSelf = %v", o.Dest, o.IsSelf())
	}
	if diff := cmp.Diff(protoCall, o.RPC, protoCmpOpts); diff != "" {
		t.Errorf("RPC (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"negative dest length", []byte{0x01, 0x00, 0x02, 0x00}, ErrMalformed},
		{"dest longer than data", []byte{0x0a, 'a', 'b'}, ErrTruncated},
		{"no rpc after dest", []byte{0x02, 'a'}, ErrTruncated},
		{"bad kind after dest", []byte{0x02, 'a', 0x00, 0x02, 0x09}, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := ParseOutgoingRPC(tt.data)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseOutgoingRPC(% x) error = %v, want %v", tt.name, tt.data, err, tt.want)
		}
	}
}

func TestParseBatchErrors(t *testing.T) {
	rpc := AppendRPC(nil, protoFork)
	two := append(slices.Clone(rpc), rpc...)
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"not a batch", Message{Type: TypeRPC, Data: []byte{0x00}}, ErrMalformed},
		{"no count", Message{Type: TypeRPCBatch}, ErrTruncated},
		{"negative count", Message{Type: TypeRPCBatch, Data: []byte{0x01}}, ErrMalformed},
		{"count too high", Message{Type: TypeRPCBatch, Data: append([]byte{0x06}, two...)}, ErrMalformed},
		{"count too low", Message{Type: TypeRPCBatch, Data: append([]byte{0x02}, two...)}, ErrMalformed},
		{"non-RPC inside", Message{Type: TypeRPCBatch, Data: []byte{0x02, 0x02, 0x02}}, ErrMalformed},
		{"frame runs past data", Message{Type: TypeRPCBatch, Data: append([]byte{0x02}, rpc[:len(rpc)-1]...)}, ErrTruncated},
		{"no replayable count", Message{Type: TypeCountReplayableRPCBatch, Data: []byte{0x00}}, ErrTruncated},
		{"replayable above count", Message{Type: TypeCountReplayableRPCBatch, Data: append([]byte{0x02, 0x04}, rpc...)}, ErrMalformed},
		{"negative replayable", Message{Type: TypeCountReplayableRPCBatch, Data: append([]byte{0x02, 0x01}, rpc...)}, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := ParseBatch(tt.m)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseBatch(%v % x) error = %v, want %v", tt.name, tt.m.Type, tt.m.Data, err, tt.want)
		}
	}
	b, err := ParseBatch(Message{Type: TypeRPCBatch, Data: []byte{0x00}})
	if err != nil || b.Count != 0 || b.Replayable != -1 || len(b.Messages) != 0 {
		t.Errorf("empty batch: ParseBatch = %+v, %v", b, err)
	}
}

func TestParseWireHeader(t *testing.T) {
	h := WireHeader{CommitterID: -5, Size: 100, CheckBytes: -1, Seq: math.MaxInt64}
	b := AppendWireHeader(nil, h)
	if len(b) != WireHeaderSize {
		t.Fatalf("AppendWireHeader wrote %d bytes", len(b))
	}
	got, err := ParseWireHeader(append(b, 0xee))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("ParseWireHeader (-want +got):\n%s", diff)
	}
	if got.BodyLen() != 76 {
		t.Errorf("BodyLen = %d, want 76", got.BodyLen())
	}
	tests := []struct {
		name string
		h    WireHeader
		cut  int
		want error
	}{
		{"short", WireHeader{Size: 24}, 23, ErrTruncated},
		{"size below header", WireHeader{Size: 23}, 24, ErrMalformed},
		{"negative size", WireHeader{Size: -1}, 24, ErrMalformed},
		{"seq -3", WireHeader{Size: 24, Seq: -3}, 24, ErrMalformed},
	}
	for _, tt := range tests {
		_, err := ParseWireHeader(AppendWireHeader(nil, tt.h)[:tt.cut])
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: ParseWireHeader error = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, seq := range []int64{SeqControl, SeqCheckpointRecord, 0} {
		if _, err := ParseWireHeader(AppendWireHeader(nil, WireHeader{Size: 24, Seq: seq})); err != nil {
			t.Errorf("seq %d: %v", seq, err)
		}
	}
}

func TestMessageIter(t *testing.T) {
	var b []byte
	b = AppendRPC(b, protoCall)
	b = AppendControl(b, TypeTakeCheckpoint)
	b = AppendCheckpointMessage(b, 3)
	it := NewMessageIter(b)
	var types []MessageType
	offsets := []int{it.Offset()}
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		types = append(types, m.Type)
		offsets = append(offsets, it.Offset())
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]MessageType{TypeRPC, TypeTakeCheckpoint, TypeCheckpoint}, types); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 11, 13, 16}, offsets); diff != "" {
		t.Errorf("offsets (-want +got):\n%s", diff)
	}

	// An error stops the iteration and names the offset in the whole input.
	it = NewMessageIter(append(slices.Clone(b[:13]), 0x01, 0x00))
	n := 0
	for _, ok := it.Next(); ok; _, ok = it.Next() {
		n++
	}
	if err := it.Err(); n != 2 || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "offset 13") || it.Offset() != 13 {
		t.Errorf("after %d messages: Err = %v, Offset = %d; want 2 messages, malformed at offset 13", n, err, it.Offset())
	}
	if _, ok := it.Next(); ok {
		t.Error("Next after an error returned a message")
	}

	it = NewMessageIter(nil)
	if _, ok := it.Next(); ok || it.Err() != nil {
		t.Errorf("empty input: Next = %v, Err = %v", ok, it.Err())
	}
}

// TestDecodeRecordZeroAllocs pins what BenchmarkDecodeRecord1000RPCs
// measures: walking a record body and decoding its RPCs does not allocate.
func TestDecodeRecordZeroAllocs(t *testing.T) {
	body := protoBody1000RPCs()
	var sum int64
	allocs := testing.AllocsPerRun(20, func() {
		sum += protoDecodeBody(body)
	})
	if allocs != 0 {
		t.Errorf("decoding a body of 1000 RPCs allocates %v times, want 0", allocs)
	}
	if want := int64(21) * protoDecodeBody(body); sum != want {
		t.Errorf("sum = %d, want %d", sum, want)
	}
}

// TestParseZeroAllocs checks that the buffer decoders do not allocate on
// success.
func TestParseZeroAllocs(t *testing.T) {
	rpc := AppendRPC(nil, protoCall)
	out := AppendOutgoingRPC(nil, "server", protoCall)
	batch := AppendCountReplayableRPCBatch(nil, append(slices.Clone(rpc), rpc...), 2, 2)
	ckpt := AppendCheckpointMessage(nil, 804)
	hdr := AppendWireHeader(nil, WireHeader{Size: 24})
	allocs := testing.AllocsPerRun(50, func() {
		m, _, err1 := ParseMessage(rpc)
		_, err2 := ParseRPC(m.Data)
		m, _, err3 := ParseMessage(out)
		_, err4 := ParseOutgoingRPC(m.Data)
		m, _, err5 := ParseMessage(batch)
		_, err6 := ParseBatch(m)
		m, _, err7 := ParseMessage(ckpt)
		_, err8 := m.CheckpointStateLen()
		_, err9 := ParseWireHeader(hdr)
		if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decoding allocates %v times, want 0", allocs)
	}
}

// TestDeliveryFormInPlace: rewriting an outgoing RPC into delivery form
// over its destination gives the same bytes as building it anew, or nil
// exactly when the destination leaves too little room.
func TestDeliveryFormInPlace(t *testing.T) {
	for _, dest := range []string{"", "a", "ab", "srv", "server-with-a-long-name"} {
		for _, n := range []int{0, 50, 200, 20000, 3 << 20} {
			out := AppendOutgoingRPC(nil, dest, RPC{MethodID: 9, Kind: RPCFork, Args: bytes.Repeat([]byte{'x'}, n)})
			m, _, err := ParseMessage(out)
			if err != nil {
				t.Fatal(err)
			}
			prefix := ZigZagLen(int64(len(dest))) + len(dest)
			want := AppendMessage(nil, TypeRPC, m.Data[prefix:])
			got := DeliveryFormInPlace(m.Data, prefix)
			hdr := len(want) - (len(m.Data) - prefix) // want's frame header
			if got == nil {
				if hdr <= prefix {
					t.Errorf("dest %q, %d bytes: nil although the destination has room", dest, n)
				}
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("dest %q, %d bytes: in place %x…, want %x…", dest, n, got[:min(8, len(got))], want[:min(8, len(want))])
			}
			if cap(got) != len(got) {
				t.Errorf("dest %q: the result must not be appendable into what follows it", dest)
			}
		}
	}
}

// TestChainDigestDefinition: ChainDigest is the documented formula at every
// size, on both sides of its small-message path.
func TestChainDigestDefinition(t *testing.T) {
	for _, dest := range []string{"", "srv", strings.Repeat("d", 300)} {
		for _, n := range []int{0, 1, 100, 500 - len(dest), 501 - len(dest), 4096} {
			if n < 0 {
				continue
			}
			rpc := bytes.Repeat([]byte{byte(n)}, n)
			var pre []byte
			pre = binary.LittleEndian.AppendUint64(pre, 0x1234)
			pre = binary.LittleEndian.AppendUint32(pre, uint32(len(dest)))
			want := xxhash.Sum64(append(append(pre, dest...), rpc...))
			if got := ChainDigest(0x1234, []byte(dest), rpc); got != want {
				t.Errorf("dest of %d bytes, rpc of %d: %x, want %x", len(dest), n, got, want)
			}
		}
	}
}

// TestOutgoingRPCBodyAt: the body's offset follows the destination length
// as encoded, also when the encoding is longer than it need be.
func TestOutgoingRPCBodyAt(t *testing.T) {
	rpc := AppendRPC(nil, RPC{MethodID: 5, Kind: RPCFork, Args: []byte("x")})
	m, _, _ := ParseMessage(rpc)
	for _, tc := range []struct {
		prefix []byte
		want   int
	}{
		{[]byte{0x06, 's', 'r', 'v'}, 4},       // 3, shortest
		{[]byte{0x86, 0x00, 's', 'r', 'v'}, 5}, // 3, in two bytes
		{[]byte{0x00}, 1},                      // self-call
	} {
		data := append(append([]byte(nil), tc.prefix...), m.Data...)
		o, err := ParseOutgoingRPC(data)
		if err != nil {
			t.Fatalf("% x: %v", tc.prefix, err)
		}
		if o.BodyAt != tc.want || !bytes.Equal(data[o.BodyAt:], m.Data) {
			t.Errorf("% x: BodyAt %d, want %d", tc.prefix, o.BodyAt, tc.want)
		}
	}
}
