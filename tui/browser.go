package tui

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/charmbracelet/bubbles/cursor"
	"github.com/charmbracelet/bubbles/key"
	"github.com/charmbracelet/bubbles/textinput"
	tea "github.com/charmbracelet/bubbletea"

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

	in *layout.Instance
	// builds are the MANIFEST's builds and the records each ran: the
	// header names the one that ran the record at the cursor.
	builds     []timetravel.BuildRange
	buildsSeen int // how many builds the MANIFEST listed when builds was read
	idx        *logIndex
	worker     *stateWorker
	own        *owned
	opened     bool
	openErr    error
	indexed    *atomic.Int64 // records indexed so far while opening
	running    bool

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
	unfolded    bool // the state pane shows every entry (z)
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

	// The filter's matches over the whole log (matches.go): nil until
	// counted. showContext shows all records rather than only them.
	matches       []int64
	matchRows     map[int64]timetravel.IndexEntry // entries of matches outside win
	matchRowsBusy bool
	counting      bool
	counted       *atomic.Int64
	countCancel   context.CancelFunc
	showContext   bool

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
		counted: new(atomic.Int64), matchRows: map[int64]timetravel.IndexEntry{},
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
		running := instanceRunning(dir)
		return browserOpenedMsg{id: id, in: in, idx: idx, worker: w, first: first, last: last, markers: readMarkers(in), builds: timetravel.Builds(in), running: running}
	}
	return tea.Batch(open, b.busyTick())
}

// close stops the replaying app and closes the index.
func (b *browserModel) close() {
	if b.searchCancel != nil {
		b.searchCancel()
	}
	if b.countCancel != nil {
		b.countCancel()
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
			msg.view = logview.ViewEnvelopes(rec, e.Segment, e.Offset, decodeEnvelope)
			return nil
		})
		return msg
	}
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

func (b *browserModel) busy() bool { return !b.opened || b.stateBusy || b.searching || b.counting }

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
	b.showContext = false
	cmds := []tea.Cmd{b.countMatches()}
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
	if b.countCancel != nil {
		b.countCancel()
	}
	b.filter, b.winMatch, b.searching = nil, nil, false
	b.matches, b.counting, b.showContext = nil, false, false
	b.filterGen++
	b.setStatus("filter cleared")
	if len(b.win) > 0 {
		return b.load(b.winFrom, b.winFrom+int64(len(b.win))-1)
	}
	return nil
}

// updateIndex catches up with records appended to the log.
func (b *browserModel) updateIndex() tea.Cmd {
	id, idx, in, dir, nb := b.id, b.idx, b.in, b.dir, b.buildsSeen
	return func() tea.Msg {
		first, last, err := idx.update(nil)
		running := instanceRunning(dir)
		var builds []timetravel.BuildRange // nil: as before
		if m, merr := layout.ReadManifest(vfs.Default(), dir); merr == nil && len(m.Builds) != nb {
			if fresh, oerr := layout.Open(vfs.Default(), dir); oerr == nil { // an upgrade meanwhile
				builds = timetravel.Builds(fresh)
				if builds == nil {
					builds = []timetravel.BuildRange{}
				}
				nb = len(m.Builds)
			}
		}
		return indexUpdatedMsg{id: id, first: first, last: last, markers: readMarkers(in), running: running, builds: builds, buildsSeen: nb, err: err}
	}
}

func (b *browserModel) setStatus(format string, args ...any) {
	b.note, b.noteErr = fmt.Sprintf(format, args...), false
}

func (b *browserModel) setError(format string, args ...any) {
	b.note, b.noteErr = fmt.Sprintf(format, args...), true
}

// update handles msg.
func (b *browserModel) update(msg tea.Msg) tea.Cmd {
	if cmd, handled := b.updateMatches(msg); handled {
		return cmd
	}
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
		b.first, b.last, b.markers, b.running, b.builds = msg.first, msg.last, msg.markers, msg.running, msg.builds
		b.buildsSeen = len(msg.in.Manifest.Builds)
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
		if msg.builds != nil {
			b.builds, b.buildsSeen = msg.builds, msg.buildsSeen
		}
		if b.cursor < b.first {
			b.cursor, b.top = b.first, b.first
		}
		if grew && b.filter != nil {
			cmds = append(cmds, b.countMatches()) // the new records may match
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
	case key.Matches(msg, k.Fold):
		b.ToggleFold()
		return nil
	case key.Matches(msg, k.Context):
		return b.ToggleContext()
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
		// A new filter starts empty (as in less, k9s and lazygit); the
		// current one stays until enter replaces it.
		if b.filter != nil {
			b.input.Placeholder = "a new filter (now: " + b.filter.text + "; esc keeps it)"
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

// instanceRunning reports whether the instance in dir runs: as one
// `ambr run`, or as replicas.
func instanceRunning(dir string) bool {
	if _, ok := supervise.ReadRunStatus(dir); ok {
		return true
	}
	return len(supervise.ReadReplicaStatuses(dir)) > 0
}
