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
// codec of engine/bench, and falls back to JSON for anything else.
type rawBytesCodec struct{}

func (rawBytesCodec) Name() string { return "raw-bytes" }

func (rawBytesCodec) Marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		return b, nil
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
// size bytes.
func forwardSession(tb testing.TB, n, size int) (*session[forwardState], []byte) {
	tb.Helper()
	app := New(func() forwardState { return forwardState{} },
		WithCodec(rawBytesCodec{}), WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	Handle(app, "data", func(ctx *Ctx, s *forwardState, p []byte) (struct{}, error) {
		s.Msgs++
		s.Bytes += int64(len(p))
		return struct{}{}, ctx.Fork("peer", "echo", p)
	})
	s := newSession(app, "server")
	if _, err := s.record(logfmt.WireHeader{Seq: logfmt.SeqControl}, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil); err != nil {
		tb.Fatal(err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = byte(i)
	}
	var body []byte
	for i := 0; i < n; i++ {
		env := Envelope{Method: "data", Time: 1_700_000_000_000_000_000 + int64(i), Payload: payload}
		body = logfmt.AppendRPC(body, logfmt.RPC{Reserved: ReservedRequest, MethodID: MethodID("data"), Kind: logfmt.RPCFork, Args: env.Append(nil)})
	}
	return s, body
}

func BenchmarkSessionForward(b *testing.B) {
	const n, size = 1000, 64
	s, body := forwardSession(b, n, size)
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
