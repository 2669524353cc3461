package immortal

import (
	"context"
	"errors"
	"time"
)

// Every is an impulse source: every interval it calls next with a snapshot
// of the app's state and sends the impulse next asks for (method "" sends
// nothing this time). It stops when next says done, when ctx ends, or when an
// impulse fails for a reason other than the app not being primary (those are
// simply asked for again later).
//
// An impulse sent just before a crash may never be logged, so a source must
// be able to send it again: next decides from the state what is still
// needed, and the handler ignores what it has already counted. This is how
// the samples' tickers and pacers work.
func Every[S any](ctx context.Context, app *App[S], interval time.Duration, next func(s S) (method string, args any, done bool)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s, ok := app.State()
		if !ok {
			continue
		}
		method, args, done := next(s)
		if done {
			return
		}
		if method == "" {
			continue
		}
		if err := app.Impulse(method, args); err != nil && !errors.Is(err, ErrNotPrimary) {
			return
		}
	}
}
