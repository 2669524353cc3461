// Package termquery keeps ambr from asking the terminal questions it does
// not need answered, and asks the one the TUI needs with a short timeout.
//
// Bubble Tea v1's package init asks the terminal for its background colour
// (OSC 11, then a cursor position report, ESC[6n) on behalf of Lip Gloss's
// default renderer, and termenv waits up to 5 s (a constant) for an answer.
// Every ambr command links Bubble Tea (for the TUI), so on a terminal that
// does not answer — a serial console, `script`, some CI runners and
// multiplexers — every command, even `ambr ls`, stalled for 5 s.
//
// Importing this package (blank import, from the command's main package and
// from tui) fixes that: its init runs before Bubble Tea's — the Go spec
// initializes ready packages in import-path order, and
// github.com/ambr-dev/... sorts before github.com/charmbracelet/bubbletea,
// while this package imports only what Bubble Tea imports too — and it
// settles the default renderer's background so Bubble Tea's init has
// nothing to ask.
//
// The TUI picks colours for the terminal's background, so it asks, once,
// through Background, which gives up after a timeout it chooses. The CLI's
// own colours (cmd/ambr) are plain ANSI colours readable on either
// background, so commands never ask.
package termquery

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"golang.org/x/sys/unix"
)

// Timeout is how long the TUI waits for the terminal to answer. Terminals
// that answer do so within milliseconds.
const Timeout = 300 * time.Millisecond

func init() {
	// The default renderer is not the TUI's (tui makes its own for its
	// output); its background matters only to adaptive colours drawn
	// through the package-level lipgloss functions, which ambr does not use.
	lipgloss.SetHasDarkBackground(true)
}

// Background asks the terminal tty for its background colour and reports
// whether it is dark. known is false when the terminal did not say within
// timeout, or tty is not the controlling terminal of a foreground process
// (nothing is asked then). It asks as termenv does (OSC 11, then a cursor
// position request every terminal answers, so an answer to the second
// without one to the first means "not supported" at once), but with its own
// timeout. This is written here rather than taken from termenv because
// termenv's wait is a 5 s constant.
func Background(tty *os.File, timeout time.Duration) (dark, known bool) {
	fd := int(tty.Fd())
	if pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil || pgrp != unix.Getpgrp() {
		return false, false
	}
	saved, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return false, false
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, saved) //nolint:errcheck
	quiet := *saved
	quiet.Lflag &^= unix.ECHO | unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return false, false
	}
	if _, err := tty.WriteString("\x1b]11;?\x1b\\\x1b[6n"); err != nil {
		return false, false
	}
	deadline := time.Now().Add(timeout)
	var got []byte
	buf := make([]byte, 256)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false, false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		var fds unix.FdSet
		fds.Set(fd)
		n, err := unix.Select(fd+1, &fds, nil, nil, &tv)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return false, false
		}
		n, err = unix.Read(fd, buf)
		if err != nil || n == 0 {
			return false, false
		}
		got = append(got, buf[:n]...)
		if dark, known, done := parseAnswers(got); done {
			return dark, known
		}
	}
}

// parseAnswers reads what the terminal sent back: done once the cursor
// position report (ESC [ row ; col R) has arrived, known if an OSC 11
// answer (ESC ] 11 ; rgb:RRRR/GGGG/BBBB, ended by BEL or ESC \) came first.
func parseAnswers(b []byte) (dark, known, done bool) {
	cpr := bytes.LastIndexByte(b, 'R')
	if cpr < 0 || !bytes.Contains(b[:cpr], []byte("\x1b[")) {
		return false, false, false
	}
	i := bytes.Index(b, []byte("\x1b]11;rgb:"))
	if i < 0 {
		return false, false, true
	}
	rest := b[i+len("\x1b]11;rgb:"):]
	end := bytes.IndexAny(rest, "\x07\x1b")
	if end < 0 {
		return false, false, true
	}
	parts := strings.Split(string(rest[:end]), "/")
	if len(parts) != 3 {
		return false, false, true
	}
	var rgb [3]float64
	for k, p := range parts {
		v, err := strconv.ParseUint(p, 16, 16)
		if err != nil || len(p) == 0 || len(p) > 4 {
			return false, false, true
		}
		rgb[k] = float64(v) / float64(uint64(1)<<(4*len(p))-1)
	}
	// Relative luminance (ITU-R BT.709 weights) below one half is dark.
	lum := 0.2126*rgb[0] + 0.7152*rgb[1] + 0.0722*rgb[2]
	return lum < 0.5, true, true
}
