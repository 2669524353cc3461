package tui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/charmbracelet/bubbles/help"
	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"
	"github.com/charmbracelet/lipgloss"

	// Initialised before Bubble Tea, so its init asks the terminal nothing
	// (see its doc); the TUI asks once itself, with a short timeout.
	"github.com/ambr-dev/ambr/internal/termquery"
)

// Options configure the TUI.
type Options struct {
	// Home is the runtime home whose instances are listed; the time-travel
	// cache lives under it.
	Home string
	// Instance, if set, is an instance directory to open at once (else the
	// instances under Home are listed first).
	Instance string
	// App, if set, is the executable the state pane replays with instead
	// of the build the MANIFEST recorded.
	App string
	// Candidate, if set, is the build the "retro-test from here" action
	// tests (an executable or a Go package path).
	Candidate string
	// AppSource is what App was made from, as the user named it (a Go
	// package path, or the executable): the debug action rebuilds it with
	// debug information.
	AppSource string
	// Ambr is the ambr executable the actions run (default: this one).
	Ambr string
	// Input and Output default to the terminal (os.Stdin, os.Stdout).
	Input  io.Reader
	Output io.Writer
	// Renderer decides colours (default: one for Output, which honours
	// NO_COLOR and the terminal's profile).
	Renderer *lipgloss.Renderer
	// StateDelay is how long the cursor rests before the state pane
	// replays to it (default 150ms; negative: only on [ ] and enter).
	StateDelay time.Duration
	// FollowEvery is how often `f` looks for new records (default 500ms).
	FollowEvery time.Duration
	// RefreshEvery is how often the instances view reads the instances
	// again (default 2s; negative: only on r).
	RefreshEvery time.Duration
}

func (o *Options) defaults() {
	if o.Home == "" {
		o.Home = ".ambr"
	}
	if o.Output == nil {
		o.Output = os.Stdout
	}
	if o.Input == nil {
		o.Input = os.Stdin
	}
	if o.Renderer == nil {
		o.Renderer = lipgloss.NewRenderer(o.Output)
	}
	if o.StateDelay == 0 {
		o.StateDelay = 150 * time.Millisecond
	}
	if o.RefreshEvery == 0 {
		o.RefreshEvery = 2 * time.Second
	}
	if o.FollowEvery <= 0 {
		o.FollowEvery = 500 * time.Millisecond
	}
}

// common is what every view shares (soft-serve's common.Common): styles,
// keys, the terminal's size and the options.
type common struct {
	styles        *Styles
	keys          KeyMap
	width, height int
	opts          Options
	// tick is tea.Tick; benchmarks that run commands in line drop timers.
	tick func(time.Duration, func(time.Time) tea.Msg) tea.Cmd
	// closed is closed by Model.Close: waits (the instances' refresh) end.
	closed    chan struct{}
	closeOnce sync.Once
}

// bodyHeight is the lines between the header and the two footer lines.
func (c *common) bodyHeight() int { return max(1, c.height-3) }

// Model is the TUI's root model: it routes messages to the active view and
// draws the frame (header, body, status line, help).
type Model struct {
	c         *common
	instances *instancesModel
	browser   *browserModel
	help      help.Model
	showHelp  bool
	// retired are browsers left (esc) whose close command has not
	// reported yet: Close closes them if the program quit first.
	retired map[*browserModel]bool
}

// New returns the TUI's model; Run runs it in the terminal.
func New(opts Options) *Model {
	opts.defaults()
	c := &common{styles: NewStyles(opts.Renderer), keys: DefaultKeyMap(), width: 80, height: 24, opts: opts, tick: tea.Tick, closed: make(chan struct{})}
	h := help.New()
	h.Styles = c.styles.Help
	m := &Model{c: c, instances: newInstancesModel(c), help: h, retired: map[*browserModel]bool{}}
	if opts.Instance != "" {
		m.browser = newBrowserModel(c, opts.Instance)
	}
	return m
}

// Run runs the TUI until the user quits or ctx is done.
func Run(ctx context.Context, opts Options) error {
	opts.defaults()
	// Ask the terminal for its background before Bubble Tea reads the
	// input: adaptive colours need it. A terminal that does not answer
	// costs termquery.Timeout, and the colours for a dark background.
	if f, ok := opts.Output.(*os.File); ok {
		dark, known := termquery.Background(f, termquery.Timeout)
		opts.Renderer.SetHasDarkBackground(dark || !known)
	}
	m := New(opts)
	defer m.Close()
	p := tea.NewProgram(m, tea.WithContext(ctx), tea.WithInput(opts.Input), tea.WithOutput(opts.Output), tea.WithAltScreen())
	_, err := p.Run()
	if errors.Is(err, tea.ErrProgramKilled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// Close stops what the model started (the replaying app, the index), also
// for browsers left whose closing had not run yet.
func (m *Model) Close() {
	m.c.closeOnce.Do(func() { close(m.c.closed) })
	if m.browser != nil {
		m.browser.close()
		m.browser = nil
	}
	for b := range m.retired {
		b.close()
	}
	m.retired = nil
}

// Init starts with the instances, or with the instance asked for.
func (m *Model) Init() tea.Cmd {
	if m.browser != nil {
		return m.browser.init()
	}
	return m.instances.init()
}

// Update routes msg.
func (m *Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.c.width, m.c.height = msg.Width, msg.Height
		m.help.Width = msg.Width
		return m, nil
	case tea.KeyMsg:
		if msg.String() == "ctrl+c" {
			return m, tea.Quit
		}
		if msg.Type == tea.KeyRunes && len(msg.Runes) > 1 && !msg.Paste {
			// Keys that arrive together (typed fast, key repeat) come as
			// one message: "jjj" is three moves, "/abc" a prompt opened
			// then typed into. (Whole, "end" would even read as the End
			// key to the prompt.)
			var cmds []tea.Cmd
			for _, r := range msg.Runes {
				_, cmd := m.Update(tea.KeyMsg{Type: tea.KeyRunes, Runes: []rune{r}, Alt: msg.Alt})
				cmds = append(cmds, cmd)
			}
			return m, tea.Batch(cmds...)
		}
		if m.browser != nil && m.browser.capturesKeys() {
			return m, m.browser.update(msg)
		}
		k := m.c.keys
		switch {
		case key.Matches(msg, k.Quit):
			return m, tea.Quit
		case key.Matches(msg, k.Help):
			m.showHelp = !m.showHelp
			return m, nil
		case m.showHelp && key.Matches(msg, k.Back):
			m.showHelp = false
			return m, nil
		case m.showHelp:
			return m, nil // the keys under the help do nothing unseen
		}
	case instancesLoadedMsg:
		return m, m.instances.update(msg)
	case instancesTickMsg:
		m.instances.ticking = false
		if m.browser != nil {
			return m, nil // leaving the browser refreshes them
		}
		return m, m.instances.reload()
	case browserClosedMsg:
		delete(m.retired, msg.b)
		return m, nil
	}
	if m.browser != nil {
		cmd := m.browser.update(msg)
		if b := m.browser; b.leave {
			// Back to the instances, at once: keys typed ahead go there.
			m.browser = nil
			m.retired[b] = true
			return m, tea.Batch(cmd, func() tea.Msg { b.close(); return browserClosedMsg{b} }, m.instances.refresh())
		}
		return m, cmd
	}
	cmd := m.instances.update(msg)
	if dir := m.instances.openDir; dir != "" {
		m.instances.openDir = ""
		m.browser = newBrowserModel(m.c, dir)
		return m, tea.Batch(cmd, m.browser.init())
	}
	return m, cmd
}

// View draws the frame of the active view.
func (m *Model) View() string {
	w, h := m.c.width, m.c.height
	if w < 40 || h < 10 {
		return joinLines(wrapText(fmt.Sprintf("ambr tui needs a terminal of at least 40x10 (this one is %dx%d)", w, h), max(w, 8)))
	}
	var header, status string
	var body []string
	var keys help.KeyMap
	if m.browser != nil {
		header, status = m.browser.header(w), m.browser.status(w)
		keys = browserKeys{m.c.keys}
		if !m.showHelp {
			body = m.browser.body(w, m.c.bodyHeight())
		}
	} else {
		header, status = m.instances.header(w), m.instances.status()
		keys = instancesKeys{m.c.keys}
		if !m.showHelp {
			body = m.instances.body(w, m.c.bodyHeight())
		}
	}
	if m.showHelp {
		body = append([]string{m.c.styles.Bold.Render("keys") + m.c.styles.Dim.Render(" (? or esc closes)"), ""},
			m.fullHelp(keys.FullHelp(), w)...)
	}
	lines := make([]string, 0, h)
	lines = append(lines, fit(header, w))
	for i := 0; i < m.c.bodyHeight(); i++ {
		if i < len(body) {
			lines = append(lines, fit(body[i], w))
		} else {
			lines = append(lines, fit("", w))
		}
	}
	lines = append(lines, fit(status, w), fit(m.help.ShortHelpView(keys.ShortHelp()), w))
	return joinLines(lines)
}

// fullHelp lays the groups of keys out in columns, as many side by side as
// the width allows, the rest below.
func (m *Model) fullHelp(groups [][]key.Binding, w int) []string {
	h := m.help
	h.Width = 0 // measure, do not cut
	var out []string
	for len(groups) > 0 {
		n := len(groups)
		for n > 1 && lipgloss.Width(h.FullHelpView(groups[:n])) > w {
			n--
		}
		if len(out) > 0 {
			out = append(out, "")
		}
		out = append(out, splitLines(h.FullHelpView(groups[:n]))...)
		groups = groups[n:]
	}
	return out
}
