package tui

import (
	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/lipgloss"
)

// Styles are the looks of every view. Colours adapt to light and dark
// terminals; nothing relies on colour alone (the cursor is ▸, matches are *,
// the mark is m, the focused pane's title starts with ▸), so a terminal
// without colour (NO_COLOR, or a pipe) shows the same information.
type Styles struct {
	Header      lipgloss.Style
	HeaderName  lipgloss.Style
	Dim         lipgloss.Style
	Bold        lipgloss.Style
	Error       lipgloss.Style
	Status      lipgloss.Style
	PaneTitle   lipgloss.Style
	PaneTitleOn lipgloss.Style
	Separator   lipgloss.Style
	Row         lipgloss.Style
	// RowCursor is the selected row when its pane has focus, RowCursorOff
	// when it has not.
	RowCursor    lipgloss.Style
	RowCursorOff lipgloss.Style
	// RowMatch is a row that matches the filter; RowOther one that does not
	// while a filter is active.
	RowMatch lipgloss.Style
	RowOther lipgloss.Style
	Marker   lipgloss.Style
	Added    lipgloss.Style
	Removed  lipgloss.Style
	Changed  lipgloss.Style
	MenuOn   lipgloss.Style
	MenuOff  lipgloss.Style
	Help     help.Styles
}

// NewStyles returns the styles rendered by r (whose colour profile decides
// whether there is colour at all).
func NewStyles(r *lipgloss.Renderer) *Styles {
	accent := lipgloss.AdaptiveColor{Light: "#8A5300", Dark: "#FFB347"}
	dim := lipgloss.AdaptiveColor{Light: "#6C6C6C", Dark: "#8A8A8A"}
	faint := lipgloss.AdaptiveColor{Light: "#9A9A9A", Dark: "#5F5F5F"}
	red := lipgloss.AdaptiveColor{Light: "#B3261E", Dark: "#FF7B72"}
	green := lipgloss.AdaptiveColor{Light: "#1A7F37", Dark: "#7EE787"}
	blue := lipgloss.AdaptiveColor{Light: "#0550AE", Dark: "#79C0FF"}
	s := &Styles{
		Header:       r.NewStyle().Bold(true),
		HeaderName:   r.NewStyle().Bold(true).Foreground(accent),
		Dim:          r.NewStyle().Foreground(dim),
		Bold:         r.NewStyle().Bold(true),
		Error:        r.NewStyle().Foreground(red).Bold(true),
		Status:       r.NewStyle().Foreground(dim),
		PaneTitle:    r.NewStyle().Foreground(dim),
		PaneTitleOn:  r.NewStyle().Bold(true).Foreground(accent),
		Separator:    r.NewStyle().Foreground(faint),
		Row:          r.NewStyle(),
		RowCursor:    r.NewStyle().Reverse(true).Bold(true),
		RowCursorOff: r.NewStyle().Underline(true),
		RowMatch:     r.NewStyle().Foreground(accent).Bold(true),
		RowOther:     r.NewStyle().Foreground(dim),
		Marker:       r.NewStyle().Foreground(blue),
		Added:        r.NewStyle().Foreground(green),
		Removed:      r.NewStyle().Foreground(red),
		Changed:      r.NewStyle().Foreground(accent),
		MenuOn:       r.NewStyle().Reverse(true),
		MenuOff:      r.NewStyle().Foreground(faint),
	}
	keyStyle := r.NewStyle().Foreground(dim).Bold(true)
	descStyle := r.NewStyle().Foreground(dim)
	sepStyle := r.NewStyle().Foreground(faint)
	s.Help = help.Styles{
		Ellipsis: sepStyle, ShortKey: keyStyle, ShortDesc: descStyle, ShortSeparator: sepStyle,
		FullKey: keyStyle, FullDesc: descStyle, FullSeparator: sepStyle,
	}
	return s
}
