package supervise

import (
	"bytes"
	"io"
	"strings"
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
	// panicLine is the first Go panic or fatal error line: a panic's
	// stack trace soon pushes it out of the last lines.
	panicLine string
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
	if t.panicLine == "" {
		t.panicLine = panicOf(line)
	}
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// take returns the last lines, the unfinished one included, and the first
// panic line, and forgets them.
func (t *tailWriter) take() (lines []string, panicLine string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines, panicLine = t.lines, t.panicLine
	if len(t.partial) > 0 {
		lines = append(lines, string(t.partial))
	}
	t.lines, t.partial, t.panicLine = nil, nil, ""
	return lines, panicLine
}

// panicOf returns line if it is a Go runtime panic or fatal error line,
// or "panic: …" if it reports a handler's recovered panic as the Go
// binding does ("… handler Inc panicked: …"), and "" otherwise.
func panicOf(line string) string {
	if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") {
		return line
	}
	if _, after, ok := strings.Cut(line, " panicked: "); ok {
		return "panic: " + after
	}
	return ""
}
