package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/vfs"
)

// rawConn is the app's side of the protocol as literal bytes: no codec.
type rawConn struct {
	t      *testing.T
	toIC   io.WriteCloser
	fromIC io.ReadCloser
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (c *rawConn) send(hexBytes string) {
	c.t.Helper()
	if _, err := c.toIC.Write(unhex(c.t, hexBytes)); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one record and checks its sequence id and body bytes; extra
// is a number of bytes that follow the record (checkpoint state).
func (c *rawConn) expect(seq int64, body string, extra string) {
	c.t.Helper()
	hdr := make([]byte, 24)
	if _, err := io.ReadFull(c.fromIC, hdr); err != nil {
		c.t.Fatalf("reading a record header: %v", err)
	}
	size := int(binary.LittleEndian.Uint32(hdr[4:]))
	gotSeq := int64(binary.LittleEndian.Uint64(hdr[16:]))
	want := unhex(c.t, body)
	if gotSeq != seq || size != 24+len(want) {
		c.t.Fatalf("record header %x: seq %d size %d, want seq %d size %d", hdr, gotSeq, size, seq, 24+len(want))
	}
	got := make([]byte, size-24)
	if _, err := io.ReadFull(c.fromIC, got); err != nil {
		c.t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("record %d body\n got % x\nwant % x", seq, got, want)
	}
	if extra != "" {
		w := unhex(c.t, extra)
		g := make([]byte, len(w))
		if _, err := io.ReadFull(c.fromIC, g); err != nil {
			c.t.Fatal(err)
		}
		if !bytes.Equal(g, w) {
			c.t.Fatalf("bytes after record %d: got % x want % x", seq, g, w)
		}
	}
}

// TestProtocolLiteralBytes drives the coordinator with an app written as
// literal bytes: first start, the InitialMessage echo, a self-call, an
// app-requested checkpoint, an impulse, a recovery conversation (with an
// impulse the coordinator must refuse), and an RPCBatch.
func TestProtocolLiteralBytes(t *testing.T) {
	mem := vfs.NewMem()
	pl := NewPipeListener()
	defer pl.Close()
	c, err := New(Options{Dir: testDir, Name: "raw", FS: mem, Listener: pl, Logger: quietLogger(), Registry: FileRegistry{Dir: t.TempDir()},
		Now: (&testClock{t: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}).Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	dial := func() *rawConn {
		toIC, fromIC, err := pl.Dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return &rawConn{t: t, toIC: toIC, fromIC: fromIC}
	}

	app := dial()
	// First start: TakeBecomingPrimaryCheckpoint in a control record.
	app.expect(-1, "02 0b", "")
	// InitialMessage "hello", then Checkpoint announcing 3 state bytes.
	app.send("0c 09 68656c6c6f")
	app.send("04 08 06" + "010203")
	// The InitialMessage comes back as record 1.
	app.expect(1, "0c 09 68656c6c6f", "")
	// A self-call: fork of method 5 with argument "x" (destination length 0).
	app.send("0c 00 00 00 0a 01 78")
	app.expect(2, "0a 00 00 0a 01 78", "")
	// The app asks for a checkpoint; the coordinator asks for the state.
	app.send("02 02")
	app.expect(-1, "02 02", "")
	app.send("04 08 06" + "040506")
	// An impulse to itself: method 7, argument "y".
	app.send("0c 00 00 00 0e 02 79")
	app.expect(3, "0a 00 00 0e 02 79", "")
	app.toIC.Close()
	app.fromIC.Close()

	// Recovery: the newest checkpoint's state after a seq -2 record, the
	// records logged since, then TakeBecomingPrimaryCheckpoint.
	app = dial()
	app.expect(-2, "04 08 06", "040506")
	app.expect(3, "0a 00 00 0e 02 79", "")
	app.expect(-1, "02 0b", "")
	// An impulse while recovering (before the app's checkpoint) is refused:
	// it must never reach the log.
	app.send("0c 00 00 00 0e 02 21")
	app.send("04 08 06" + "070809")
	// Now a self-call goes through as record 4: the impulse was not logged.
	app.send("0c 00 00 00 0a 01 7a")
	app.expect(4, "0a 00 00 0a 01 7a", "")
	// An RPCBatch of two self-calls (methods 1 and 2, args "a", "b") is
	// logged as their two RPCs.
	app.send("20 05 04" + "0c 00 00 00 02 01 61" + "0c 00 00 00 04 01 62")
	app.expect(5, "0a 00 00 02 01 61"+"0a 00 00 04 01 62", "")

	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	app.toIC.Close()
	app.fromIC.Close()
}
