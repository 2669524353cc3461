package tui

import "github.com/charmbracelet/bubbles/key"

// KeyMap is every key the TUI knows, with its help text. Views pick the
// bindings that mean something to them (see instancesKeys and browserKeys,
// the help.KeyMaps behind `?`).
type KeyMap struct {
	Up, Down, Top, Bottom        key.Binding
	HalfPageDown, HalfPageUp     key.Binding
	PageDown, PageUp             key.Binding
	Enter, Back, NextPane        key.Binding
	Help, Quit, Refresh          key.Binding
	StepBack, StepForward        key.Binding
	Mark, Diff                   key.Binding
	Filter, NextMatch, PrevMatch key.Binding
	Jump, Follow, Fold, Context  key.Binding
}

// DefaultKeyMap returns the keys people already know from less, vim and
// other Bubble Tea programs.
func DefaultKeyMap() KeyMap {
	return KeyMap{
		Up:           key.NewBinding(key.WithKeys("k", "up"), key.WithHelp("k/↑", "up")),
		Down:         key.NewBinding(key.WithKeys("j", "down"), key.WithHelp("j/↓", "down")),
		Top:          key.NewBinding(key.WithKeys("g", "home"), key.WithHelp("g", "first")),
		Bottom:       key.NewBinding(key.WithKeys("G", "end"), key.WithHelp("G", "last")),
		HalfPageDown: key.NewBinding(key.WithKeys("ctrl+d"), key.WithHelp("ctrl+d", "half page down")),
		HalfPageUp:   key.NewBinding(key.WithKeys("ctrl+u"), key.WithHelp("ctrl+u", "half page up")),
		PageDown:     key.NewBinding(key.WithKeys("pgdown", "ctrl+f"), key.WithHelp("pgdn", "page down")),
		PageUp:       key.NewBinding(key.WithKeys("pgup", "ctrl+b"), key.WithHelp("pgup", "page up")),
		Enter:        key.NewBinding(key.WithKeys("enter"), key.WithHelp("enter", "open")),
		Back:         key.NewBinding(key.WithKeys("esc"), key.WithHelp("esc", "back")),
		NextPane:     key.NewBinding(key.WithKeys("tab", "shift+tab"), key.WithHelp("tab", "next pane")),
		Help:         key.NewBinding(key.WithKeys("?"), key.WithHelp("?", "help")),
		Quit:         key.NewBinding(key.WithKeys("q", "ctrl+c"), key.WithHelp("q", "quit")),
		Refresh:      key.NewBinding(key.WithKeys("r"), key.WithHelp("r", "refresh")),
		StepBack:     key.NewBinding(key.WithKeys("["), key.WithHelp("[", "step back")),
		StepForward:  key.NewBinding(key.WithKeys("]"), key.WithHelp("]", "step forward")),
		Mark:         key.NewBinding(key.WithKeys("m"), key.WithHelp("m", "mark")),
		Diff:         key.NewBinding(key.WithKeys("d"), key.WithHelp("d", "diff mark→here")),
		Filter:       key.NewBinding(key.WithKeys("/"), key.WithHelp("/", "filter")),
		NextMatch:    key.NewBinding(key.WithKeys("n"), key.WithHelp("n", "next match")),
		PrevMatch:    key.NewBinding(key.WithKeys("N"), key.WithHelp("N", "prev match")),
		Jump:         key.NewBinding(key.WithKeys(":"), key.WithHelp(":", "jump to point")),
		Follow:       key.NewBinding(key.WithKeys("f"), key.WithHelp("f", "follow")),
		Fold:         key.NewBinding(key.WithKeys("z"), key.WithHelp("z", "fold/unfold state")),
		Context:      key.NewBinding(key.WithKeys("c"), key.WithHelp("c", "all records / only matches")),
	}
}

// instancesKeys is the help of the instances view.
type instancesKeys struct{ k KeyMap }

func (h instancesKeys) ShortHelp() []key.Binding {
	open := h.k.Enter
	open.SetHelp("enter", "open")
	return []key.Binding{h.k.Down, h.k.Up, open, h.k.Refresh, h.k.Help, h.k.Quit}
}

func (h instancesKeys) FullHelp() [][]key.Binding {
	open := h.k.Enter
	open.SetHelp("enter", "browse its log")
	return [][]key.Binding{
		{h.k.Down, h.k.Up, h.k.Top, h.k.Bottom},
		{open, h.k.Refresh},
		{h.k.Help, h.k.Quit},
	}
}

// browserKeys is the help of the log browser.
type browserKeys struct{ k KeyMap }

func (h browserKeys) ShortHelp() []key.Binding {
	actions := h.k.Enter
	actions.SetHelp("enter", "actions")
	return []key.Binding{h.k.StepBack, h.k.StepForward, h.k.Filter, h.k.Jump, h.k.NextPane, actions, h.k.Back, h.k.Help, h.k.Quit}
}

func (h browserKeys) FullHelp() [][]key.Binding {
	actions := h.k.Enter
	actions.SetHelp("enter", "actions on record")
	back := h.k.Back
	back.SetHelp("esc", "clear filter / back")
	return [][]key.Binding{
		{h.k.Down, h.k.Up, h.k.Top, h.k.Bottom, h.k.HalfPageDown, h.k.HalfPageUp, h.k.PageDown, h.k.PageUp},
		{h.k.StepBack, h.k.StepForward, h.k.Mark, h.k.Diff, h.k.Jump, h.k.Fold},
		{h.k.Filter, h.k.NextMatch, h.k.PrevMatch, h.k.Context, h.k.Follow, h.k.Refresh},
		{actions, h.k.NextPane, back, h.k.Help, h.k.Quit},
	}
}
