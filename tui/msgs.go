package tui

import (
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

// The messages commands send back. Those of a browser carry its id, so
// that answers to a browser already closed are dropped.

// instancesLoadedMsg carries the instances found under the home.
type instancesLoadedMsg struct {
	items []instanceInfo
	err   error
}

// instancesTickMsg: time to look at the instances again.
type instancesTickMsg struct{}

// browserOpenedMsg: the instance and its index are open and up to date.
type browserOpenedMsg struct {
	id          int
	in          *layout.Instance
	idx         *logIndex
	worker      *stateWorker
	first, last int64
	markers     map[int64][]uint64
	builds      []timetravel.BuildRange
	running     bool
	err         error
}

// browserClosedMsg: a browser left with esc is closed.
type browserClosedMsg struct{ b *browserModel }

// indexUpdatedMsg: the index caught up with a growing log (f).
type indexUpdatedMsg struct {
	id          int
	first, last int64
	markers     map[int64][]uint64
	builds      []timetravel.BuildRange // nil: unchanged
	buildsSeen  int
	running     bool
	err         error
}

// recordsLoadedMsg is a page of rows: the index entries of records
// from..to and, with a filter, which of them match.
type recordsLoadedMsg struct {
	id, req   int
	from, to  int64
	entries   []timetravel.IndexEntry
	matches   []bool
	filterGen int
	err       error
}

// recordLoadedMsg is one record decoded for the detail pane.
type recordLoadedMsg struct {
	id   int
	seq  int64
	view logview.RecordView
	err  error
}

// stateComputedMsg is the state after a record, replayed.
type stateComputedMsg struct {
	id  int
	req stateRequest
	res *stateResult
	err error
}

// diffComputedMsg is a diff computed from two states at hand.
type diffComputedMsg struct {
	id   int
	diff *diffResult
}

// jumpResolvedMsg is where a point typed after `:` is.
type jumpResolvedMsg struct {
	id    int
	point string
	seq   int64
	err   error
}

// searchDoneMsg is the next (or previous) match of the filter.
type searchDoneMsg struct {
	id, gen int
	seq     int64
	wrapped bool
	err     error
}

// stateDueMsg fires when the cursor has rested long enough to replay.
type stateDueMsg struct{ id, gen int }

// followTickMsg: time to look for new records.
type followTickMsg struct{ id int }

// busyTickMsg redraws progress while something long runs.
type busyTickMsg struct{ id int }
