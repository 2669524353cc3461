package engine

import "sync"

// flow is a conversation's backpressure: two byte counts against one
// budget, and the goroutines that wait for them to fall.
//
//   - toApp: input on its way to the app: records handed to the app sender
//     (as they are submitted to the log: they wait there until durable) and
//     not yet written to the app. Above the budget, inbound peer links stop reading
//     (waitInput): their TCP windows fill, and their senders keep the output
//     buffered. A disk slower than the network pushes back the same way.
//   - unacked: output to other instances they have not acknowledged. Above
//     the budget, the app reader stops reading the app (waitOutput): the
//     app's writes wait, which slows it down.
//
// The input gate stays open while the output gate is closed: an app whose
// writes are held does not read either, and if each of two instances held
// the other's input back for that, neither would move again. Then input is
// bounded by the progress of the receivers, not strictly by the budget.
type flow struct {
	budget int64

	mu      sync.Mutex
	toApp   int64
	unacked int64
	changed chan struct{} // closed at a change a waiter may want; nil when no one waits
}

func newFlow(budget int64) *flow { return &flow{budget: budget} }

// wake tells the waiters to look again. Called with f.mu held.
func (f *flow) wake() {
	if f.changed != nil {
		close(f.changed)
		f.changed = nil
	}
}

// addToApp changes the bytes waiting for the app by d.
func (f *flow) addToApp(d int64) {
	f.mu.Lock()
	f.toApp += d
	if d < 0 {
		f.wake()
	}
	f.mu.Unlock()
}

// setUnacked sets the bytes of unacknowledged output.
func (f *flow) setUnacked(n int64) {
	f.mu.Lock()
	if n != f.unacked {
		f.unacked = n
		f.wake()
	}
	f.mu.Unlock()
}

// wait blocks until open reports true (checked with f.mu held) or done is
// closed.
func (f *flow) wait(done <-chan struct{}, open func() bool) {
	for {
		f.mu.Lock()
		if open() {
			f.mu.Unlock()
			return
		}
		if f.changed == nil {
			f.changed = make(chan struct{})
		}
		ch := f.changed
		f.mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return
		}
	}
}

// waitInput blocks an inbound link's reader while the app is over budget
// by itself (see flow).
func (f *flow) waitInput(done <-chan struct{}) {
	f.wait(done, func() bool { return f.toApp <= f.budget || f.unacked > f.budget })
}

// waitOutput blocks the app reader while the app's receivers hold more
// than the budget unacknowledged.
func (f *flow) waitOutput(done <-chan struct{}) {
	f.wait(done, func() bool { return f.unacked <= f.budget })
}

// waitToAppBelow blocks until the bytes waiting for the app are below limit
// or done is closed.
func (f *flow) waitToAppBelow(done <-chan struct{}, limit int64) {
	f.wait(done, func() bool { return f.toApp < limit })
}

// waitToAppBelowFunc is waitToAppBelow of a limit that changes as the
// bytes waiting are written (limit is called with f.mu held).
func (f *flow) waitToAppBelowFunc(done <-chan struct{}, limit func() int64) {
	f.wait(done, func() bool { return f.toApp < limit() })
}
