package supervise

import (
	"bytes"
	"io"
	"sync"
)

// tailWriter passes what it is given on to w and keeps the last lines of
// it, for the message that names why an app crash-looped. Written by hand:
// a ring of a few lines is smaller than any dependency.
type tailWriter struct {
	w io.Writer

	mu      sync.Mutex
	lines   []string // the last complete lines, oldest first
	partial []byte   // an unfinished last line
	max     int
}

const (
	tailLines   = 20
	tailLineMax = 4 << 10 // longer lines are cut: a ring must stay small
)

func newTailWriter(w io.Writer) *tailWriter {
	if w == nil {
		w = io.Discard
	}
	return &tailWriter{w: w, max: tailLines}
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	rest := p
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			t.partial = appendCapped(t.partial, rest)
			break
		}
		t.partial = appendCapped(t.partial, rest[:i])
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		rest = rest[i+1:]
	}
	t.mu.Unlock()
	return t.w.Write(p)
}

func appendCapped(dst, b []byte) []byte {
	return append(dst, b[:min(len(b), max(0, tailLineMax-len(dst)))]...)
}

func (t *tailWriter) push(line string) {
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// take returns the last lines, the unfinished one included, and forgets
// them.
func (t *tailWriter) take() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.lines
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
	}
	t.lines, t.partial = nil, nil
	return out
}
