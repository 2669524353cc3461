package immortal

import (
	"context"
	"errors"
	"time"
)

// Durable timers fire through impulses: when a timer in the state is due by
// the wall clock, the timer loop sends the impulse timerMethod with its id,
// which the coordinator logs; the handler then completes the timer's step.
// Replay handles the logged impulse again and never makes one, so a timer
// fires once, also across crashes. An impulse lost in a crash is sent again
// (after timerResend, or by the next run's loop); a duplicate finds the
// timer gone and does nothing.

const (
	timerResend  = time.Second // send a due timer's impulse again after this
	timerMaxWait = time.Second // look at the timers at least this often
	// clockLag is how far the durable clock may fall behind the wall clock
	// while orchestrations are in flight before a clock impulse (logged)
	// moves it on: the bound on how stale Orch.Now, and so the start of a
	// timeout, can be.
	clockLag = 100 * time.Millisecond
)

// timerLoop runs while Serve does, for an app with orchestrations.
func (a *App[S]) timerLoop(ctx context.Context) {
	sent := map[string]time.Time{}
	var ticked time.Time
	for {
		now := a.clock()
		wait := timerMaxWait
		var due []string
		tick := false
		a.mu.Lock()
		if d := a.bind.dur; d != nil {
			if len(d.Orchestrations) > 0 {
				if now.Sub(d.Clock) >= clockLag && now.Sub(ticked) >= clockLag {
					tick = true
				}
				wait = min(wait, clockLag)
			}
			for id, t := range d.Timers {
				if t.Due.After(now) {
					wait = min(wait, t.Due.Sub(now))
					continue
				}
				if last, ok := sent[id]; ok && now.Sub(last) < timerResend {
					wait = min(wait, timerResend-now.Sub(last))
					continue
				}
				due = append(due, id)
			}
			for id := range sent {
				if _, ok := d.Timers[id]; !ok {
					delete(sent, id)
				}
			}
		}
		a.mu.Unlock()
		if tick {
			if err := a.Impulse(clockMethod, nil); err == nil {
				ticked = now
			}
		}
		for _, id := range due {
			err := a.fireIfPending(id)
			switch {
			case err == nil:
				sent[id] = now
			case errors.Is(err, ErrNotPrimary):
				wait = min(wait, 20*time.Millisecond) // primary soon, or Serve ends
			default:
				a.log.Error("immortal: fire timer", "timer", id, "error", err)
			}
		}
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-a.durable.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// stopOrchestrations ends the goroutines of the orchestrations' bodies when
// Serve returns; a later Serve re-runs them from their history.
func (a *App[S]) stopOrchestrations() {
	a.mu.Lock()
	defer a.mu.Unlock()
	abortOrchestrations(a.bind.dur)
}

// fireIfPending sends the impulse of timer id if it is still pending. It
// looks and sends under the state lock: once primary the app has replayed
// its log, so a timer pending then was not fired by a logged impulse.
func (a *App[S]) fireIfPending(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d := a.bind.dur; d == nil || d.Timers[id] == nil {
		return nil
	}
	return a.Impulse(timerMethod, id)
}
