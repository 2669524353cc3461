package hoptrace

import "testing"

// TestBreakdown feeds a trace of three calls, each two halves of three
// points, with a stray point in the middle call, and checks the cycle, the
// hops' medians and that the broken call is left out.
func TestBreakdown(t *testing.T) {
	var e []event
	now := int64(0)
	add := func(p Point, after int64) { now += after; e = append(e, event{p, now}) }
	call := func(d1, d2, d3, d4, d5, d6 int64, stray bool) {
		add(AppWrite, d6)
		add(LogWrite, d1)
		if stray {
			add(PeerRead, 1)
		}
		add(LogSynced, d2)
		add(AppWrite, d3)
		add(LogWrite, d4)
		add(LogSynced, d5)
	}
	call(1000, 2000, 3000, 4000, 5000, 6000, false)
	call(1000, 9000, 3000, 4000, 5000, 6000, true)
	call(3000, 4000, 3000, 4000, 5000, 8000, false)
	call(2000, 3000, 3000, 4000, 5000, 7000, false)
	add(AppWrite, 6000)
	b := breakdown(e)
	if b.Cycles != 3 || b.Events != len(e) {
		t.Fatalf("cycles %d events %d, want 3 of %d: %+v", b.Cycles, b.Events, len(e), b)
	}
	want := []Hop{{"app writes", "log write", 2}, {"log write", "log synced", 3}, {"log synced", "app writes", 3},
		{"app writes", "log write", 4}, {"log write", "log synced", 5}, {"log synced", "app writes", 6}}
	if len(b.Hops) != len(want) {
		t.Fatalf("hops %+v, want %+v", b.Hops, want)
	}
	for i := range want {
		if b.Hops[i] != want[i] {
			t.Errorf("hop %d: %+v, want %+v", i, b.Hops[i], want[i])
		}
	}
	// The calls' spans, each to the next call's first point: 1+2+3+4+5+6, 3+4+3+4+5+7 and 2+3+3+4+5+6 µs.
	if b.CycleUs != 23 {
		t.Errorf("cycle median %v µs, want 23", b.CycleUs)
	}
}

// TestOff checks that points are dropped while tracing is off.
func TestOff(t *testing.T) {
	Mark(AppWrite)
	Start()
	Mark(AppWrite)
	Mark(LogWrite)
	b := Stop()
	Mark(AppWrite)
	if b.Events != 2 {
		t.Errorf("%d events, want the 2 marked while on", b.Events)
	}
}
