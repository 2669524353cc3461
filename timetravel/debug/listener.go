package debug

import (
	"net"
	"sync/atomic"
	"time"
)

// acceptListener is the headless server's listener. Delve's accept loop
// panics on any Accept error it did not cause by stopping the server, so
// this listener retries failed Accepts (EMFILE, ECONNABORTED…) with a
// backoff and only fails once it is closed.
type acceptListener struct {
	net.Listener
	closed atomic.Bool
}

func (l *acceptListener) Accept() (net.Conn, error) {
	const maxDelay = time.Second
	delay := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err == nil || l.closed.Load() {
			return c, err
		}
		time.Sleep(delay)
		delay = min(2*delay, maxDelay)
	}
}

func (l *acceptListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}
