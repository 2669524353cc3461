package tui

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

// pane is a part of the browser that can have focus.
type pane int

const (
	paneList pane = iota
	paneDetail
	paneState
	paneCount
)

// promptKind is what the status line is asking for.
type promptKind int

const (
	promptNone promptKind = iota
	promptFilter
	promptJump
)

// browserIDs numbers browsers, so that answers meant for a closed one are
// dropped.
var browserIDs atomic.Int64

// maxResults bounds the states kept for records already visited.
const maxResults = 64

// browserModel is the log browser of one instance: the list of records
// (lazily paged from the index), the selected record decoded, and the state
// after it.
type browserModel struct {
	c   *common
	id  int
	dir string

	in      *layout.Instance
	idx     *logIndex
	worker  *stateWorker
	own     *owned
	opened  bool
	openErr error
	indexed *atomic.Int64 // records indexed so far while opening
	running bool

	first, last int64
	markers     map[int64][]uint64

	// The list: cursor is the selected record, top the first one shown.
	// win holds the index entries of records winFrom.. (a few pages around
	// the visible ones); winMatch says which match the filter.
	cursor, top      int64
	win              []timetravel.IndexEntry
	winMatch         []bool
	winFrom          int64
	peerW            int // width of the peer column: the longest peer seen
	loadReq          int
	loading          bool
	loadFrom, loadTo int64

	focus pane

	detail     *logview.RecordView
	detailErr  error
	detailSeq  int64 // the record detail (or detailErr) is about
	detailWant int64 // the record being read
	detailOff  int
	stateOff   int

	// State: results by record; one request runs at a time (stateBusy),
	// stateWant is the newest one asked for meanwhile (-1: none).
	results     map[int64]*stateResult
	resultOrder []int64
	stateGen    int
	stateBusy   bool
	stateFor    int64
	stateWant   int64
	stateErr    error
	stateErrSeq int64
	noState     error
	mark        int64
	markState   []byte
	diffOn      bool
	diff        *diffResult

	filter       *recordFilter
	filterGen    int
	searchGen    int
	searching    bool
	searchCancel context.CancelFunc
	scanned      *atomic.Int64

	prompt promptKind
	input  textinput.Model

	menuOpen bool
	menuIdx  int

	following bool
	ticking   bool
	leave     bool // esc: back to the instances (the root acts on it)
	note      string
	noteErr   bool
}

// diffResult is the structural diff from the state after mark to the state
// after seq.
type diffResult struct {
	mark, seq int64
	changes   []timetravel.Change
}

func newBrowserModel(c *common, dir string) *browserModel {
	ti := textinput.New()
	ti.PromptStyle = c.styles.Bold
	ti.TextStyle = c.styles.Row
	ti.PlaceholderStyle = c.styles.Dim
	ti.CompletionStyle = c.styles.Dim
	ti.Cursor.Style = c.styles.RowCursor
	ti.Cursor.TextStyle = c.styles.Row
	ti.Cursor.SetMode(cursor.CursorStatic)
	return &browserModel{
		c: c, id: int(browserIDs.Add(1)), dir: dir, indexed: new(atomic.Int64), scanned: new(atomic.Int64), own: &owned{done: make(chan struct{})},
		results: map[int64]*stateResult{}, stateWant: -1, input: ti, peerW: 4,
	}
}

// init opens the instance and its index.
func (b *browserModel) init() tea.Cmd {
	id, home, dir, app, progress, own := b.id, b.c.opts.Home, b.dir, b.c.opts.App, b.indexed, b.own
	open := func() tea.Msg {
		in, err := layout.Open(vfs.Default(), dir)
		if err != nil {
			return browserOpenedMsg{id: id, err: err}
		}
		idx, err := openLogIndex(home, in)
		if err != nil {
			return browserOpenedMsg{id: id, err: err}
		}
		first, last, err := idx.open(func(n int64) { progress.Store(n) })
		if err != nil {
			idx.close()
			return browserOpenedMsg{id: id, err: err}
		}
		w := newStateWorker(dir, app, idx.ix)
		if !own.adopt(idx, w) {
			return nil // the browser was closed meanwhile
		}
		_, running := supervise.ReadRunStatus(dir)
		return browserOpenedMsg{id: id, in: in, idx: idx, worker: w, first: first, last: last, markers: readMarkers(in), running: running}
	}
	return tea.Batch(open, b.busyTick())
}

// close stops the replaying app and closes the index.
func (b *browserModel) close() {
	if b.searchCancel != nil {
		b.searchCancel()
	}
	b.own.close()
}

// owned is what a browser's commands opened (the index, the replaying
// app): closing the browser closes it, even when the command's message
// never arrives because the program quit first.
type owned struct {
	mu     sync.Mutex
	closed bool
	done   chan struct{} // closed once everything is
	idx    *logIndex
	worker *stateWorker
}

// adopt takes idx and w into o; if o is closed already it closes them and
// returns false.
func (o *owned) adopt(idx *logIndex, w *stateWorker) bool {
	o.mu.Lock()
	if !o.closed {
		o.idx, o.worker = idx, w
		o.mu.Unlock()
		return true
	}
	o.mu.Unlock()
	w.close()
	idx.close()
	return false
}

// close closes what o holds; a second call waits for the first.
func (o *owned) close() {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		<-o.done
		return
	}
	o.closed = true
	idx, w := o.idx, o.worker
	o.mu.Unlock()
	if w != nil {
		w.close()
	}
	if idx != nil {
		idx.close()
	}
	close(o.done)
}

// capturesKeys says whether keys go to a prompt rather than to commands.
func (b *browserModel) capturesKeys() bool { return b.prompt != promptNone }

// geometry is where the panes go: the list left of (wide terminals) or
// above (narrow ones) the detail and state panes. Heights include each
// pane's title line.
type geometry struct {
	wide                             bool
	listW, listH                     int
	detailW, detailH, stateW, stateH int
}

func (b *browserModel) geometry(w, h int) geometry {
	if w >= 120 {
		listW := w * 9 / 20
		right := w - listW - 1
		return geometry{wide: true, listW: listW, listH: h, detailW: right, detailH: h / 2, stateW: right, stateH: h - h/2}
	}
	listH := max(2, h/2)
	bottom := h - listH
	detailW := (w - 1) / 2
	return geometry{listW: w, listH: listH, detailW: detailW, detailH: bottom, stateW: w - detailW - 1, stateH: bottom}
}

// listRows is how many lines of rows the list shows.
func (b *browserModel) listRows() int {
	return max(1, b.geometry(b.c.width, b.c.bodyHeight()).listH-1)
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
func (b *browserModel) maxTop() int64 { return max(b.first, b.last-int64(b.listRows())+1) }

// moveTo selects record seq and does what follows from it: rows, detail
// and state for it.
func (b *browserModel) moveTo(seq int64) tea.Cmd {
	if b.last == 0 {
		return nil
	}
	seq = max(b.first, min(b.last, seq))
	if seq != b.cursor {
		b.detailOff, b.stateOff = 0, 0
	}
	b.cursor = seq
	b.ensureVisible()
	return tea.Batch(b.ensureWindow(), b.loadDetail(), b.scheduleState(), b.syncDiff())
}

// scroll moves cursor and view together by n records (ctrl+d, pgdn).
func (b *browserModel) scroll(n int64) tea.Cmd {
	b.top = max(b.first, min(b.maxTop(), b.top+n))
	return b.moveTo(b.cursor + n)
}

// The browser's operations, which keys map to.

func (b *browserModel) Down() tea.Cmd         { return b.moveTo(b.cursor + 1) }
func (b *browserModel) Up() tea.Cmd           { return b.moveTo(b.cursor - 1) }
func (b *browserModel) GotoTop() tea.Cmd      { return b.moveTo(b.first) }
func (b *browserModel) HalfPageDown() tea.Cmd { return b.scroll(int64(max(1, b.listRows()/2))) }
func (b *browserModel) HalfPageUp() tea.Cmd   { return b.scroll(-int64(max(1, b.listRows()/2))) }
func (b *browserModel) PageDown() tea.Cmd     { return b.scroll(int64(b.listRows())) }
func (b *browserModel) PageUp() tea.Cmd       { return b.scroll(-int64(b.listRows())) }

func (b *browserModel) GotoBottom() tea.Cmd {
	b.top = b.maxTop()
	return b.moveTo(b.last)
}

// StepBack and StepForward move the time-travel cursor one record and
// replay at once (no waiting for the cursor to rest).
func (b *browserModel) StepBack() tea.Cmd    { return b.step(-1) }
func (b *browserModel) StepForward() tea.Cmd { return b.step(1) }

func (b *browserModel) step(d int64) tea.Cmd {
	cmd := b.moveTo(b.cursor + d)
	b.stateGen++ // no need for the pending timer
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
		return e, false, false
	}
	if b.winMatch != nil {
		match = b.winMatch[i]
	}
	return b.win[i], match, true
}

// loadDetail reads the selected record for the detail pane.
func (b *browserModel) loadDetail() tea.Cmd {
	if b.last == 0 || (b.detailSeq == b.cursor && (b.detail != nil || b.detailErr != nil)) || b.detailWant == b.cursor {
		return nil
	}
	e, _, ok := b.entry(b.cursor)
	if !ok {
		return nil // once its page is loaded
	}
	b.detailWant = b.cursor
	id, idx := b.id, b.idx
	return func() tea.Msg {
		msg := recordLoadedMsg{id: id, seq: e.Seq}
		msg.err = idx.records([]timetravel.IndexEntry{e}, func(e timetravel.IndexEntry, rec *logfmt.Record) error {
			msg.view = logview.View(rec, e.Segment, e.Offset, immortal.DecodeArgs)
			return nil
		})
		return msg
	}
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

// busyTick redraws progress while something runs.
func (b *browserModel) busyTick() tea.Cmd {
	if b.ticking {
		return nil
	}
	b.ticking = true
	id := b.id
	return b.c.tick(100*time.Millisecond, func(time.Time) tea.Msg { return busyTickMsg{id: id} })
}

func (b *browserModel) busy() bool { return !b.opened || b.stateBusy || b.searching }

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

// search looks for the next (or previous) match of the filter.
func (b *browserModel) search(from int64, forward bool) tea.Cmd {
	if b.filter == nil {
		b.setError("no filter: / sets one (method:Inc, peer:client, kind:call, re:EXPR or text)")
		return nil
	}
	if b.searchCancel != nil {
		b.searchCancel()
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.searchCancel = cancel
	b.searchGen++
	b.searching = true
	b.scanned.Store(0)
	id, gen, idx, f, first, last, scanned := b.id, b.searchGen, b.idx, b.filter, b.first, b.last, b.scanned
	return tea.Batch(func() tea.Msg {
		seq, wrapped, err := idx.search(ctx, f, from, first, last, forward, scanned)
		return searchDoneMsg{id: id, gen: gen, seq: seq, wrapped: wrapped, err: err}
	}, b.busyTick())
}

func (b *browserModel) setFilter(text string) tea.Cmd {
	f, err := parseFilter(text)
	if err != nil {
		b.setError("%v", err)
		return nil
	}
	b.filter = f
	b.filterGen++
	b.winMatch = nil
	var cmds []tea.Cmd
	if len(b.win) > 0 {
		cmds = append(cmds, b.load(b.winFrom, b.winFrom+int64(len(b.win))-1))
	}
	// Like less: the first match at or after the cursor.
	cmds = append(cmds, b.search(b.cursor-1, true))
	return tea.Batch(cmds...)
}

func (b *browserModel) clearFilter() tea.Cmd {
	if b.searchCancel != nil {
		b.searchCancel()
	}
	b.filter, b.winMatch, b.searching = nil, nil, false
	b.filterGen++
	b.setStatus("filter cleared")
	if len(b.win) > 0 {
		return b.load(b.winFrom, b.winFrom+int64(len(b.win))-1)
	}
	return nil
}

// updateIndex catches up with records appended to the log.
func (b *browserModel) updateIndex() tea.Cmd {
	id, idx, in, dir := b.id, b.idx, b.in, b.dir
	return func() tea.Msg {
		first, last, err := idx.update(nil)
		_, running := supervise.ReadRunStatus(dir)
		return indexUpdatedMsg{id: id, first: first, last: last, markers: readMarkers(in), running: running, err: err}
	}
}

func (b *browserModel) setStatus(format string, args ...any) {
	b.note, b.noteErr = fmt.Sprintf(format, args...), false
}

func (b *browserModel) setError(format string, args ...any) {
	b.note, b.noteErr = fmt.Sprintf(format, args...), true
}

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
			return b.runAmbr("replay --debug", "replay", b.dir, "--until", seq, "--debug", "--wait", "--no-cache")
		}},
	)
	return items
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
	script := `trap : INT; "$0" "$@"; printf '\n(enter returns to ambr tui) '; read _`
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

// update handles msg.
func (b *browserModel) update(msg tea.Msg) tea.Cmd {
	switch msg := msg.(type) {
	case browserOpenedMsg:
		if msg.id != b.id {
			return nil
		}
		b.opened = true
		if msg.err != nil {
			b.openErr = msg.err
			return nil
		}
		b.in, b.idx, b.worker = msg.in, msg.idx, msg.worker
		b.first, b.last, b.markers, b.running = msg.first, msg.last, msg.markers, msg.running
		b.top, b.cursor = b.first, b.first
		return tea.Batch(b.ensureWindow(), b.scheduleState())
	case actionDoneMsg:
		if msg.id != b.id {
			return nil
		}
		if msg.err != nil {
			b.setError("ambr %s: %v", msg.what, msg.err)
		} else {
			b.setStatus("back from ambr %s", msg.what)
		}
		return nil
	case indexUpdatedMsg:
		if msg.id != b.id {
			return nil
		}
		var cmds []tea.Cmd
		if b.following {
			id := b.id
			cmds = append(cmds, b.c.tick(b.c.opts.FollowEvery, func(time.Time) tea.Msg { return followTickMsg{id: id} }))
		}
		if msg.err != nil {
			b.setError("%v", msg.err)
			return tea.Batch(cmds...)
		}
		// Like tail -f: new records bring the cursor along when it is on
		// the last one; elsewhere it stays where the user put it.
		atEnd := b.cursor == b.last
		grew := msg.last != b.last
		b.first, b.last, b.markers, b.running = msg.first, msg.last, msg.markers, msg.running
		if b.cursor < b.first {
			b.cursor, b.top = b.first, b.first
		}
		if b.following && grew && atEnd {
			cmds = append(cmds, b.GotoBottom())
			if b.c.opts.StateDelay >= 0 {
				b.stateGen++ // no waiting for the cursor to rest: it will not move
				cmds = append(cmds, b.requestState(b.cursor))
			}
		} else {
			cmds = append(cmds, b.ensureWindow())
		}
		return tea.Batch(cmds...)
	case followTickMsg:
		if msg.id != b.id || !b.following {
			return nil
		}
		return b.updateIndex()
	case recordsLoadedMsg:
		if msg.id != b.id || msg.req != b.loadReq {
			return nil
		}
		b.loading = false
		if msg.err != nil {
			b.setError("read the index: %v", msg.err)
			return nil
		}
		b.win, b.winMatch, b.winFrom = msg.entries, msg.matches, msg.from
		for _, e := range b.win {
			peer, _, _ := splitSummary(strings.SplitN(e.Summary, "; ", 2)[0])
			b.peerW = max(b.peerW, min(16, len([]rune(peer))))
		}
		if msg.filterGen != b.filterGen {
			b.winMatch = nil
		}
		return tea.Batch(b.ensureWindow(), b.loadDetail())
	case recordLoadedMsg:
		if msg.id != b.id {
			return nil
		}
		if msg.seq == b.detailWant {
			b.detailWant = 0
		}
		if msg.seq == b.cursor {
			b.detailSeq, b.detailErr = msg.seq, msg.err
			b.detail = nil
			if msg.err == nil {
				v := msg.view
				b.detail = &v
			}
			return nil
		}
		return b.loadDetail()
	case stateDueMsg:
		if msg.id != b.id || msg.gen != b.stateGen {
			return nil
		}
		return b.requestState(b.cursor)
	case stateComputedMsg:
		if msg.id != b.id {
			return nil
		}
		b.stateBusy = false
		switch {
		case msg.err != nil && errors.Is(msg.err, timetravel.ErrNoBuild):
			b.noState = msg.err
		case msg.err != nil:
			b.stateErr, b.stateErrSeq = msg.err, msg.req.seq
		default:
			if msg.req.seq == b.stateErrSeq {
				b.stateErr = nil
			}
			b.keepResult(msg.res)
			if msg.res.Mark != 0 && msg.res.Mark == b.mark {
				b.markState = msg.res.MarkState
				if b.diffOn {
					b.diff = &diffResult{mark: msg.res.Mark, seq: msg.res.Seq, changes: msg.res.Diff}
				}
			}
			if b.mark == msg.res.Seq && b.markState == nil {
				b.markState = appState(msg.res.rawState())
			}
		}
		return tea.Batch(b.dispatchState(), b.syncDiff())
	case diffComputedMsg:
		if msg.id == b.id {
			b.diff = msg.diff
		}
		return nil
	case jumpResolvedMsg:
		if msg.id != b.id {
			return nil
		}
		if msg.err != nil {
			b.setError("%v", msg.err)
			return nil
		}
		seq := max(msg.seq, b.first)
		if msg.seq < b.first {
			b.setStatus("%s is the state before #%d: showing #%d", msg.point, b.first, seq)
		} else {
			b.setStatus("%s is #%d", msg.point, seq)
		}
		b.top = max(b.first, min(b.maxTop(), seq-int64(b.listRows()/2)))
		return b.moveTo(seq)
	case searchDoneMsg:
		if msg.id != b.id || msg.gen != b.searchGen {
			return nil
		}
		b.searching = false
		switch {
		case errors.Is(msg.err, context.Canceled):
		case msg.err != nil:
			b.setError("search: %v", msg.err)
		case msg.seq == 0:
			b.setError("no record matches %q", b.filter.text)
		default:
			if msg.wrapped {
				b.setStatus("match #%d (wrapped)", msg.seq)
			} else {
				b.setStatus("match #%d", msg.seq)
			}
			if !b.visible(msg.seq, b.listRows()) {
				b.top = max(b.first, min(b.maxTop(), msg.seq-int64(b.listRows()/2)))
			}
			return b.moveTo(msg.seq)
		}
		return nil
	case busyTickMsg:
		if msg.id != b.id {
			return nil
		}
		b.ticking = false
		if b.busy() {
			return b.busyTick()
		}
		return nil
	case tea.KeyMsg:
		return b.key(msg)
	}
	return nil
}

// key maps keys to the browser's operations.
func (b *browserModel) key(msg tea.KeyMsg) tea.Cmd {
	k := b.c.keys
	if b.prompt == promptNone {
		b.note = "" // a note lasts until the next key, as in vi
	}
	if b.prompt != promptNone {
		switch msg.Type {
		case tea.KeyEsc:
			b.prompt = promptNone
			b.input.Blur()
			return nil
		case tea.KeyEnter:
			kind, text := b.prompt, strings.TrimSpace(b.input.Value())
			b.prompt = promptNone
			b.input.Blur()
			if text == "" {
				return nil
			}
			if kind == promptFilter {
				return b.setFilter(text)
			}
			return b.jump(text)
		}
		var cmd tea.Cmd
		b.input, cmd = b.input.Update(msg)
		return cmd
	}
	if !b.opened || b.openErr != nil {
		b.leave = key.Matches(msg, k.Back)
		return nil
	}
	if b.menuOpen {
		items := b.menu()
		switch {
		case key.Matches(msg, k.Down):
			b.menuIdx = min(len(items)-1, b.menuIdx+1)
		case key.Matches(msg, k.Up):
			b.menuIdx = max(0, b.menuIdx-1)
		case key.Matches(msg, k.Back):
			b.menuOpen = false
		case key.Matches(msg, k.Enter):
			it := items[min(b.menuIdx, len(items)-1)]
			if it.run == nil {
				b.setStatus("%s: %s", it.label, it.hint)
				return nil
			}
			b.menuOpen = false
			return it.run()
		}
		return nil
	}
	switch {
	case key.Matches(msg, k.NextPane):
		b.NextPane(msg.String() == "shift+tab")
		return nil
	case key.Matches(msg, k.StepBack):
		return b.StepBack()
	case key.Matches(msg, k.StepForward):
		return b.StepForward()
	case key.Matches(msg, k.Mark):
		return b.Mark()
	case key.Matches(msg, k.Diff):
		return b.Diff()
	case key.Matches(msg, k.Filter):
		return b.openPrompt(promptFilter)
	case key.Matches(msg, k.Jump):
		return b.openPrompt(promptJump)
	case key.Matches(msg, k.NextMatch):
		return b.search(b.cursor, true)
	case key.Matches(msg, k.PrevMatch):
		return b.search(b.cursor, false)
	case key.Matches(msg, k.Follow):
		return b.Follow()
	case key.Matches(msg, k.Refresh):
		return b.updateIndex()
	case key.Matches(msg, k.Back):
		return b.Back()
	case key.Matches(msg, k.Enter):
		b.Actions()
		return nil
	}
	if b.focus != paneList {
		b.scrollPane(msg)
		return nil
	}
	switch {
	case key.Matches(msg, k.Down):
		return b.Down()
	case key.Matches(msg, k.Up):
		return b.Up()
	case key.Matches(msg, k.Top):
		return b.GotoTop()
	case key.Matches(msg, k.Bottom):
		return b.GotoBottom()
	case key.Matches(msg, k.HalfPageDown):
		return b.HalfPageDown()
	case key.Matches(msg, k.HalfPageUp):
		return b.HalfPageUp()
	case key.Matches(msg, k.PageDown):
		return b.PageDown()
	case key.Matches(msg, k.PageUp):
		return b.PageUp()
	}
	return nil
}

// NextPane moves the focus to the next pane (back: the previous one).
func (b *browserModel) NextPane(back bool) {
	if back {
		b.focus = (b.focus + paneCount - 1) % paneCount
	} else {
		b.focus = (b.focus + 1) % paneCount
	}
}

// Follow starts or stops following the log as it grows.
func (b *browserModel) Follow() tea.Cmd {
	b.following = !b.following
	if b.following {
		b.setStatus("following the log: new records show as they are logged (f stops)")
		return b.updateIndex()
	}
	b.setStatus("stopped following")
	return nil
}

// Back undoes one thing: the diff, then the filter, then the browser.
func (b *browserModel) Back() tea.Cmd {
	switch {
	case b.diffOn:
		b.diffOn = false
	case b.filter != nil:
		return b.clearFilter()
	default:
		b.leave = true
	}
	return nil
}

// Actions opens the menu of actions on the selected record.
func (b *browserModel) Actions() {
	if b.last > 0 {
		b.menuOpen, b.menuIdx = true, 0
	}
}

// scrollPane scrolls the focused detail or state pane.
func (b *browserModel) scrollPane(msg tea.KeyMsg) {
	k := b.c.keys
	g := b.geometry(b.c.width, b.c.bodyHeight())
	off, h, n := &b.detailOff, g.detailH-1, len(b.detailLines(g.detailW))
	if b.focus == paneState {
		off, h, n = &b.stateOff, g.stateH-1, len(b.stateLines(g.stateW))
	}
	switch {
	case key.Matches(msg, k.Down):
		*off++
	case key.Matches(msg, k.Up):
		*off--
	case key.Matches(msg, k.Top):
		*off = 0
	case key.Matches(msg, k.Bottom):
		*off = 1 << 30
	case key.Matches(msg, k.HalfPageDown):
		*off += h / 2
	case key.Matches(msg, k.HalfPageUp):
		*off -= h / 2
	case key.Matches(msg, k.PageDown):
		*off += h
	case key.Matches(msg, k.PageUp):
		*off -= h
	}
	*off = clampOffset(*off, n, h)
}

func (b *browserModel) openPrompt(kind promptKind) tea.Cmd {
	b.prompt = kind
	b.input.Reset()
	switch kind {
	case promptFilter:
		b.input.Prompt = "/"
		b.input.Placeholder = "method:Inc peer:client kind:call re:EXPR or text of the arguments"
		if b.filter != nil {
			b.input.SetValue(b.filter.text)
		}
	case promptJump:
		b.input.Prompt = ":"
		b.input.Placeholder = "1234, seq:1234, 2026-11-21T10:15:00Z, checkpoint:K+N or end"
	}
	return b.input.Focus()
}

func (b *browserModel) jump(text string) tea.Cmd {
	p, err := timetravel.ParsePoint(text)
	if err != nil {
		b.setError("%v", err)
		return nil
	}
	id, idx := b.id, b.idx
	return func() tea.Msg {
		seq, err := idx.resolve(p)
		return jumpResolvedMsg{id: id, point: text, seq: seq, err: err}
	}
}
