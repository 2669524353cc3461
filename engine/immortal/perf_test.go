package immortal

import (
	"encoding/json"
	"io"
	"log/slog"
	goruntime "runtime"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// This file measures the binding's per-message cost on the path the
// throughput benchmark exercises: a record of many small RPCs whose handler
// forks each payload on to another instance.

// rawBytesCodec passes []byte payloads through as they are, like the
// codec of bench/, and falls back to JSON for anything else.
type rawBytesCodec struct{}

func (rawBytesCodec) Name() string { return "raw-bytes" }

func (rawBytesCodec) Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case struct{}:
		return nil, nil // as JSON would give "{}", without allocating
	}
	return json.Marshal(v)
}

func (rawBytesCodec) Unmarshal(data []byte, v any) error {
	if p, ok := v.(*[]byte); ok {
		*p = data
		return nil
	}
	return json.Unmarshal(data, v)
}

type forwardState struct {
	Msgs  int64
	Bytes int64
}

// forwardSession returns a live session whose "data" handler forks its
// payload to "peer", and a record body of n "data" RPCs with payloads of
// size bytes. With boxed, the handler forks one payload boxed once for all,
// so that what allocates is the binding alone: an app boxes the []byte it
// gives Fork into an interface, one allocation per message.
func forwardSession(tb testing.TB, n, size int, boxed bool) (*session[forwardState], []byte) {
	tb.Helper()
	app := New(func() forwardState { return forwardState{} },
		WithCodec(rawBytesCodec{}), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	var box any = payload
	Handle(app, "data", func(ctx *Ctx, s *forwardState, p []byte) (struct{}, error) {
		s.Msgs++
		s.Bytes += int64(len(p))
		if boxed {
			return struct{}{}, ctx.Fork("peer", "echo", box)
		}
		return struct{}{}, ctx.Fork("peer", "echo", p)
	})
	Handle(app, "get", func(ctx *Ctx, s *forwardState, _ struct{}) (struct{}, error) {
		s.Msgs++
		return struct{}{}, nil
	})
	s := liveSession(tb, app)
	var body []byte
	for i := 0; i < n; i++ {
		env := Envelope{Method: "data", Time: 1_700_000_000_000_000_000 + int64(i), Payload: payload}
		body = logfmt.AppendRPC(body, logfmt.RPC{Reserved: ReservedRequest, MethodID: MethodID("data"), Kind: logfmt.RPCFork, Args: env.Append(nil)})
	}
	return s, body
}

// liveSession returns a session of app, made primary on its first start.
func liveSession[S any](tb testing.TB, app *App[S]) *session[S] {
	tb.Helper()
	s := newSession(app, "server")
	if _, err := s.record(logfmt.WireHeader{Seq: logfmt.SeqControl}, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

// TestSessionAllocs bounds what the binding allocates per message it
// handles: a record of forks that fork on, and one of calls answered with
// a result. Only a Ctx slab now and then should remain.
func TestSessionAllocs(t *testing.T) {
	const n = 1000
	s, forwards := forwardSession(t, n, 64, true)
	var calls []byte
	for i := 0; i < n; i++ {
		env := Envelope{Method: "get", CallID: int64(i + 1), Time: 1_700_000_000_000_000_000 + int64(i), ReplyTo: "client"}
		calls = logfmt.AppendRPC(calls, logfmt.RPC{Reserved: ReservedRequest, MethodID: MethodID("get"), Kind: logfmt.RPCCall, Args: env.Append(nil)})
	}
	for _, tt := range []struct {
		name string
		body []byte
	}{{"forks", forwards}, {"calls", calls}} {
		seq := int64(2)
		perMsg := testing.AllocsPerRun(20, func() {
			seq++
			out, err := s.record(logfmt.WireHeader{Seq: seq}, tt.body, nil)
			if err != nil || out.Len() == 0 {
				t.Fatalf("record of %s: %d bytes out, %v", tt.name, out.Len(), err)
			}
		}) / n
		t.Logf("%s: %.3f allocations per message", tt.name, perMsg)
		// 1/ctxSlab for the Ctx slabs; the bound leaves a little room.
		if perMsg > 0.05 {
			t.Errorf("a record of %d %s allocates %.3f times per message, want at most 0.05", n, tt.name, perMsg)
		}
	}
}

func BenchmarkSessionForward(b *testing.B) {
	const n, size = 1000, 64
	s, body := forwardSession(b, n, size, false)
	h := logfmt.WireHeader{Seq: 2}
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h.Seq = int64(i) + 2
		if _, err := s.record(h, body, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	goruntime.ReadMemStats(&after)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/msg")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/float64(b.N)/n, "allocs/msg")
}
