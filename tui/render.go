package tui

import (
	"strings"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/x/ansi"
)

// fit cuts s (which may hold escape sequences) to w cells, ending in … when
// cut, and pads it with spaces to exactly w cells.
func fit(s string, w int) string {
	if w <= 0 {
		return ""
	}
	n := ansi.StringWidth(s)
	if n > w {
		s = ansi.Truncate(s, w, "…")
		n = ansi.StringWidth(s)
	}
	if n < w {
		s += strings.Repeat(" ", w-n)
	}
	return s
}

// column fits lines into a w×h block.
func column(lines []string, w, h int) []string {
	out := make([]string, h)
	for i := range out {
		if i < len(lines) {
			out[i] = fit(lines[i], w)
		} else {
			out[i] = strings.Repeat(" ", w)
		}
	}
	return out
}

// beside joins blocks of equal height left to right with sep between.
func beside(sep string, blocks ...[]string) []string {
	if len(blocks) == 0 {
		return nil
	}
	out := make([]string, len(blocks[0]))
	for i := range out {
		var b strings.Builder
		for j, bl := range blocks {
			if j > 0 {
				b.WriteString(sep)
			}
			if i < len(bl) {
				b.WriteString(bl[i])
			}
		}
		out[i] = b.String()
	}
	return out
}

func splitLines(s string) []string { return strings.Split(s, "\n") }

func joinLines(lines []string) string { return strings.Join(lines, "\n") }

// wrapText breaks s into lines of at most w cells.
func wrapText(s string, w int) []string {
	if w < 8 {
		return []string{s}
	}
	return strings.Split(ansi.Wrap(s, w, " ,/"), "\n")
}

// wrapStyled wraps s and renders each line with st.
func wrapStyled(st lipgloss.Style, s string, w int) []string {
	lines := wrapText(s, w)
	for i, l := range lines {
		lines[i] = st.Render(l)
	}
	return lines
}

// wrapPrefixed wraps s after prefix, continuing lines under it.
func wrapPrefixed(prefix, s string, w int) []string {
	lines := wrapText(s, w-ansi.StringWidth(prefix))
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return lines
}
