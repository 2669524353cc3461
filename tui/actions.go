package tui

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"

	tea "github.com/charmbracelet/bubbletea"
)

// The actions menu (enter): the ambr commands it runs with the terminal
// handed over.

// menuItem is an action on the selected record.
type menuItem struct {
	label, hint string
	run         func() tea.Cmd // nil: not available (yet)
}

func (b *browserModel) menu() []menuItem {
	items := []menuItem{
		{label: "replay to here: state after #" + strconv.FormatInt(b.cursor, 10), run: func() tea.Cmd {
			b.stateGen++
			return b.requestState(b.cursor)
		}},
		{label: "mark this record (m)", run: b.Mark},
	}
	if b.mark != 0 {
		items = append(items, menuItem{label: fmt.Sprintf("diff #%d → #%d (d)", b.mark, b.cursor), run: b.Diff})
	}
	seq := strconv.FormatInt(b.cursor, 10)
	retro := menuItem{label: "retro-test a build up to here", hint: "needs ambr tui --candidate APP"}
	if c := b.c.opts.Candidate; c != "" {
		retro.label = "retro-test " + c + " up to here"
		retro.run = func() tea.Cmd {
			return b.runAmbr("retro-test", "retro-test", b.dir, "--candidate", c, "--until", seq)
		}
	}
	items = append(items, retro,
		menuItem{label: "debug this record's handler (Delve)", run: func() tea.Cmd {
			return b.runAmbr("replay --debug", b.debugArgs(seq)...)
		}},
	)
	return items
}

// debugArgs is the ambr command line of the debug action at record seq.
func (b *browserModel) debugArgs(seq string) []string {
	args := []string{"replay", b.dir, "--until", seq, "--debug", "--wait", "--no-cache"}
	// The build ambr tui --app named: Delve needs its source (a package
	// path) to build it with debug information.
	if src := b.c.opts.AppSource; src != "" {
		args = append(args, "--app", src)
	}
	return args
}

// actionDoneMsg says an ambr command run from the menu has returned.
type actionDoneMsg struct {
	id   int
	what string
	err  error
}

// ambrCommand is the command line an action runs: ambr itself, in a shell
// that waits for enter afterwards so its output can be read. The shell
// traps (but does not ignore) Ctrl-C, so Ctrl-C ends ambr and returns here.
func ambrCommand(ambr, home string, args ...string) *exec.Cmd {
	// Clear the screen first: the output of the previous action is not
	// this one's.
	script := `trap : INT; printf '\033[H\033[2J'; "$0" "$@"; printf '\n(enter returns to ambr tui) '; read _`
	return exec.Command("sh", append([]string{"-c", script, ambr, "--home", home}, args...)...)
}

// runAmbr hands the terminal to an ambr command and comes back.
func (b *browserModel) runAmbr(what string, args ...string) tea.Cmd {
	ambr := b.c.opts.Ambr
	if ambr == "" {
		if self, err := os.Executable(); err == nil {
			ambr = self
		}
	}
	id := b.id
	return tea.ExecProcess(ambrCommand(ambr, b.c.opts.Home, args...), func(err error) tea.Msg {
		return actionDoneMsg{id: id, what: what, err: err}
	})
}

// Actions opens the menu of actions on the selected record.
func (b *browserModel) Actions() {
	if b.last > 0 {
		b.menuOpen, b.menuIdx = true, 0
	}
}
