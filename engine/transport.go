package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
)

// Environment variables through which a coordinator tells its app where to
// connect. The names follow AMBROSIA's configuration keys.
const (
	EnvReceivePort = "AMBROSIA_IC_RECEIVE_PORT" // the app sends its messages here
	EnvSendPort    = "AMBROSIA_IC_SEND_PORT"    // the coordinator sends records here
	EnvInstance    = "AMBR_INSTANCE"
)

// AppConn is one app's pair of streams: Recv carries the app's messages to
// the coordinator, Send carries records to the app.
type AppConn struct {
	Recv io.ReadCloser
	Send io.WriteCloser
}

// Close closes both streams.
func (c AppConn) Close() error {
	return errors.Join(c.Recv.Close(), c.Send.Close())
}

// AppListener accepts app connections: over TCP for an app in another
// process, over in-memory pipes for an app hosted in the same process.
type AppListener interface {
	// Accept waits for an app to connect to the receive port and then to
	// the send port.
	Accept(ctx context.Context) (AppConn, error)
	// Env returns the environment an app process needs to find the
	// coordinator.
	Env() []string
	Close() error
}

// TCPListener listens for an app on two loopback ports, each on IPv4 and,
// where the machine has it, IPv6: clients resolve localhost either way.
type TCPListener struct {
	RecvPort, SendPort int
	recv, send         *dualListener
}

// ListenTCP listens on the given ports (0: pick free ones).
func ListenTCP(recvPort, sendPort int) (*TCPListener, error) {
	recv, err := listenDual(recvPort)
	if err != nil {
		return nil, fmt.Errorf("listen for the app (receive port): %w", err)
	}
	send, err := listenDual(sendPort)
	if err != nil {
		recv.Close()
		return nil, fmt.Errorf("listen for the app (send port): %w", err)
	}
	return &TCPListener{RecvPort: recv.port, SendPort: send.port, recv: recv, send: send}, nil
}

// Env implements AppListener.
func (l *TCPListener) Env() []string {
	return []string{EnvReceivePort + "=" + strconv.Itoa(l.RecvPort), EnvSendPort + "=" + strconv.Itoa(l.SendPort)}
}

// Accept implements AppListener.
func (l *TCPListener) Accept(ctx context.Context) (AppConn, error) {
	recv, err := l.recv.accept(ctx)
	if err != nil {
		return AppConn{}, err
	}
	send, err := l.send.accept(ctx)
	if err != nil {
		recv.Close()
		return AppConn{}, err
	}
	return AppConn{Recv: recv, Send: send}, nil
}

// Close implements AppListener.
func (l *TCPListener) Close() error { return errors.Join(l.recv.Close(), l.send.Close()) }

// dualListener is one port on 127.0.0.1 and [::1].
type dualListener struct {
	port  int
	ls    []net.Listener
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func listenDual(port int) (*dualListener, error) {
	l4, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	d := &dualListener{port: l4.Addr().(*net.TCPAddr).Port, ls: []net.Listener{l4}, conns: make(chan net.Conn), done: make(chan struct{})}
	// IPv6 loopback on the same port, when the machine has IPv6.
	if l6, err := net.Listen("tcp6", net.JoinHostPort("::1", strconv.Itoa(d.port))); err == nil {
		d.ls = append(d.ls, l6)
	}
	for _, l := range d.ls {
		go d.serve(l)
	}
	return d, nil
}

func (d *dualListener) serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		select {
		case d.conns <- c:
		case <-d.done:
			c.Close()
			return
		}
	}
}

func (d *dualListener) accept(ctx context.Context) (net.Conn, error) {
	select {
	case c := <-d.conns:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-d.done:
		return nil, net.ErrClosed
	}
}

func (d *dualListener) Close() error {
	var errs []error
	d.once.Do(func() {
		close(d.done)
		for _, l := range d.ls {
			errs = append(errs, l.Close())
		}
	})
	return errors.Join(errs...)
}

// PipeListener connects an app in the same process through in-memory pipes:
// the same bytes as over TCP, without the sockets.
type PipeListener struct {
	conns chan AppConn
	done  chan struct{}
	once  sync.Once
}

// NewPipeListener returns a listener for an in-process app.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan AppConn), done: make(chan struct{})}
}

// Dial connects the app side: toIC carries the app's messages, fromIC the
// coordinator's records.
func (p *PipeListener) Dial(ctx context.Context) (toIC io.WriteCloser, fromIC io.ReadCloser, err error) {
	recvIC, recvApp := net.Pipe()
	sendIC, sendApp := net.Pipe()
	select {
	case p.conns <- AppConn{Recv: recvIC, Send: sendIC}:
		return recvApp, sendApp, nil
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-p.done:
		return nil, nil, net.ErrClosed
	}
}

// Accept implements AppListener.
func (p *PipeListener) Accept(ctx context.Context) (AppConn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-ctx.Done():
		return AppConn{}, ctx.Err()
	case <-p.done:
		return AppConn{}, net.ErrClosed
	}
}

// Env implements AppListener; an in-process app needs none.
func (p *PipeListener) Env() []string { return nil }

// Close implements AppListener.
func (p *PipeListener) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}
