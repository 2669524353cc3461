package retro

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ambr-dev/ambr/internal/testbin"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Clean()
	os.Exit(code)
}

// TestRetroWindows: whatever the window, the report is the per-record
// one: server-buggy's first divergence (its 50th Inc, record 51) is found
// inside a window by bisection, and every record from there on is counted.
func TestRetroWindows(t *testing.T) {
	server := testbin.Build(t, "../samples/counter/server")
	buggy := testbin.Build(t, "../samples/counter/server-buggy")
	dir := filepath.Join(t.TempDir(), "server")
	const n = 1500
	if err := counter.WriteServerLog(dir, n, 400, server); err != nil {
		t.Fatal(err)
	}
	for _, window := range []int64{1, 7, 64, 0} {
		rep, err := Run(context.Background(), Options{Dir: dir, Candidate: buggy, Window: window, Repeat: -1})
		if err != nil {
			t.Fatalf("window %d: %v", window, err)
		}
		if rep.Records != n || rep.First == nil || rep.First.Seq != 51 || rep.Divergent != n-50 || rep.LastSeq != n ||
			len(rep.First.Expected) != 1 || rep.First.Expected[0].Payload != "50" || rep.First.Actual[0].Payload != "1050" {
			t.Fatalf("window %d: %d records, first %+v, %d divergent, last %d", window, rep.Records, rep.First, rep.Divergent, rep.LastSeq)
		}
	}
	// The same build: nothing, and its second run agrees with it.
	rep, err := Run(context.Background(), Options{Dir: dir, Candidate: server})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Diverged() || rep.Records != n || rep.StatesCompared == 0 {
		t.Fatalf("same build: %+v", rep)
	}
}

// TestLikelyCauses: what differs decides which cause comes first.
func TestLikelyCauses(t *testing.T) {
	m := func(method, payload string) *Message {
		return &Message{Dest: "client", Kind: "fork", Method: method, Payload: payload}
	}
	for _, tc := range []struct {
		name           string
		now, logged    *Message
		reordered, few bool
		first          string
	}{
		{"same messages, other order", m("a", "1"), m("b", "2"), true, false, "iterating a map"},
		{"a time in the payload", m("Now", `"2026-12-02T06:03:59Z"`), m("Now", `"2026-11-21T10:15:00Z"`), false, false, "the wall clock"},
		{"unix nanoseconds", m("Stamp", "1764655439034295335"), m("Stamp", "1763720100000000000"), false, false, "the wall clock"},
		{"another value", m("Inc", "1050"), m("Inc", "50"), false, false, "randomness"},
		{"nothing sent", nil, m("Inc", "50"), false, true, "the wall clock read in a handler (time.Now): use ctx.Now(), which replays the logged time (a branch on it)"},
	} {
		causes := likelyCauses(tc.now, tc.logged, tc.reordered, tc.few)
		if len(causes) == 0 || len(causes[0]) < len(tc.first) || causes[0][:len(tc.first)] != tc.first || causes[len(causes)-1][:len("a build other")] != "a build other" {
			t.Errorf("%s: causes %q, want %q first and another build last", tc.name, causes, tc.first)
		}
	}
}

// TestAppStateHasEntities: retro-test compares an instance's entities with
// its state: a candidate whose account balances differ diverges in state
// even when the app's own state is the same.
func TestAppStateHasEntities(t *testing.T) {
	a := []byte(`{"state":{},"binding":{"codec":"json","durable":{"entities":{"account/alice":{"state":{"balance":10}}}}}}`)
	b := []byte(`{"state":{},"binding":{"codec":"json","durable":{"entities":{"account/alice":{"state":{"balance":11}}}}}}`)
	if sameState(a, b) {
		t.Fatal("different entity states compared the same")
	}
	plain := []byte(`{"state":{"count":3},"binding":{"codec":"json","next_call_id":1}}`)
	if got, ok := appState(plain); !ok || string(got) != `{"count":3}` {
		t.Fatalf("without entities the state is compared alone: %s", got)
	}
}

// The Go binding's binary checkpoint (a state that is not JSON) is named
// and compared as its JSON form, {"state_b64": …, "binding": …}.
func TestBinaryCheckpointAsJSON(t *testing.T) {
	meta := `{"binding":{"codec":"gob","next_call_id":1,"pending":{},"state_type":"example.com/app.S"}}`
	bin := append([]byte("\x00ambr-binary\x01"+string(rune(len(meta)))+meta), 1, 2, 3)
	asJSON := []byte(`{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{},"state_type":"example.com/app.S"}}`)
	if got := StateType(bin); got != "example.com/app.S" {
		t.Fatalf("state type %q", got)
	}
	if a, b := AppState(bin), AppState(asJSON); string(a) != string(b) {
		t.Fatalf("binary checkpoint compared as %q, its JSON form as %q", a, b)
	}
	other := append(append([]byte(nil), bin[:len(bin)-1]...), 4)
	if sameState(bin, other) || !sameState(bin, append([]byte(nil), bin...)) {
		t.Fatal("binary checkpoints compared wrongly")
	}
}
