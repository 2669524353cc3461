package tui

import (
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/timetravel"
)

// The state pane's operations: stepping through time, marks and diffs,
// and the replays behind them.

// StepBack and StepForward move the time-travel cursor one record and
// replay at once (no waiting for the cursor to rest).
func (b *browserModel) StepBack() tea.Cmd    { return b.step(-1) }
func (b *browserModel) StepForward() tea.Cmd { return b.step(1) }

func (b *browserModel) step(d int64) tea.Cmd {
	cmd := b.move(int(d)) // with only the matches shown: to the next match
	b.stateGen++          // no need for the pending timer
	return tea.Batch(cmd, b.requestState(b.cursor))
}

// Mark marks the selected record for diffs.
func (b *browserModel) Mark() tea.Cmd {
	if b.last == 0 {
		return nil
	}
	b.mark, b.markState, b.diff = b.cursor, nil, nil
	if r := b.results[b.cursor]; r != nil {
		b.markState = appState(r.rawState())
	}
	b.setStatus("marked #%d (d: diff to the cursor)", b.mark)
	return b.syncDiff()
}

// Diff shows (or hides) the changes from the mark to the cursor.
func (b *browserModel) Diff() tea.Cmd {
	if b.mark == 0 {
		b.setError("no mark: press m on a record first, then move and press d")
		return nil
	}
	b.diffOn = !b.diffOn
	if !b.diffOn {
		b.setStatus("diff off")
		return nil
	}
	b.stateOff = 0
	return b.syncDiff()
}

// syncDiff gets the diff the state pane should show, if it can.
func (b *browserModel) syncDiff() tea.Cmd {
	if !b.diffOn || b.mark == 0 || (b.diff != nil && b.diff.mark == b.mark && b.diff.seq == b.cursor) {
		return nil
	}
	r := b.results[b.cursor]
	if r == nil {
		return nil // the state comes first; its arrival calls syncDiff again
	}
	if b.markState == nil {
		return b.requestState(b.cursor) // the worker replays the mark too
	}
	id, mark, seq, a, c := b.id, b.mark, b.cursor, b.markState, appState(r.rawState())
	return func() tea.Msg {
		return diffComputedMsg{id: id, diff: &diffResult{mark: mark, seq: seq, changes: timetravel.Diff(a, c)}}
	}
}

// rawState is the state as a diff compares it.
func (r *stateResult) rawState() []byte {
	if r.State != nil {
		return r.State
	}
	return r.Raw
}

// scheduleState replays to the cursor once it has rested StateDelay.
func (b *browserModel) scheduleState() tea.Cmd {
	if !b.opened || b.last == 0 || b.noState != nil || b.results[b.cursor] != nil || b.c.opts.StateDelay < 0 {
		return nil
	}
	b.stateGen++
	id, gen := b.id, b.stateGen
	return b.c.tick(b.c.opts.StateDelay, func(time.Time) tea.Msg { return stateDueMsg{id: id, gen: gen} })
}

// requestState asks the worker for the state after seq; while it is busy,
// only the newest request waits.
func (b *browserModel) requestState(seq int64) tea.Cmd {
	if !b.opened || b.last == 0 || b.noState != nil {
		return nil
	}
	if r := b.results[seq]; r != nil && !(b.diffOn && b.markState == nil && b.mark != 0) {
		return b.syncDiff()
	}
	b.stateWant = seq
	if b.stateBusy {
		return nil
	}
	return b.dispatchState()
}

func (b *browserModel) dispatchState() tea.Cmd {
	if b.stateWant < 0 {
		return nil
	}
	req := stateRequest{seq: b.stateWant}
	b.stateWant = -1
	if b.diffOn && b.mark != 0 {
		req.mark, req.markState = b.mark, b.markState
	}
	b.stateBusy, b.stateFor = true, req.seq
	id, w := b.id, b.worker
	return tea.Batch(func() tea.Msg {
		res, err := w.compute(req)
		return stateComputedMsg{id: id, req: req, res: res, err: err}
	}, b.busyTick())
}

func (b *browserModel) keepResult(r *stateResult) {
	if _, ok := b.results[r.Seq]; !ok {
		b.resultOrder = append(b.resultOrder, r.Seq)
	}
	b.results[r.Seq] = r
	for len(b.resultOrder) > maxResults {
		delete(b.results, b.resultOrder[0])
		b.resultOrder = b.resultOrder[1:]
	}
}

// ToggleFold folds or unfolds long arrays and objects in the state pane.
func (b *browserModel) ToggleFold() {
	b.unfolded = !b.unfolded
	if b.unfolded {
		b.setStatus("state unfolded: every entry shown (z folds)")
	} else {
		b.setStatus("state folded: long arrays and objects cut after %d entries (z unfolds)", foldAfter)
	}
}
