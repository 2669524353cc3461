package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/ambr-dev/ambr/engine/immortal"
	"github.com/ambr-dev/ambr/logfmt"
)

// nondeterminismWatch explains a recovery whose replay differs from the
// log. The log holds the chained digest of the app's output at each
// record, not the messages; so it keeps, since the last point that
// matched, the records replayed and the messages the app sent, and names
// them when a point does not match: the record, its input decoded, the
// first message sent since (decoded), and the likely causes.
//
// Under the warn policy each cause (the input's methods and the message
// sent) is one line with a count, given when the recovery ends; the
// digest chain is set back to the log's at each mismatch, so later points
// count only what differs after it.
type nondeterminismWatch struct {
	// recent are the records replayed since the last matched point. Their
	// messages are the deliveries' own bytes, not copies: what is kept is
	// what the replay queue held anyway, until the app's output reaches
	// the next point.
	recent []*logfmt.Record
	// recentBytes is the messages' bytes recent holds, at most
	// maxRecentBytes (the oldest go first): a recovery that streams its
	// log checks the app's output only once the whole log is read.
	recentBytes int
	// letGo is the newest record dropped for maxRecentBytes.
	letGo  int64
	sent   []sentNow // sent since the last matched point, the first keepSent
	more   int       // messages sent beyond those
	lastN  uint64    // the output count after the last message noted
	causes []*nondeterminismCause
}

// keepSent is how many of the messages sent since the last matched point
// are kept to be shown.
const keepSent = 8

type sentNow struct {
	dest string // "" for a self-call
	body []byte // the RPC in delivery form
	n    uint64 // the output count it made
}

type nondeterminismCause struct {
	key           string
	first         string // the first occurrence, described
	count         int
	firstSeq, seq int64
}

// replayed notes a record fed during recovery; wire is its delivery.
func (w *nondeterminismWatch) replayed(rec *logfmt.Record, wire []byte) {
	c := logfmt.Record{Seq: rec.Seq, Time: rec.Time, Messages: wire[logfmt.WireHeaderSize:],
		Sources: append([]logfmt.Source(nil), rec.Sources...)}
	w.recent = append(w.recent, &c)
	w.recentBytes += len(c.Messages)
	for w.recentBytes > maxRecentBytes && len(w.recent) > 1 {
		w.letGo = w.recent[0].Seq
		w.drop()
	}
}

// maxRecentBytes bounds what the watch keeps of replayed records to name
// a mismatch's input: a mismatch further back is reported without it.
const maxRecentBytes = 64 << 20

// drop forgets the oldest record kept.
func (w *nondeterminismWatch) drop() {
	w.recentBytes -= len(w.recent[0].Messages)
	w.recent[0] = nil
	w.recent = w.recent[1:]
}

// sentDuringRecovery notes a message the replaying app sent, which made
// the output count n.
func (w *nondeterminismWatch) sentDuringRecovery(dest, body []byte, n uint64) {
	w.lastN = n
	if len(w.sent) < keepSent && w.more == 0 {
		w.sent = append(w.sent, sentNow{dest: string(dest), body: append([]byte(nil), body...), n: n})
	} else {
		w.more++
	}
}

// covered returns the messages noted that a point after count messages
// covers (a point fed late, when the output is past it, covers fewer than
// were sent), and how many more it covers that were not kept.
func (w *nondeterminismWatch) covered(count uint64) ([]sentNow, int) {
	cov := w.sent
	for len(cov) > 0 && cov[len(cov)-1].n > count {
		cov = cov[:len(cov)-1]
	}
	more := 0
	if len(cov) == len(w.sent) && w.more > 0 && len(cov) > 0 && count > cov[len(cov)-1].n {
		more = int(min(count, w.lastN) - cov[len(cov)-1].n)
	}
	return cov, more
}

// matched forgets what a matched point covers.
func (w *nondeterminismWatch) matched(seq int64, count uint64) {
	// What the output sent beyond the point (fed late) is the next
	// point's to cover; messages not kept are given up with the last kept.
	i := 0
	for i < len(w.sent) && w.sent[i].n <= count {
		i++
	}
	w.sent = w.sent[:copy(w.sent, w.sent[i:])]
	if len(w.sent) == 0 {
		w.more = 0
	}
	// The next mismatch names the record before its point: keep seq-1.
	for len(w.recent) > 0 && w.recent[0].Seq < seq-1 {
		w.drop()
	}
}

// mismatch describes a point that did not match: at record seq, after
// count messages, the log recorded digest logged, the replay gives now
// (or, when fewer is set, the replay ended having sent only now messages).
// It returns the cause's key and the description.
func (w *nondeterminismWatch) mismatch(seq int64, count uint64, logged, now uint64, sentCount uint64, fewer bool) (key, text string) {
	// The point at record seq covers what the app had sent when seq was
	// logged: the messages came from handling the records before it.
	var rec *logfmt.Record
	for _, r := range w.recent {
		if r.Seq >= seq && rec != nil {
			break
		}
		rec = r
	}
	if rec != nil && rec.Seq > seq-1 && w.letGo >= seq-1 {
		rec = nil // the record before the point was let go (maxRecentBytes)
	}
	var b strings.Builder
	input := "(not kept)"
	if rec != nil {
		input = describeInput(rec)
		fmt.Fprintf(&b, "replaying record %d (logged %s; input: %s), ", rec.Seq, rec.LoggedTime().Format(time.RFC3339Nano), input)
	}
	what := ""
	sent, more := w.covered(count)
	switch {
	case fewer:
		fmt.Fprintf(&b, "the app sent %d messages in all, but the log recorded %d by record %d: it did not send what it sent when the records were first processed", sentCount, count, seq)
		what = "fewer messages"
	case len(sent) == 0:
		fmt.Fprintf(&b, "the app's output after %d messages has digest %016x, but the log recorded %016x at record %d", count, now, logged, seq)
	default:
		first := describeSent(sent[0])
		if f := strings.Fields(first); len(f) >= 4 {
			what = f[1] + " " + f[2] + " " + f[3] // "client fork result"
		}
		from := sent[0].n
		if len(sent) == 1 && more == 0 {
			fmt.Fprintf(&b, "the app sent other messages than it did when the record was first processed: message %d of its output is now %s", from, first)
		} else {
			descs := make([]string, len(sent))
			for i, m := range sent {
				descs[i] = describeSent(m)
			}
			fmt.Fprintf(&b, "the app sent other messages than it did when the record was first processed: one of its messages %d..%d (those since the last point that matched) differs; they are now %s", from, count, strings.Join(descs, ", "))
			if more > 0 {
				fmt.Fprintf(&b, " and %d more", more)
			}
		}
		fmt.Fprintf(&b, "; the log holds only the digest of what it sent then (%016x at record %d, %016x now): 'ambr retro-test' of this instance shows the logged message when the receiver's directory is beside it", logged, seq, now)
	}
	fmt.Fprintf(&b, "; likely causes: %s", strings.Join(likelyCauses, "; "))
	return stripSeqs(input) + " → " + what, b.String()
}

// likelyCauses are what makes a Go handler replay differently, likeliest
// first.
var likelyCauses = []string{
	"the wall clock read in a handler (time.Now: use ctx.Now(), which replays the logged time)",
	"iterating a map (Go randomises its order: sort the keys)",
	"goroutines started by a handler, or randomness outside ctx.Rand(), global variables, the environment or files",
	"a build other than the one that made the history",
}

// count adds an occurrence of a cause under the warn policy.
func (w *nondeterminismWatch) count(key, text string, seq int64) {
	for _, c := range w.causes {
		if c.key == key {
			c.count++
			c.seq = seq
			return
		}
	}
	w.causes = append(w.causes, &nondeterminismCause{key: key, first: text, count: 1, firstSeq: seq, seq: seq})
}

// summary is one line per cause counted, and forgets them.
func (w *nondeterminismWatch) summary() []string {
	var lines []string
	for _, c := range w.causes {
		if c.count == 1 {
			lines = append(lines, fmt.Sprintf("nondeterminism (warn, carrying on): 1 point of the log's output stream replayed differently: %s", c.first))
			continue
		}
		lines = append(lines, fmt.Sprintf("nondeterminism (warn, carrying on): %d points of the log's output stream, from record %d to %d, replayed differently, the first: %s", c.count, c.firstSeq, c.seq, c.first))
	}
	w.causes = nil
	return lines
}

// describeInput is a record's messages in one line: "client:20 call Inc {}".
func describeInput(rec *logfmt.Record) string {
	var parts []string
	src, left := 0, uint32(0)
	if len(rec.Sources) > 0 {
		left = rec.Sources[0].Count
	}
	fromSeq := int64(0)
	if len(rec.Sources) > 0 {
		fromSeq = rec.Sources[0].FirstSeq
	}
	it := logfmt.NewMessageIter(rec.Messages)
	for m, ok := it.Next(); ok; m, ok = it.Next() {
		for left == 0 && src+1 < len(rec.Sources) {
			src++
			left, fromSeq = rec.Sources[src].Count, rec.Sources[src].FirstSeq
		}
		left--
		from := ""
		if src < len(rec.Sources) {
			from = rec.Sources[src].Peer
			if fromSeq != 0 {
				from += fmt.Sprintf(":%d", fromSeq)
				fromSeq++
			}
		}
		desc := m.Type.String()
		if m.Type == logfmt.TypeRPC {
			if r, err := logfmt.ParseRPC(m.Data); err == nil {
				desc = describeRPC(r)
			}
		}
		parts = append(parts, strings.TrimSpace(from+" "+desc))
		if len(parts) == 4 {
			parts = append(parts, "…")
			break
		}
	}
	return strings.Join(parts, "; ")
}

// describeSent is a message the app sent: "→ client fork result 1823".
func describeSent(s sentNow) string {
	dest := s.dest
	if dest == "" {
		dest = "self"
	}
	r, err := logfmt.ParseRPC(s.body)
	if err != nil {
		return "→ " + dest + " (undecodable)"
	}
	return "→ " + dest + " " + describeRPC(r)
}

// describeRPC is "call Inc {}": the kind, then the Go binding's method and
// payload when it recognises its envelope, else the method id and size.
func describeRPC(r logfmt.RPC) string {
	kind := strings.ToLower(r.Kind.String())
	name, result, payload, ok := immortal.DecodeArgs(r.Args, r.Reserved)
	if !ok {
		if printable(r.Args) && len(r.Args) <= 80 {
			return fmt.Sprintf("%s method %d %q", kind, r.MethodID, r.Args)
		}
		return fmt.Sprintf("%s method %d (%d bytes)", kind, r.MethodID, len(r.Args))
	}
	if result {
		name = "result"
	}
	p := string(payload)
	if !printable(payload) {
		p = fmt.Sprintf("(%d bytes)", len(payload))
	} else if len(p) > 80 {
		p = p[:80] + "…"
	}
	return kind + " " + name + " " + p
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// stripSeqs drops sender sequence numbers and payloads from an input's
// description, leaving what identifies the handler: "client call Inc".
func stripSeqs(input string) string {
	var parts []string
	for _, p := range strings.Split(input, "; ") {
		f := strings.Fields(p)
		if len(f) > 0 {
			f[0], _, _ = strings.Cut(f[0], ":")
		}
		if len(f) > 3 {
			f = f[:3]
		}
		parts = append(parts, strings.Join(f, " "))
	}
	return strings.Join(parts, "; ")
}
