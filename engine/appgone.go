package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// AppGone is how a conversation with the app ended, for a supervisor that
// decides whether the app is in a crash loop: which app process it was,
// which log record had last been handed to it, and whether it sent a
// message over the size limit. Options.OnAppGone receives it.
type AppGone struct {
	// Pid is the app process (0 if not known).
	Pid int
	// Delivered is the sequence number of the newest log record written to
	// the app's connection (0: none yet); while the app recovers, the
	// newest record replayed to it.
	Delivered int64
	// Oversize is set when the app sent a message over the limit.
	Oversize *OversizeMessage
	// Err is why the conversation ended.
	Err error
}

// OversizeMessage describes a message the app sent whose size field is
// over the limit: what of it arrived with its size field.
type OversizeMessage struct {
	Size, Limit int64
	Type        logfmt.MessageType
	// Dest, MethodID and Args (a prefix) describe the RPC, or the first RPC
	// of a batch, when enough of it arrived; Known says so.
	Known    bool
	Dest     string
	MethodID int32
	Args     []byte
}

// AppGoneError is the error a conversation ends with when the app went
// away; it wraps errAppGone and the reason.
type AppGoneError struct{ AppGone }

func (e *AppGoneError) Error() string   { return e.Err.Error() }
func (e *AppGoneError) Unwrap() []error { return []error{errAppGone, e.Err} }

// appGone is the error that ends conversation v because the app went away
// with err.
func (v *conversation) appGone(pid int, err error) error {
	g := AppGone{Pid: pid, Delivered: v.sender.delivered.Load(), Err: fmt.Errorf("%w: %w", errAppGone, err)}
	errors.As(err, &g.Oversize)
	return &AppGoneError{g}
}

// Error makes an OversizeMessage the error that ends the conversation.
func (o *OversizeMessage) Error() string {
	return fmt.Sprintf("the app sent a message of %d bytes; the limit is %d", o.Size, o.Limit)
}

// wireRecordSeq is the sequence number of a wire record (header first), or
// 0 for a control record or anything shorter than a header.
func wireRecordSeq(b []byte) int64 {
	if len(b) < logfmt.WireHeaderSize {
		return 0
	}
	return max(0, int64(binary.LittleEndian.Uint64(b[16:24])))
}

// isControlRecord reports whether b is a control record the Core made up
// for the app (logfmt.SeqControl).
func isControlRecord(b []byte) bool {
	return len(b) >= logfmt.WireHeaderSize && int64(binary.LittleEndian.Uint64(b[16:24])) == logfmt.SeqControl
}

// appRecvConn is the app's receive connection. It keeps a view of its last
// read (a buffer fill of the message reader over it), so that when the
// reader refuses a message's size, the bytes that followed the size field
// can tell which message it was.
type appRecvConn struct {
	net.Conn
	off   int64  // bytes read so far
	last  []byte // the last read, if it was a buffer fill; else nil
	prev  [8]byte
	prevN int // the end of the read before last: a size field may straddle
}

// maxFill is the largest read kept as a view: the message reader's buffer
// fills are no larger; larger reads go straight into a message's buffer.
const maxFill = 1 << 17

func (c *appRecvConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		if k := len(c.last); k > 0 {
			c.prevN = copy(c.prev[:], c.last[max(0, k-len(c.prev)):])
		} else {
			c.prevN = 0
		}
		c.last = nil
		if len(p) <= maxFill {
			c.last = p[:n]
		}
		c.off += int64(n)
	}
	return n, err
}

// explainAppReadError turns err, from reading the app's messages from r,
// into an *OversizeMessage when the message that starts at offset start
// was refused for its size (its size field ends at end), and returns err
// otherwise.
func explainAppReadError(r io.Reader, start, end int64, err error) error {
	c, ok := r.(*appRecvConn)
	if !ok || !errors.Is(err, logfmt.ErrMalformed) || c.last == nil || end-start < 1 || end-start > logfmt.MaxZigZagLen {
		return err
	}
	// The bytes we still see: prev, then last, ending at c.off.
	seen := append(append([]byte(nil), c.prev[:c.prevN]...), c.last...)
	base := c.off - int64(len(seen))
	from, to := int(start-base), int(end-base)
	if from < 0 || to > len(seen) {
		return err
	}
	size, n := binary.Varint(seen[from:to])
	if n != to-from || size <= logfmt.MaxMessageSize {
		return err
	}
	o := &OversizeMessage{Size: size, Limit: logfmt.MaxMessageSize}
	rest := append([]byte(nil), seen[to:]...)
	if len(rest) < 256 {
		// The rest of the message's head may still be on its way.
		_ = c.Conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		more := make([]byte, 4096)
		k, _ := io.ReadAtLeast(c.Conn, more, 256-len(rest))
		rest = append(rest, more[:k]...)
	}
	o.describe(rest)
	return o
}

// describe fills in the type and, for an RPC or a batch's first RPC, the
// destination and method from the message's first bytes.
func (o *OversizeMessage) describe(head []byte) {
	if len(head) == 0 {
		return
	}
	o.Type = logfmt.MessageType(head[0])
	data := head[1:]
	if o.Type == logfmt.TypeRPCBatch {
		_, n := binary.Varint(data) // count
		if n <= 0 {
			return
		}
		data = data[n:]
		_, n = binary.Varint(data) // the first RPC's size
		if n <= 0 || len(data) <= n || logfmt.MessageType(data[n]) != logfmt.TypeRPC {
			return
		}
		data = data[n+1:]
	} else if o.Type != logfmt.TypeRPC {
		return
	}
	r, err := logfmt.ParseOutgoingRPC(data)
	if err != nil {
		return
	}
	o.Known, o.Dest, o.MethodID, o.Args = true, string(r.Dest), r.MethodID, append([]byte(nil), r.Args...)
}
