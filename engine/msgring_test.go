package engine

import "testing"

// TestMsgRing: pushes and pops in every interleaving the output buffer
// makes (growth while wrapped included) keep FIFO order, and popped slots
// let go of their messages.
func TestMsgRing(t *testing.T) {
	var r msgRing
	var ref []outMsg
	next := int64(1)
	for step := 0; step < 5000; step++ {
		pushes, pops := step%7, step%5
		for range pushes {
			m := outMsg{seq: next, data: []byte{byte(next)}}
			next++
			r.push(m)
			ref = append(ref, m)
		}
		for range pops {
			if len(ref) == 0 {
				break
			}
			r.pop()
			ref = ref[1:]
		}
		if r.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", step, r.len(), len(ref))
		}
		for i, m := range ref {
			if got := r.at(i); got.seq != m.seq || got.data[0] != m.data[0] {
				t.Fatalf("step %d: at(%d) = seq %d, want %d", step, i, got.seq, m.seq)
			}
		}
	}
	live := 0
	for _, m := range r.buf {
		if m.data != nil {
			live++
		}
	}
	if live != r.len() {
		t.Fatalf("%d slots hold a message, %d are live", live, r.len())
	}
}
