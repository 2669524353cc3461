package tui

import (
	"fmt"
	"strings"
	"time"

	"github.com/charmbracelet/bubbles/key"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/engine/supervise"
)

// instanceInfo is one row of the instances view (what `ambr ls` says).
type instanceInfo = supervise.InstanceInfo

// listInstances describes the instances under home, by name.
func listInstances(home string) ([]instanceInfo, error) { return supervise.ListInstances(home) }

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// instancesModel is the first view: the instances under the home.
type instancesModel struct {
	c       *common
	items   []instanceInfo
	loaded  bool
	loading bool
	err     error
	cursor  int
	openDir string
	ticking bool // an instancesTickMsg is on its way
}

func newInstancesModel(c *common) *instancesModel { return &instancesModel{c: c} }

func (m *instancesModel) init() tea.Cmd { return m.refresh() }

func (m *instancesModel) refresh() tea.Cmd {
	m.loading = true
	return m.reload()
}

// tick schedules the next look at the instances (states, pids and last
// records change while they run), unless one is scheduled already.
func (m *instancesModel) tick() tea.Cmd {
	if m.ticking || m.c.opts.RefreshEvery < 0 {
		return nil
	}
	m.ticking = true
	// Not tea.Tick: its timer would outlive a closed TUI by up to the
	// whole interval.
	every, closed := m.c.opts.RefreshEvery, m.c.closed
	return func() tea.Msg {
		t := time.NewTimer(every)
		defer t.Stop()
		select {
		case <-t.C:
			return instancesTickMsg{}
		case <-closed:
			return nil
		}
	}
}

// reload reads the instances again, quietly (no "refreshing…").
func (m *instancesModel) reload() tea.Cmd {
	home := m.c.opts.Home
	return func() tea.Msg {
		items, err := listInstances(home)
		return instancesLoadedMsg{items: items, err: err}
	}
}

func (m *instancesModel) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case instancesLoadedMsg:
		m.items, m.err, m.loaded, m.loading = msg.items, msg.err, true, false
		m.cursor = min(m.cursor, max(0, len(m.items)-1))
		return m.tick()
	case tea.KeyMsg:
		k := m.c.keys
		switch {
		case key.Matches(msg, k.Down):
			m.move(1)
		case key.Matches(msg, k.Up):
			m.move(-1)
		case key.Matches(msg, k.Top):
			m.cursor = 0
		case key.Matches(msg, k.Bottom):
			m.cursor = max(0, len(m.items)-1)
		case key.Matches(msg, k.HalfPageDown, k.PageDown):
			m.move(m.c.bodyHeight() / 2)
		case key.Matches(msg, k.HalfPageUp, k.PageUp):
			m.move(-m.c.bodyHeight() / 2)
		case key.Matches(msg, k.Refresh):
			return m.refresh()
		case key.Matches(msg, k.Enter):
			return m.open()
		}
	}
	return nil
}

func (m *instancesModel) move(n int) {
	m.cursor = max(0, min(len(m.items)-1, m.cursor+n))
}

// open asks for the browser on the selected instance (the root acts on
// openDir).
func (m *instancesModel) open() tea.Cmd {
	if m.cursor < len(m.items) {
		m.openDir = m.items[m.cursor].Dir
	}
	return nil
}

func (m *instancesModel) header(w int) string {
	s := m.c.styles
	return s.HeaderName.Render("ambr") + s.Header.Render(" instances") + s.Dim.Render(" under "+m.c.opts.Home)
}

func (m *instancesModel) status() string {
	switch {
	case m.err != nil:
		return m.c.styles.Error.Render(m.err.Error())
	case !m.loaded:
		return "reading the instances…"
	case len(m.items) == 0:
		return fmt.Sprintf("no instances under %s (start one: ambr run ./samples/accumulator, or ambr demo)", m.c.opts.Home)
	case m.loading:
		return "refreshing…"
	}
	return fmt.Sprintf("%d instances · enter browses the selected one's log", len(m.items))
}

func (m *instancesModel) body(w, h int) []string {
	s := m.c.styles
	cols := []string{"NAME", "STATE", "VERSION", "LAST SEQ", "LOG", "CHECKPOINTS", "APP"}
	rows := [][]string{}
	for _, v := range m.items {
		if v.Error != "" {
			rows = append(rows, []string{v.Name, "damaged", "-", "-", "-", "-", v.Error})
			continue
		}
		state := "stopped"
		if v.Running {
			state = "running" + replicaRoles(v.Replicas)
		}
		ck := fmt.Sprintf("%d", v.Checkpoints)
		if v.Checkpoints > 0 {
			ck += fmt.Sprintf(" (newest %d)", v.Newest)
		}
		rows = append(rows, []string{v.Name, state, fmt.Sprint(v.Version), fmt.Sprint(v.LastSeq), byteSize(v.LogBytes), ck, v.App})
	}
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = len(c)
	}
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(r []string) string {
		var b strings.Builder
		for i, c := range r {
			if i > 0 {
				b.WriteString("  ")
			}
			if i == 2 || i == 3 || i == 4 {
				b.WriteString(strings.Repeat(" ", widths[i]-len([]rune(c))) + c)
			} else if i < len(r)-1 {
				b.WriteString(c + strings.Repeat(" ", widths[i]-len([]rune(c))))
			} else {
				b.WriteString(c)
			}
		}
		return b.String()
	}
	out := []string{s.Dim.Render(fit("   "+line(cols), w))}
	// Scroll so the cursor is visible.
	first := max(0, m.cursor-(h-2))
	for i := first; i < len(rows) && len(out) < h; i++ {
		text := fit(" "+gutter(i == m.cursor)+" "+line(rows[i]), w)
		switch {
		case i == m.cursor:
			out = append(out, s.RowCursor.Render(text))
		case strings.HasPrefix(rows[i][1], "running"):
			out = append(out, s.Bold.Render(text))
		default:
			out = append(out, s.Row.Render(text))
		}
	}
	return out
}

func gutter(on bool) string {
	if on {
		return "▸"
	}
	return " "
}

// replicaRoles says which replicas run in which role ("" without
// replicas): " · primary 1, standbys 0, checkpointer 2".
func replicaRoles(rs []supervise.ReplicaStatus) string {
	if len(rs) == 0 {
		return ""
	}
	var parts []string
	for _, role := range []string{"primary", "standby", "checkpointer", "waiting checkpointer"} {
		var ns []string
		for _, r := range rs {
			if r.Role == role {
				ns = append(ns, fmt.Sprint(r.Replica))
			}
		}
		switch {
		case len(ns) == 0:
		case len(ns) > 1 && role == "standby":
			parts = append(parts, "standbys "+strings.Join(ns, ", "))
		default:
			parts = append(parts, role+" "+strings.Join(ns, ", "))
		}
	}
	return " · " + strings.Join(parts, "; ")
}
