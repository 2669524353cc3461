package tui

import (
	"context"
	"errors"
	"sort"
	"sync/atomic"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/timetravel"
)

// With a filter set, the list shows only the matching records (as k9s and
// lazygit do) once they are counted, and the status says "match 3/100";
// c switches between that and all records with the matches flagged. The
// matches are counted in the background, over the whole log.

// matchAll returns the records of first..last that match f, in order.
// scanned counts the records looked at, for progress.
func (l *logIndex) matchAll(ctx context.Context, f *recordFilter, first, last int64, scanned *atomic.Int64) ([]int64, error) {
	var out []int64
	for s := first; s <= last; s += searchChunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		entries, err := l.page(s, min(s+searchChunk-1, last))
		if err != nil {
			return nil, err
		}
		m, err := f.match(l, entries)
		if err != nil {
			return nil, err
		}
		for k, ok := range m {
			if ok {
				out = append(out, entries[k].Seq)
			}
		}
		scanned.Add(int64(len(entries)))
	}
	return out, nil
}

// matchesCountedMsg carries every match of the filter of generation gen.
type matchesCountedMsg struct {
	id, gen int
	seqs    []int64
	err     error
}

// matchRowsLoadedMsg carries index entries of matches outside the window.
type matchRowsLoadedMsg struct {
	id, gen int
	entries []timetravel.IndexEntry
	err     error
}

// countMatches starts counting the current filter's matches.
func (b *browserModel) countMatches() tea.Cmd {
	if b.countCancel != nil {
		b.countCancel()
	}
	b.matches, b.matchRows = nil, map[int64]timetravel.IndexEntry{}
	if b.filter == nil || !b.opened || b.last == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.countCancel = cancel
	b.counting = true
	b.counted.Store(0)
	id, gen, idx, f, first, last, counted := b.id, b.filterGen, b.idx, b.filter, b.first, b.last, b.counted
	return tea.Batch(func() tea.Msg {
		seqs, err := idx.matchAll(ctx, f, first, last, counted)
		return matchesCountedMsg{id: id, gen: gen, seqs: seqs, err: err}
	}, b.busyTick())
}

// onlyMatches says the list shows only the matching records.
func (b *browserModel) onlyMatches() bool {
	return b.filter != nil && b.matches != nil && len(b.matches) > 0 && !b.showContext
}

// matchIndex is the position in matches of the first match at or after
// seq (len(matches) if none).
func (b *browserModel) matchIndex(seq int64) int {
	return sort.Search(len(b.matches), func(i int) bool { return b.matches[i] >= seq })
}

// rank is seq's position among the matches, from 1 (0: not a match).
func (b *browserModel) rank(seq int64) int {
	if i := b.matchIndex(seq); i < len(b.matches) && b.matches[i] == seq {
		return i + 1
	}
	return 0
}

// snapToMatch is the match nearest seq: the first at or after it, else
// the last.
func (b *browserModel) snapToMatch(seq int64) int64 {
	i := b.matchIndex(seq)
	if i == len(b.matches) {
		i--
	}
	return b.matches[i]
}

// moveMatches moves the cursor n matches (and, with view, the top too).
func (b *browserModel) moveMatches(n int, view bool) tea.Cmd {
	i := max(0, min(len(b.matches)-1, b.matchIndex(b.cursor)+n))
	if view {
		t := max(0, min(b.maxTopIndex(), b.matchIndex(b.top)+n))
		b.top = b.matches[t]
	}
	return b.moveTo(b.matches[i])
}

// maxTopIndex is the top match that shows the last match on the last row.
func (b *browserModel) maxTopIndex() int { return max(0, len(b.matches)-b.listRows()) }

// ToggleContext switches between only the matches and all records.
func (b *browserModel) ToggleContext() tea.Cmd {
	if b.filter == nil {
		b.setError("no filter: / sets one; c then shows all records or only the matches")
		return nil
	}
	b.showContext = !b.showContext
	if b.showContext {
		b.setStatus("all records, matches flagged * (c: only the matches)")
	} else {
		b.setStatus("only the matching records (c: all records)")
	}
	if b.onlyMatches() {
		b.cursor = b.snapToMatch(b.cursor)
	}
	b.top = b.cursor
	return b.moveTo(b.cursor)
}

// loadMatchRows reads the index entries of the visible matches that the
// window does not hold.
func (b *browserModel) loadMatchRows() tea.Cmd {
	if !b.onlyMatches() || b.matchRowsBusy {
		return nil
	}
	var want []int64
	for _, l := range b.lines(b.listRows()) {
		if _, _, ok := b.entry(l.seq); !ok {
			want = append(want, l.seq)
		}
	}
	if len(want) == 0 {
		return nil
	}
	b.matchRowsBusy = true
	id, gen, idx := b.id, b.filterGen, b.idx
	return func() tea.Msg {
		msg := matchRowsLoadedMsg{id: id, gen: gen}
		for _, seq := range want {
			es, err := idx.page(seq, seq)
			if err != nil {
				msg.err = err
				break
			}
			msg.entries = append(msg.entries, es...)
		}
		return msg
	}
}

// updateMatches handles the messages of this file; handled says it did.
func (b *browserModel) updateMatches(msg tea.Msg) (cmd tea.Cmd, handled bool) {
	switch msg := msg.(type) {
	case matchesCountedMsg:
		if msg.id != b.id || msg.gen != b.filterGen {
			return nil, true
		}
		b.counting = false
		switch {
		case errors.Is(msg.err, context.Canceled):
			return nil, true
		case msg.err != nil:
			b.setError("count the matches: %v", msg.err)
			return nil, true
		}
		b.matches = msg.seqs
		if msg.seqs == nil {
			b.matches = []int64{}
		}
		if !b.onlyMatches() {
			return nil, true
		}
		b.cursor = b.snapToMatch(b.cursor)
		b.top = b.matches[max(0, min(b.maxTopIndex(), b.matchIndex(b.cursor)-b.listRows()/2))]
		return b.moveTo(b.cursor), true
	case matchRowsLoadedMsg:
		if msg.id != b.id {
			return nil, true
		}
		b.matchRowsBusy = false
		if msg.gen != b.filterGen {
			return b.loadMatchRows(), true
		}
		if msg.err != nil {
			b.setError("read the index: %v", msg.err)
			return nil, true
		}
		for _, e := range msg.entries {
			b.matchRows[e.Seq] = e
		}
		return tea.Batch(b.loadMatchRows(), b.loadDetail()), true
	}
	return nil, false
}
