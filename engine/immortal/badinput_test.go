package immortal

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// TestBadInputFromCoordinator feeds bytes that are not the protocol, or the
// protocol out of order: Serve must return a clear error, never panic.
func TestBadInputFromCoordinator(t *testing.T) {
	record := func(seq int64, body []byte) []byte { return logfmt.AppendWireRecord(nil, 7, seq, body) }
	control := func(typ logfmt.MessageType) []byte { return record(logfmt.SeqControl, logfmt.AppendControl(nil, typ)) }
	checkpoint := func(state string) []byte {
		return append(record(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(state)))), state...)
	}
	rpc := func(seq int64, data []byte) []byte {
		return record(seq, logfmt.AppendMessage(nil, logfmt.TypeRPC, data))
	}
	gobCk, _ := encodeCheckpoint(gobCodec{}, []byte{1, 2, 3}, &bindingState{nextCallID: 1})

	tests := []struct {
		name    string
		started bool   // first start done before the input
		input   []byte // then the stream ends
		want    string // the error starts with it
		is      error
	}{
		{
			name:  "text instead of records",
			input: []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"),
			want:  "immortal: read from coordinator: logfmt: malformed input: record body of 1414012951 bytes at offset 0 exceeds the limit",
			is:    logfmt.ErrMalformed,
		},
		{
			name:  "stream ends inside a record",
			input: rpc(1, []byte("0123456789abcdef"))[:30],
			want:  "immortal: read from coordinator: logfmt: truncated input",
			is:    io.ErrUnexpectedEOF,
		},
		{
			name:  "body that is not messages",
			input: record(1, []byte{0x7f, 0x7f, 0x7f}),
			want:  "immortal: read from coordinator: logfmt: malformed input",
			is:    logfmt.ErrMalformed,
		},
		{
			name:  "logged record before any checkpoint",
			input: rpc(1, []byte{0, 2, 1}),
			want:  "immortal: record 1: RPC before the coordinator sent a checkpoint or asked for the first one",
		},
		{
			name:  "checkpoint asked for before any state",
			input: control(logfmt.TypeTakeCheckpoint),
			want:  "immortal: control record: coordinator asked for a checkpoint before the app has a state",
		},
		{
			name:  "message apps send",
			input: record(logfmt.SeqControl, logfmt.AppendAttachTo(nil, "x")),
			want:  "immortal: control record: unexpected AttachTo message from the coordinator",
		},
		{
			name:  "unknown message type",
			input: record(logfmt.SeqControl, logfmt.AppendMessage(nil, 99, nil)),
			want:  "immortal: control record: unexpected Type(99) message from the coordinator",
		},
		{
			name:  "checkpoint that is not JSON",
			input: checkpoint("\x00\x01binary"),
			want:  "immortal: checkpoint record: checkpoint is not an ambr checkpoint (8 bytes)",
		},
		{
			name:  "checkpoint of another codec",
			input: append(record(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(gobCk)))), gobCk...),
			want:  `immortal: checkpoint record: checkpoint was made with codec "gob", the app uses "json"`,
		},
		{
			name:  "checkpoint whose state does not fit the type",
			input: checkpoint(`{"state":{"n":"many"},"binding":{"codec":"json","next_call_id":1,"pending":{}}}`),
			want:  "immortal: checkpoint record: decode state from checkpoint with codec json",
		},
		{
			name:  "checkpoint with a bad pending call",
			input: checkpoint(`{"state":{},"binding":{"codec":"json","next_call_id":1,"pending":{"x":{}}}}`),
			want:  `immortal: checkpoint record: checkpoint has a pending call with id "x"`,
		},
		{
			name:    "second checkpoint to recover from",
			started: true,
			input:   checkpoint(`{"state":{},"binding":{"codec":"json","next_call_id":1,"pending":{}}}`),
			want:    "immortal: checkpoint record: coordinator sent a checkpoint to recover from while primary",
		},
		{
			name:    "RPC too short",
			started: true,
			input:   rpc(2, []byte{0}),
			want:    "immortal: record 2: message 0: logfmt: truncated input",
			is:      logfmt.ErrTruncated,
		},
		{
			name:    "RPC of unknown kind",
			started: true,
			input:   rpc(2, []byte{0, 2, 9}),
			want:    "immortal: record 2: message 0: logfmt: malformed input: unknown rpc kind 9",
			is:      logfmt.ErrMalformed,
		},
		{
			name:    "batch that miscounts",
			started: true,
			input:   record(2, logfmt.AppendRPCBatch(nil, logfmt.AppendRPC(nil, logfmt.RPC{Kind: logfmt.RPCFork}), 3)),
			want:    "immortal: record 2: message 0: logfmt: malformed input: batch announces 3 RPCs and holds 1",
			is:      logfmt.ErrMalformed,
		},
		{
			name:    "InitialMessage that is not an envelope",
			started: true,
			input:   record(1, logfmt.AppendInitialMessage(nil, []byte{42})),
			want:    "immortal: record 1: message 0: InitialMessage: immortal: malformed envelope",
			is:      ErrBadEnvelope,
		},
		{
			name:    "upgrade",
			started: true,
			input:   control(logfmt.TypeUpgradeTakeCheckpoint),
			want:    "immortal: control record: coordinator sent UpgradeTakeCheckpoint, but the app was not built with immortal.Upgrade: immortal: no next version to upgrade to",
			is:      ErrUpgradeNotSupported,
		},
		{
			name:    "upgrade test",
			started: true,
			input:   control(logfmt.TypeUpgradeService),
			want:    "immortal: control record: coordinator sent UpgradeService",
			is:      ErrUpgradeNotSupported,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := newTestApp(&observer{})
			c := connect(t, app)
			if tt.started {
				c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
				c.expect(logfmt.TypeInitialMessage)
				c.expect(logfmt.TypeCheckpoint)
			}
			c.write(tt.input) // may fail once the app stopped reading
			c.toApp.Close()
			err := c.serveErr()
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Serve returned\n%v\nwant an error starting with\n%s", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v: %v", tt.is, err)
			}
		})
	}
}
