package immortal

import (
	"bytes"
	"errors"
	"hash/fnv"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		env  Envelope
		hex  string // the encoding, when pinned
	}{
		{name: "empty", env: Envelope{}, hex: "0100000000" + "00"},
		{
			name: "fork",
			env:  Envelope{Method: "add", Time: 1, Payload: []byte("5")},
			hex:  "0100" + "06616464" + "00" + "02" + "00" + "35",
		},
		{
			name: "call",
			env:  Envelope{Method: "double", CallID: 300, Time: -1, ReplyTo: "bob", Payload: []byte(`{"x":1}`)},
			hex:  "0100" + "0c646f75626c65" + "d804" + "01" + "06626f62" + "7b2278223a317d",
		},
		{name: "error result", env: Envelope{Flags: FlagError, CallID: 7, Time: 1700000000000000000, Payload: []byte("boom")}},
		{name: "extremes", env: Envelope{Method: "ü→" + strings.Repeat("m", 200), CallID: math.MaxInt64, Time: math.MinInt64, ReplyTo: strings.Repeat("r", 70)}},
		{name: "initial message", env: Envelope{Time: 1234567890, Payload: []byte(`{"greeting":"hi"}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.env.Append([]byte("prefix"))
			if !bytes.HasPrefix(b, []byte("prefix")) {
				t.Fatal("Append clobbered dst")
			}
			b = b[len("prefix"):]
			if tt.hex != "" {
				if got := hexOf(b); got != tt.hex {
					t.Errorf("encoding %s, want %s", got, tt.hex)
				}
			}
			got, err := ParseEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			if tt.env.Payload == nil {
				tt.env.Payload = []byte{}
			}
			if diff := cmp.Diff(tt.env, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func TestParseEnvelopeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nothing", nil, "0 bytes, want at least 2"},
		{"version only", []byte{1}, "1 bytes, want at least 2"},
		{"other version", []byte{2, 0, 0, 0, 0, 0}, "version 2, want 1"},
		{"no method length", []byte{1, 0}, "method name length at offset 2"},
		{"method past the end", []byte{1, 0, 10, 'a'}, "method name of 5 bytes at offset 3, 1 bytes left"},
		{"negative method length", []byte{1, 0, 1}, "method name of -1 bytes"},
		{"method not UTF-8", []byte{1, 0, 2, 0xff, 0, 0, 0}, "method name at offset 3 is not UTF-8"},
		{"no call id", []byte{1, 0, 0}, "call id at offset 3"},
		{"negative call id", []byte{1, 0, 0, 1, 0, 0}, "negative call id -1"},
		{"no time", []byte{1, 0, 0, 0}, "time at offset 4"},
		{"varint too long", []byte{1, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, "time at offset 4"},
		{"no reply-to", []byte{1, 0, 0, 0, 0}, "reply-to instance length at offset 5"},
		{"reply-to past the end", []byte{1, 0, 0, 0, 0, 4, 'x'}, "reply-to instance of 2 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnvelope(tt.in)
			if !errors.Is(err, ErrBadEnvelope) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseEnvelope(%x) = %v, want ErrBadEnvelope with %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestMethodID(t *testing.T) {
	tests := []struct {
		name string
		want int32
	}{
		{"", 0x011c9dc5},  // FNV-1a offset basis 0x811c9dc5, sign bit cleared
		{"a", 0x640c292c}, // FNV-1a gives 0xe40c292c: the sign bit is cleared
		{"count", int32(0x7fffffff & fnv1a("count"))},
	}
	for _, tt := range tests {
		if got := MethodID(tt.name); got != tt.want || got < 0 {
			t.Errorf("MethodID(%q) = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

// TestMethodIDMatchesHashFNV checks the hand-written FNV-1a of methodID
// against hash/fnv, for names held as strings and as bytes.
func TestMethodIDMatchesHashFNV(t *testing.T) {
	for _, name := range []string{"", "a", "count", "data", "echo", "progress", "ünïcode", strings.Repeat("long method name ", 10)} {
		h := fnv.New32a()
		h.Write([]byte(name))
		want := int32(h.Sum32() & math.MaxInt32)
		if got := MethodID(name); got != want {
			t.Errorf("MethodID(%q) = %#x, hash/fnv gives %#x", name, got, want)
		}
		if got := methodID([]byte(name)); got != want {
			t.Errorf("methodID([]byte(%q)) = %#x, hash/fnv gives %#x", name, got, want)
		}
	}
}

// fnv1a is FNV-1a 32, written out.
func fnv1a(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

func TestCheckpointRoundTrip(t *testing.T) {
	for _, c := range []Codec{JSONCodec{}, gobCodec{}} {
		in := bindingState{nextCallID: 5, pending: map[int64]pendingCall{
			2: {onResult: "r", method: "m", dest: "other", note: []byte(`{"a":1}`)},
			4: {onResult: "r", method: "m"},
		}}
		b, err := encodeCheckpoint(c, []byte(`[1,2]`), &in)
		if err != nil {
			t.Fatal(err)
		}
		state, out, err := decodeCheckpoint(c, b)
		if err != nil {
			t.Fatalf("%s: %v", c.Name(), err)
		}
		if string(state) != `[1,2]` {
			t.Errorf("%s: state %q", c.Name(), state)
		}
		if diff := cmp.Diff(in, out, cmp.AllowUnexported(bindingState{}, pendingCall{})); diff != "" {
			t.Errorf("%s: binding state (-want +got):\n%s", c.Name(), diff)
		}
	}
}
