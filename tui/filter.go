package tui

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/logfmt/logview"
	"github.com/ambr-dev/ambr/timetravel"
)

// recordFilter is what `/` asks for. Terms are separated by spaces and must
// all hold for one message of a record:
//
//	method:NAME  peer:NAME  kind:call|fork|impulse|initial|…   (case-insensitive)
//	re:EXPR      a regular expression on the decoded arguments
//	anything else: text the decoded arguments contain (case-insensitive)
//
// Method, peer and kind are answered from the index's summaries; text and
// expressions read the records themselves.
type recordFilter struct {
	text               string
	peer, kind, method string
	substr             string
	re                 *regexp.Regexp
}

func parseFilter(s string) (*recordFilter, error) {
	f := &recordFilter{text: strings.TrimSpace(s)}
	var words []string
	for _, w := range strings.Fields(s) {
		k, v, ok := strings.Cut(w, ":")
		switch {
		case ok && k == "method":
			f.method = strings.ToLower(v)
		case ok && k == "peer":
			f.peer = strings.ToLower(v)
		case ok && k == "kind":
			f.kind = strings.ToLower(v)
		case ok && k == "re":
			re, err := regexp.Compile(v)
			if err != nil {
				return nil, fmt.Errorf("bad expression after re: %v", err)
			}
			f.re = re
		default:
			words = append(words, w)
		}
	}
	f.substr = strings.ToLower(strings.Join(words, " "))
	if f.text == "" {
		return nil, fmt.Errorf("empty filter (try method:Inc, peer:client, kind:call, re:EXPR or some text of the arguments)")
	}
	return f, nil
}

// needsRecords says whether matching reads the records, not only the index.
func (f *recordFilter) needsRecords() bool { return f.substr != "" || f.re != nil }

func (f *recordFilter) fields(peer, kind, method string) bool {
	return (f.peer == "" || strings.EqualFold(peer, f.peer)) &&
		(f.kind == "" || strings.EqualFold(kind, f.kind)) &&
		(f.method == "" || strings.EqualFold(method, f.method))
}

// matchSummary matches an index summary; sure is false when the summary
// cannot tell (it is cut short, or the filter looks into arguments).
func (f *recordFilter) matchSummary(summary string) (ok, sure bool) {
	if f.needsRecords() {
		return false, false
	}
	parts := strings.Split(summary, "; ")
	for _, p := range parts {
		if p == "…" {
			return false, false
		}
		peer, kind, method := splitSummary(p)
		if f.fields(peer, kind, method) {
			return true, true
		}
	}
	return false, true
}

// splitSummary splits one message of an index summary ("client call Inc",
// "server InitialMessage") into peer, kind and method.
func splitSummary(part string) (peer, kind, method string) {
	peer, rest, _ := strings.Cut(part, " ")
	kind, method, _ = strings.Cut(rest, " ")
	switch kind {
	case "call", "fork", "impulse":
	default:
		if !strings.HasPrefix(kind, "rpckind(") {
			kind, method = kindLabel(kind), ""
		}
	}
	return peer, kind, method
}

// kindLabel names a message's type the way the list shows it.
func kindLabel(typ string) string {
	switch typ {
	case "InitialMessage":
		return "initial"
	case "RPCBatch":
		return "batch"
	case "CountReplayableRPCBatch":
		return "crbatch"
	}
	return strings.ToLower(typ)
}

// messageLabels returns peer, kind and method of a decoded message.
func messageLabels(m logview.MessageView) (kind, method string) {
	kind = m.Kind
	if kind == "" {
		kind = kindLabel(m.Type)
	}
	switch {
	case m.Result:
		method = "result"
	case m.MethodName != "":
		method = m.MethodName
	case m.Method != nil:
		method = fmt.Sprintf("method %d", *m.Method)
	}
	return kind, method
}

// matchView matches a decoded record.
func (f *recordFilter) matchView(v logview.RecordView) bool {
	for _, m := range v.Messages {
		if f.matchMessage(m, m.From) {
			return true
		}
	}
	return false
}

func (f *recordFilter) matchMessage(m logview.MessageView, from string) bool {
	kind, method := messageLabels(m)
	if f.fields(from, kind, method) && f.matchArgs(m.Args) {
		return true
	}
	for _, sub := range m.Batch {
		if f.matchMessage(sub, from) {
			return true
		}
	}
	return false
}

func (f *recordFilter) matchArgs(args string) bool {
	if f.substr != "" && !strings.Contains(strings.ToLower(args), f.substr) {
		return false
	}
	if f.re != nil && !f.re.MatchString(args) {
		return false
	}
	return true
}

// match says which of entries (consecutive records) match, reading the
// records only when the summaries cannot tell.
func (f *recordFilter) match(l *logIndex, entries []timetravel.IndexEntry) ([]bool, error) {
	out := make([]bool, len(entries))
	unsure := false
	for i, e := range entries {
		ok, sure := f.matchSummary(e.Summary)
		out[i] = ok
		unsure = unsure || !sure
	}
	if !unsure {
		return out, nil
	}
	i := 0
	err := l.records(entries, func(e timetravel.IndexEntry, rec *logfmt.Record) error {
		out[i] = f.matchView(logview.ViewEnvelopes(rec, e.Segment, e.Offset, decodeEnvelope))
		i++
		return nil
	})
	return out, err
}

// searchChunk is how many records a search reads between checks for
// cancellation.
const searchChunk = 2048

// search looks for the next record after start (forward) or before it
// that matches f, wrapping around the ends of first..last; wrapped says it
// did. scanned counts the records looked at, for progress.
func (l *logIndex) search(ctx context.Context, f *recordFilter, start, first, last int64, forward bool, scanned *atomic.Int64) (seq int64, wrapped bool, err error) {
	scan := func(lo, hi int64) (int64, error) {
		if lo > hi {
			return 0, nil
		}
		for i := int64(0); ; i++ {
			var s, e int64
			if forward {
				s = lo + i*searchChunk
				e = min(s+searchChunk-1, hi)
				if s > hi {
					return 0, nil
				}
			} else {
				e = hi - i*searchChunk
				s = max(e-searchChunk+1, lo)
				if e < lo {
					return 0, nil
				}
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			entries, err := l.page(s, e)
			if err != nil {
				return 0, err
			}
			m, err := f.match(l, entries)
			if err != nil {
				return 0, err
			}
			scanned.Add(int64(len(entries)))
			if forward {
				for k, ok := range m {
					if ok {
						return entries[k].Seq, nil
					}
				}
			} else {
				for k := len(m) - 1; k >= 0; k-- {
					if m[k] {
						return entries[k].Seq, nil
					}
				}
			}
		}
	}
	var a, b [2]int64
	if forward {
		a, b = [2]int64{start + 1, last}, [2]int64{first, start}
	} else {
		a, b = [2]int64{first, start - 1}, [2]int64{start, last}
	}
	if seq, err = scan(a[0], a[1]); err != nil || seq != 0 {
		return seq, false, err
	}
	seq, err = scan(b[0], b[1])
	return seq, seq != 0, err
}
