package tui

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/timetravel"
)

// stateWorker owns one time-travel session and runs one request at a time
// (a Session is not safe for concurrent use). The session is opened on the
// first request, in the command that runs it: a browser that never asks
// for state never starts the app.
type stateWorker struct {
	dir, app string
	ix       *timetravel.Index

	mu     sync.Mutex
	sess   *timetravel.Session
	noSess error // why there is no session (sticky: e.g. no build)
	closed bool

	ctx    context.Context
	cancel context.CancelFunc
	done   atomic.Int64 // progress of the running request
	total  atomic.Int64
}

func newStateWorker(dir, app string, ix *timetravel.Index) *stateWorker {
	ctx, cancel := context.WithCancel(context.Background())
	return &stateWorker{dir: dir, app: app, ix: ix, ctx: ctx, cancel: cancel}
}

// stateRequest asks for the state after record seq and, with mark != 0, the
// structural diff from the state after record mark (markState, when the
// browser has it already).
type stateRequest struct {
	seq       int64
	mark      int64
	markState []byte
}

// stateResult is the state after a record, and what the app sent on the way.
type stateResult struct {
	Seq, From int64
	Time      time.Time
	// State is the app's state (the Go binding's "state"), Binding the
	// binding's bookkeeping; Raw is the whole checkpoint when it is not
	// the Go binding's JSON.
	State, Binding json.RawMessage
	Raw            []byte
	Sent           []sentLine
	SentTotal      int
	// With a mark: the mark's state and the changes from it to State.
	Mark      int64
	MarkState []byte
	Diff      []timetravel.Change
}

// sentLine is one message the app sent, decoded.
type sentLine struct {
	Dest, Kind, Method, Payload string
}

// progress returns how far the running request is (0, 0 when idle).
func (w *stateWorker) progress() (done, total int64) { return w.done.Load(), w.total.Load() }

// compute runs req: it replays to the record before req.seq and steps onto
// it, so Sent is exactly what the app sent while handling record seq.
func (w *stateWorker) compute(req stateRequest) (*stateResult, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.done.Store(0)
	defer w.total.Store(0)
	if w.closed {
		return nil, context.Canceled
	}
	if w.sess == nil {
		if w.noSess != nil {
			return nil, w.noSess
		}
		sess, err := timetravel.Open(timetravel.Options{Dir: w.dir, App: w.app, Index: w.ix,
			Progress: func(done, total int64) { w.done.Store(done); w.total.Store(total) }})
		if err != nil {
			if errors.Is(err, timetravel.ErrNoBuild) {
				w.noSess = err
			}
			return nil, err
		}
		w.sess = sess
	}
	res := &stateResult{Mark: req.mark, MarkState: req.markState}
	if req.mark != 0 && req.markState == nil {
		c, err := w.sess.Goto(w.ctx, req.mark)
		if err != nil {
			return nil, fmt.Errorf("replay to the mark #%d: %w", req.mark, err)
		}
		res.MarkState = appState(c.State)
	}
	if cur := w.sess.Cursor(); req.seq > 0 && (cur == nil || cur.Seq != req.seq-1) {
		// Stand just before the record; a record before the oldest
		// checkpoint cannot be stood before, and is reached directly.
		if _, err := w.sess.Goto(w.ctx, req.seq-1); err != nil && !errors.Is(err, timetravel.ErrBadPoint) {
			return nil, err
		}
	}
	c, err := w.sess.Goto(w.ctx, req.seq)
	if err != nil {
		return nil, err
	}
	res.Seq, res.From, res.Time, res.SentTotal = c.Seq, c.From, c.Time, c.SentTotal
	res.State, res.Binding, res.Raw = splitState(c.State)
	res.Sent = viewSent(c.Sent)
	if req.mark != 0 {
		res.Diff = timetravel.Diff(res.MarkState, appState(c.State))
	}
	return res, nil
}

// close stops the app: it cancels a running request and waits for it.
func (w *stateWorker) close() {
	w.cancel()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	if w.sess != nil {
		w.sess.Close()
		w.sess = nil
	}
}

// splitState separates the Go binding's checkpoint into the app's state and
// the binding's bookkeeping; other states are returned whole as raw.
func splitState(b []byte) (state, binding json.RawMessage, raw []byte) {
	b = immortal.CheckpointJSON(b) // a binary one as the JSON form
	var wrap struct {
		State   json.RawMessage `json:"state"`
		Binding json.RawMessage `json:"binding"`
	}
	if json.Unmarshal(b, &wrap) == nil && wrap.State != nil {
		return wrap.State, wrap.Binding, nil
	}
	if json.Valid(b) {
		return b, nil, nil
	}
	return nil, nil, b
}

// appState is what diffs compare: the app's state without the binding's
// bookkeeping when there is one.
func appState(b []byte) []byte {
	if s, _, _ := splitState(b); s != nil {
		return s
	}
	return b
}

func viewSent(sent []timetravel.Sent) []sentLine {
	out := make([]sentLine, 0, len(sent))
	for _, s := range sent {
		d := s.Describe()
		v := sentLine{Dest: d.Dest, Kind: d.Kind, Method: d.Method}
		if d.Result {
			v.Method = "result"
		}
		if text, ok := timetravel.PayloadText(d.Payload); ok {
			v.Payload = text
		} else {
			v.Payload = "0x" + hex.EncodeToString(d.Payload)
		}
		out = append(out, v)
	}
	return out
}

// prettyJSON indents JSON (keeping its key order) into lines; other text is
// returned as it is.
func prettyJSON(b []byte) []string {
	var out bytes.Buffer
	if json.Indent(&out, bytes.TrimSpace(b), "", "  ") != nil {
		return strings.Split(string(b), "\n")
	}
	return strings.Split(out.String(), "\n")
}

// hexLines dumps b as hex, 16 bytes a line, at most max lines.
func hexLines(b []byte, maxLines int) []string {
	var out []string
	for i := 0; i < len(b); i += 16 {
		if len(out) == maxLines {
			out = append(out, fmt.Sprintf("… %d bytes in all", len(b)))
			break
		}
		out = append(out, fmt.Sprintf("%04x  %x", i, b[i:min(i+16, len(b))]))
	}
	return out
}
