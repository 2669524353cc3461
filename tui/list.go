package tui

import (
	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/timetravel"
)

// The record list: layout, scrolling, the cursor, and the window of index
// entries around the visible rows.

// geometry is where the panes go: the list left of (wide terminals) or
// above (narrow ones) the detail and state panes. Heights include each
// pane's title line.
type geometry struct {
	wide                             bool
	listW, listH                     int
	detailW, detailH, stateW, stateH int
}

func (b *browserModel) geometry(w, h int) geometry {
	// Side by side only when the list gets the width its columns need and
	// the panes right of it stay readable; else stacked.
	need := b.rowWidth(listMethodW)
	if listW := max(w*9/20, need); w >= 120 && w-listW-1 >= minSidePaneW {
		right := w - listW - 1
		return geometry{wide: true, listW: listW, listH: h, detailW: right, detailH: h / 2, stateW: right, stateH: h - h/2}
	}
	listH := max(3, h/2+1) // the title and column headings, then rows
	bottom := h - listH
	detailW := (w - 1) / 2
	return geometry{listW: w, listH: listH, detailW: detailW, detailH: bottom, stateW: w - detailW - 1, stateH: bottom}
}

// Widths the side-by-side layout keeps: the list's method column, and the
// detail and state panes right of the list.
const (
	listMethodW  = 16
	minSidePaneW = 50
)

// listRows is how many lines of rows the list shows (below its title and
// column headings).
func (b *browserModel) listRows() int {
	return max(1, b.geometry(b.c.width, b.c.bodyHeight()).listH-2)
}

// listLine is one line of the list: a record or a checkpoint marker.
type listLine struct {
	seq        int64
	checkpoint uint64
	marker     bool
}

// lines lays out the list from top: records, with a marker line above the
// first record after each checkpoint.
func (b *browserModel) lines(rows int) []listLine {
	out := make([]listLine, 0, rows)
	if b.onlyMatches() {
		for i := b.matchIndex(b.top); i < len(b.matches) && len(out) < rows; i++ {
			out = append(out, listLine{seq: b.matches[i]})
		}
		return out
	}
	for seq := b.top; seq >= b.first && seq <= b.last && len(out) < rows; seq++ {
		for _, k := range b.markers[seq] {
			out = append(out, listLine{seq: seq, checkpoint: k, marker: true})
		}
		out = append(out, listLine{seq: seq})
	}
	if len(out) > rows {
		out = out[:rows]
	}
	return out
}

func (b *browserModel) visible(seq int64, rows int) bool {
	for _, l := range b.lines(rows) {
		if !l.marker && l.seq == seq {
			return true
		}
	}
	return false
}

// ensureVisible scrolls so that the cursor's row is shown.
func (b *browserModel) ensureVisible() {
	if b.onlyMatches() {
		rows, c, t := b.listRows(), b.matchIndex(b.cursor), b.matchIndex(b.top)
		switch {
		case c < t:
			t = c
		case c >= t+rows:
			t = c - rows + 1
		}
		b.top = b.matches[max(0, min(t, len(b.matches)-1))]
		return
	}
	rows := int64(b.listRows())
	if b.cursor < b.top {
		b.top = b.cursor
		return
	}
	if b.cursor-b.top >= 2*rows {
		b.top = b.cursor - rows + 1
	}
	for b.top < b.cursor && !b.visible(b.cursor, int(rows)) {
		b.top++
	}
}

// maxTop is the top that shows the last record on the last row.
func (b *browserModel) maxTop() int64 {
	if b.onlyMatches() {
		return b.matches[b.maxTopIndex()]
	}
	return max(b.first, b.last-int64(b.listRows())+1)
}

// moveTo selects record seq and does what follows from it: rows, detail
// and state for it.
func (b *browserModel) moveTo(seq int64) tea.Cmd {
	if b.last == 0 {
		return nil
	}
	seq = max(b.first, min(b.last, seq))
	if b.onlyMatches() {
		seq = b.snapToMatch(seq)
	}
	if seq != b.cursor {
		b.detailOff, b.stateOff = 0, 0
	}
	b.cursor = seq
	b.ensureVisible()
	return tea.Batch(b.ensureWindow(), b.loadMatchRows(), b.loadDetail(), b.scheduleState(), b.syncDiff())
}

// scroll moves cursor and view together by n records (ctrl+d, pgdn).
func (b *browserModel) scroll(n int64) tea.Cmd {
	if b.onlyMatches() {
		return b.moveMatches(int(n), true)
	}
	b.top = max(b.first, min(b.maxTop(), b.top+n))
	return b.moveTo(b.cursor + n)
}

// The list's operations, which keys map to.

func (b *browserModel) Down() tea.Cmd         { return b.move(1) }
func (b *browserModel) Up() tea.Cmd           { return b.move(-1) }
func (b *browserModel) GotoTop() tea.Cmd      { b.top = b.first; return b.moveTo(b.first) }
func (b *browserModel) HalfPageDown() tea.Cmd { return b.scroll(int64(max(1, b.listRows()/2))) }
func (b *browserModel) HalfPageUp() tea.Cmd   { return b.scroll(-int64(max(1, b.listRows()/2))) }
func (b *browserModel) PageDown() tea.Cmd     { return b.scroll(int64(b.listRows())) }
func (b *browserModel) PageUp() tea.Cmd       { return b.scroll(-int64(b.listRows())) }

// move moves the cursor n rows: records, or matches when only they show.
func (b *browserModel) move(n int) tea.Cmd {
	if b.onlyMatches() {
		return b.moveMatches(n, false)
	}
	return b.moveTo(b.cursor + int64(n))
}

func (b *browserModel) GotoBottom() tea.Cmd {
	b.top = b.maxTop()
	return b.moveTo(b.last)
}

// ensureWindow loads the rows around the visible ones when they are not
// at hand (or soon will not be).
func (b *browserModel) ensureWindow() tea.Cmd {
	if !b.opened || b.last == 0 {
		return nil
	}
	rows := int64(b.listRows())
	visFrom, visTo := b.top, min(b.last, b.top+rows-1)
	winTo := b.winFrom + int64(len(b.win)) - 1
	if len(b.win) > 0 && b.winFrom <= visFrom && winTo >= visTo {
		nearTop := b.winFrom > b.first && visFrom-b.winFrom < rows
		nearEnd := winTo < b.last && winTo-visTo < rows
		if !nearTop && !nearEnd {
			return nil
		}
	}
	if b.loading && b.loadFrom <= visFrom && b.loadTo >= visTo {
		return nil
	}
	from, to := max(b.first, visFrom-2*rows), min(b.last, visTo+2*rows)
	return b.load(from, to)
}

// load reads the rows of records from..to.
func (b *browserModel) load(from, to int64) tea.Cmd {
	b.loadReq++
	b.loading, b.loadFrom, b.loadTo = true, from, to
	id, req, idx, f, gen := b.id, b.loadReq, b.idx, b.filter, b.filterGen
	return func() tea.Msg {
		msg := recordsLoadedMsg{id: id, req: req, from: from, to: to, filterGen: gen}
		msg.entries, msg.err = idx.page(from, to)
		if msg.err == nil && f != nil {
			msg.matches, msg.err = f.match(idx, msg.entries)
		}
		return msg
	}
}

// entry returns the index entry of seq if its page is loaded.
func (b *browserModel) entry(seq int64) (e timetravel.IndexEntry, match, ok bool) {
	i := seq - b.winFrom
	if i < 0 || i >= int64(len(b.win)) {
		e, ok = b.matchRows[seq]
		return e, ok, ok
	}
	if b.winMatch != nil {
		match = b.winMatch[i]
	}
	return b.win[i], match, true
}
