package immortal

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// TestKeptCtx checks that a Ctx a handler keeps is done once the handler
// returned and still describes its own message, whatever the session
// processes next: Ctx values must never be reused.
func TestKeptCtx(t *testing.T) {
	app := New(func() int { return 0 }, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var kept []*Ctx
	Handle(app, "keep", func(ctx *Ctx, s *int, _ struct{}) (struct{}, error) {
		kept = append(kept, ctx)
		return struct{}{}, nil
	})
	s := newSession(app, "server")
	if _, err := s.record(logfmt.WireHeader{Seq: logfmt.SeqControl}, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()
	record := func(seq int64, n int) {
		t.Helper()
		var body []byte
		for i := 0; i < n; i++ {
			env := Envelope{Method: "keep", Time: base + seq*1000 + int64(i)}
			body = logfmt.AppendRPC(body, logfmt.RPC{MethodID: MethodID("keep"), Kind: logfmt.RPCFork, Args: env.Append(nil)})
		}
		if _, err := s.record(logfmt.WireHeader{Seq: seq}, body, nil); err != nil {
			t.Fatal(err)
		}
	}
	const n = 3*ctxSlab + 7 // several slabs
	record(2, n)
	record(3, n)
	if len(kept) != 2*n {
		t.Fatalf("handler ran %d times, want %d", len(kept), 2*n)
	}
	seen := map[*Ctx]bool{}
	for i, c := range kept {
		if seen[c] {
			t.Fatalf("Ctx %d was handed out before", i)
		}
		seen[c] = true
		seq, index := int64(2+i/n), i%n
		if c.Seq() != seq || c.index != index {
			t.Errorf("kept Ctx %d: seq %d index %d, want %d %d", i, c.Seq(), c.index, seq, index)
		}
		if want := time.Unix(0, base+seq*1000+int64(index)).UTC(); c.Now() != want {
			t.Errorf("kept Ctx %d: Now %v, want %v", i, c.Now(), want)
		}
		if err := c.Fork("", "keep", struct{}{}); !errors.Is(err, errCtxDone) {
			t.Errorf("kept Ctx %d: Fork = %v, want errCtxDone", i, err)
		}
	}
	if out, err := s.record(logfmt.WireHeader{Seq: 4}, nil, nil); err != nil || out.Len() != 0 {
		t.Errorf("kept Ctx values sent %x (%v)", out, err)
	}
}

// TestHandleDecodesIntoZero checks that each message's arguments are
// decoded into a zero value, though Handle reuses where it decodes them:
// JSON merges into a map it is given, so a leftover would show.
func TestHandleDecodesIntoZero(t *testing.T) {
	app := New(func() int { return 0 }, WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var got []map[string]int
	Handle(app, "m", func(ctx *Ctx, s *int, args map[string]int) (struct{}, error) {
		got = append(got, args)
		return struct{}{}, nil
	})
	s := newSession(app, "server")
	if _, err := s.record(logfmt.WireHeader{Seq: logfmt.SeqControl}, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil); err != nil {
		t.Fatal(err)
	}
	var body []byte
	for _, p := range []string{`{"a":1}`, `{"b":2}`, `{"d":4,"e":"x"}`, ``, `{"c":3}`} {
		env := Envelope{Method: "m", Payload: []byte(p)}
		body = logfmt.AppendRPC(body, logfmt.RPC{MethodID: MethodID("m"), Kind: logfmt.RPCFork, Args: env.Append(nil)})
	}
	if _, err := s.record(logfmt.WireHeader{Seq: 2}, body, nil); err != nil {
		t.Fatal(err)
	}
	want := []map[string]int{{"a": 1}, {"b": 2}, nil, {"c": 3}} // the bad one is not handled
	if len(got) != len(want) {
		t.Fatalf("handler got %v, want %v", got, want)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) || (want[i] != nil && got[i] == nil) {
			t.Errorf("message %d: handler got %v, want %v", i, got[i], want[i])
		}
		for k, v := range want[i] {
			if got[i][k] != v {
				t.Errorf("message %d: handler got %v, want %v", i, got[i], want[i])
			}
		}
	}
}
