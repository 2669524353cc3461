package retro

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

// Nondeterminism is a history that its build does not reproduce: replayed,
// the build sends other messages than the log's output digests record.
type Nondeterminism struct {
	// Seq is the record whose handling sent the first message that
	// differs (when a receiver's log shows which one does), or the first
	// that may differ.
	Seq   int64               `json:"seq"`
	Time  time.Time           `json:"time"`
	Input *logview.RecordView `json:"input,omitempty"`
	// Point is the record whose logged output digest the messages miss;
	// Detail says how.
	Point  int64  `json:"point"`
	Detail string `json:"detail"`
	// Message is the message's number in the instance's output stream.
	Message uint64 `json:"message,omitempty"`
	// Now is what the build sends there now (nil: nothing); Logged what
	// the history holds (nil: only its digest is known); LoggedIn where
	// Logged was read, or why there is none.
	Now      *Message `json:"now,omitempty"`
	Logged   *Message `json:"logged,omitempty"`
	LoggedIn string   `json:"logged_in"`
	// Causes are the likely causes, likeliest first.
	Causes []string `json:"causes"`
}

// Instability is output that varies between two runs of the candidate on
// the same records.
type Instability struct {
	// From and Until are the records both runs were given.
	From  int64 `json:"from"`
	Until int64 `json:"until"`
	// Index is the first message (0-based, in what the runs sent while
	// handling From..Until) where they differ; First and Second are that
	// message in each run (nil: that run sent nothing there).
	Index  int      `json:"index"`
	First  *Message `json:"first,omitempty"`
	Second *Message `json:"second,omitempty"`
	// State is how the states differ, when the messages agree.
	State  []timetravel.Change `json:"state_diff,omitempty"`
	Causes []string            `json:"causes"`
}

// nondeterminism explains the failed point of stream: it looks up each
// message since the last point that matched in the log of the instance
// that received it (when that instance lives beside this one, as under one
// home; the own log for self-calls) and names the first one that differs.
func (t *tester) nondeterminism(cause error, stream *timetravel.OutputCheck) *Nondeterminism {
	nd := &Nondeterminism{Detail: cause.Error()}
	bad := stream.Failed()
	if bad != nil {
		nd.Point = bad.Seq
	}
	cands := stream.Unchecked()
	if bad != nil && bad.OutCount-stream.Base() < uint64(len(cands)) {
		cands = cands[:bad.OutCount-stream.Base()]
	}
	lookup := loggedLookup{home: filepath.Dir(t.in.Dir), self: t.in.Manifest.Instance, selfDir: t.in.Dir}
	var nows, loggeds []Message
	found := false
	for i, c := range cands {
		now := decode([]timetravel.Sent{c.Sent})[0]
		logged, where, err := lookup.find(c.Dest, c.DestSeq)
		if logged != nil {
			logged.Dest = now.Dest
			nows, loggeds = append(nows, now), append(loggeds, *logged)
		}
		if found {
			continue
		}
		if err != nil || logged == nil || *logged != now {
			nd.Seq, nd.Message, nd.Now, nd.Logged = c.Seq, stream.Base()+uint64(i)+1, &now, logged
			nd.LoggedIn = where
			if err != nil {
				nd.LoggedIn = err.Error()
			}
			found = true
		}
	}
	if !found {
		// Every message the build sent matches, or none could be checked:
		// it sent fewer than the log records.
		nd.Seq = stream.Fed()
		nd.Message = stream.Count() + 1
		nd.LoggedIn = "the build sent no message there; the log's digest says it did"
	}
	reordered := len(nows) > 1 && !slices.Equal(nows, loggeds) && sameMultiset(nows, loggeds)
	nd.Causes = likelyCauses(nd.Now, nd.Logged, reordered, !found)
	if rec, err := timetravel.RecordAt(t.in, nd.Seq); err == nil {
		v := logview.View(rec, 0, 0, immortal.DecodeArgs)
		nd.Input, nd.Time = &v, rec.LoggedTime()
	}
	return nd
}

func sameMultiset(a, b []Message) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[Message]int{}
	for _, m := range a {
		count[m]++
	}
	for _, m := range b {
		count[m]--
		if count[m] < 0 {
			return false
		}
	}
	return true
}

// timeLike matches what a wall-clock reading looks like in a payload: an
// RFC 3339 time or a Unix time in seconds to nanoseconds (2001–2286).
var timeLike = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d|\b1\d{9}(\d{3}){0,3}\b`)

// likelyCauses guesses why a build sends other messages than it did, from
// what differs; the likeliest come first.
func likelyCauses(now, logged *Message, reordered, fewer bool) []string {
	const (
		clock  = "the wall clock read in a handler (time.Now): use ctx.Now(), which replays the logged time"
		maps   = "iterating a map (Go randomises its order): sort the keys before sending or deciding"
		gor    = "goroutines started by a handler, or messages sent from them: send from the handler itself"
		random = "randomness outside ctx.Rand(), global variables, the environment or files read in a handler"
		build  = "a build other than the one that made the history (pass the one that did)"
	)
	switch {
	case reordered:
		return []string{maps, gor, build}
	case now != nil && logged != nil && now.Method == logged.Method && now.Dest == logged.Dest:
		if timeLike.MatchString(now.Payload) || timeLike.MatchString(logged.Payload) {
			return []string{clock, random, build}
		}
		return []string{random, clock, maps, build}
	case fewer:
		return []string{clock + " (a branch on it)", random, gor, build}
	}
	return []string{clock + " (a branch on it)", maps, random, gor, build}
}

// loggedLookup finds messages this instance sent in the logs of the
// instances that received them, when they are on this machine beside it.
type loggedLookup struct {
	home, self, selfDir string
}

// find returns the message from self with sender sequence number seq in
// dest's log, and where it was found or why not.
func (l loggedLookup) find(dest string, seq int64) (*Message, string, error) {
	dir := l.selfDir
	if dest != l.self {
		dir = filepath.Join(l.home, dest)
		if _, err := os.Stat(filepath.Join(dir, layout.ManifestFile)); err != nil {
			return nil, fmt.Sprintf("only its digest is logged here; %s's log, which holds it, is not beside this instance (%s)", dest, dir), nil
		}
	}
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return nil, "", fmt.Errorf("read %s's log: %w", dest, err)
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return nil, "", err
	}
	defer lr.Close()
	for {
		rec, err := lr.Next()
		if errors.Is(err, io.EOF) {
			return nil, fmt.Sprintf("%s's log does not hold message %d from %s (not delivered yet, or its segment is gone)", dest, seq, l.self), nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("read %s's log: %w", dest, err)
		}
		data, ok := messageFrom(rec, l.self, seq)
		if !ok {
			continue
		}
		rpc, err := logfmt.ParseRPC(data)
		if err != nil {
			return nil, "", fmt.Errorf("%s's log, record %d: %w", dest, rec.Seq, err)
		}
		rpc.Args = append([]byte(nil), rpc.Args...)
		m := decode([]timetravel.Sent{{Dest: dest, RPC: rpc}})[0]
		return &m, fmt.Sprintf("%s's log, record %d", dest, rec.Seq), nil
	}
}

// messageFrom returns the data of the message from sender with sender
// sequence number seq in rec, if rec holds it.
func messageFrom(rec *logfmt.Record, sender string, seq int64) ([]byte, bool) {
	skip := -1
	n := 0
	for _, s := range rec.Sources {
		if s.Peer == sender && s.FirstSeq != 0 && seq >= s.FirstSeq && seq <= s.LastSeq() {
			skip = n + int(seq-s.FirstSeq)
			break
		}
		n += int(s.Count)
	}
	if skip < 0 {
		return nil, false
	}
	it := logfmt.NewMessageIter(rec.Messages)
	for i := 0; ; i++ {
		m, ok := it.Next()
		if !ok {
			return nil, false
		}
		if i == skip {
			return m.Data, m.Type == logfmt.TypeRPC
		}
	}
}

// unstable describes how the candidate's two runs on records from..until
// differ.
func unstable(from, until int64, w windowResult) *Instability {
	u := &Instability{From: from, Until: until}
	a, b := decode(w.actSent), decode(w.repSent)
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y *Message
		if i < len(a) {
			x = &a[i]
		}
		if i < len(b) {
			y = &b[i]
		}
		if x == nil || y == nil || *x != *y {
			u.Index, u.First, u.Second = i, x, y
			break
		}
	}
	if u.First == nil && u.Second == nil {
		x, _ := appState(w.actState)
		y, _ := appState(w.repState)
		u.State = timetravel.Diff(x, y)
	}
	u.Causes = likelyCauses(u.First, u.Second, sameMultiset(a, b) && len(a) > 1, u.First == nil || u.Second == nil)
	return u
}
