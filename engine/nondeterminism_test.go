package engine

import (
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// TestNondeterminismWatchIsBounded (found in review): a recovery that
// streams its log checks the app's output only once the whole log is read,
// so the records the watch keeps to name a mismatch's input are bounded by
// bytes; a mismatch whose record was let go says so rather than naming
// another record.
func TestNondeterminismWatchIsBounded(t *testing.T) {
	var w nondeterminismWatch
	payload := make([]byte, 1<<20)
	const records = 100
	for seq := int64(1); seq <= records; seq++ {
		msg := logfmt.AppendMessage(nil, logfmt.TypeRPC, payload)
		wire := logfmt.AppendWireRecord(nil, 1, seq, msg)
		w.replayed(&logfmt.Record{Seq: seq, Messages: msg}, wire)
	}
	if w.recentBytes > maxRecentBytes || len(w.recent) > maxRecentBytes/(1<<20) {
		t.Fatalf("the watch keeps %d records, %d bytes; bound %d bytes", len(w.recent), w.recentBytes, maxRecentBytes)
	}
	if w.recent[len(w.recent)-1].Seq != records {
		t.Fatalf("the newest record kept is %d, want %d", w.recent[len(w.recent)-1].Seq, records)
	}
	_, text := w.mismatch(10, 3, 1, 2, 3, false)
	if strings.Contains(text, "replaying record") {
		t.Fatalf("a mismatch at a record let go names one: %s", text)
	}
	_, text = w.mismatch(records, 3, 1, 2, 3, false)
	if !strings.Contains(text, "replaying record 99 ") {
		t.Fatalf("a mismatch at record %d does not name record 99: %s", records, text)
	}
	w.matched(records, 3)
	if len(w.recent) != 2 || w.recent[0].Seq != records-1 {
		t.Fatalf("after the last point matched: %d records kept from %d", len(w.recent), w.recent[0].Seq)
	}
}
