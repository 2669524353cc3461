package main

import (
	"io"
	"strings"

	"github.com/charmbracelet/lipgloss"
)

// cliStyles are the colours of ambr's plain (non-TUI) output. They are the
// terminal's own ANSI colours, readable on dark and light backgrounds, so
// no command has to ask the terminal for its background. Colour is on when
// the output is a terminal, off under NO_COLOR (https://no-color.org), and
// on for any output under CLICOLOR_FORCE (lipgloss/termenv read both).
type cliStyles struct {
	Good, Bad, Dim lipgloss.Style
}

func newCLIStyles(w io.Writer) *cliStyles {
	r := lipgloss.NewRenderer(w)
	s := r.NewStyle()
	return &cliStyles{
		Good: s.Foreground(lipgloss.ANSIColor(2)),
		Bad:  s.Foreground(lipgloss.ANSIColor(1)).Bold(true),
		Dim:  s.Faint(true),
	}
}

// state colours an instance's state for `ambr ls`.
func (s *cliStyles) state(state string) string {
	switch state {
	case "running":
		return s.Good.Render(state)
	case stateDamaged:
		return s.Bad.Render(state)
	}
	return s.Dim.Render(state)
}

// diffLine colours a line of a diff by its first character: "-" what was
// expected or removed (red), "+" what came instead or was added (green).
func (s *cliStyles) diffLine(line string) string {
	switch {
	case strings.HasPrefix(line, "-"):
		return s.Bad.UnsetBold().Render(line)
	case strings.HasPrefix(line, "+"):
		return s.Good.Render(line)
	}
	return line
}
