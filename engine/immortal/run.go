package immortal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Environment variables Run reads. The two ports are AMBROSIA's names, so a
// coordinator that starts AMBROSIA apps can start ambr apps too.
const (
	// EnvReceivePort is the coordinator's receive port: the app connects to
	// it first and sends its messages there.
	EnvReceivePort = "AMBROSIA_IC_RECEIVE_PORT"
	// EnvSendPort is the coordinator's send port: the app connects to it
	// second and reads log records from it.
	EnvSendPort = "AMBROSIA_IC_SEND_PORT"
	// EnvInstance names the instance (App.SetName).
	EnvInstance = "AMBR_INSTANCE"
)

// connectTimeout is how long Run keeps trying to reach a coordinator that is
// not up yet.
const connectTimeout = 10 * time.Second

// Run runs the app as a separate process next to its coordinator. It reads
// the ports from EnvReceivePort and EnvSendPort and the instance name from
// EnvInstance (keeping the current name if it is unset), connects to the
// receive port on localhost, then to the send port, retrying for about ten
// seconds while the coordinator is not up, and then Serves over the two
// connections. It returns nil when the coordinator closes the connection or
// ctx is canceled.
func (a *App[S]) Run(ctx context.Context) error {
	recvPort, sendPort := os.Getenv(EnvReceivePort), os.Getenv(EnvSendPort)
	if recvPort == "" || sendPort == "" {
		return fmt.Errorf("immortal: %s and %s must name the coordinator's ports; its coordinator sets them when it starts the app", EnvReceivePort, EnvSendPort)
	}
	if name := os.Getenv(EnvInstance); name != "" {
		a.SetName(name)
	}
	deadline := time.Now().Add(connectTimeout)
	toIC, err := dialIC(ctx, recvPort, deadline)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	defer toIC.Close()
	fromIC, err := dialIC(ctx, sendPort, deadline)
	if err != nil {
		return ignoreCanceled(ctx, err)
	}
	defer fromIC.Close()
	return a.Serve(ctx, toIC, fromIC)
}

// dialIC connects to the coordinator's port on localhost, retrying with
// backoff until deadline.
func dialIC(ctx context.Context, port string, deadline time.Time) (net.Conn, error) {
	addr := net.JoinHostPort("localhost", port)
	backoff := 20 * time.Millisecond
	for {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().Add(backoff).After(deadline) {
			return nil, fmt.Errorf("immortal: connect to coordinator at %s: %w", addr, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func ignoreCanceled(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

// Main runs app as the whole program: Run until the coordinator closes the
// connection or the process gets SIGINT or SIGTERM; on an error it prints it
// and exits with status 1.
//
//	func main() {
//		app := immortal.New(func() Counter { return Counter{} })
//		immortal.Handle(app, "add", add)
//		immortal.Main(app)
//	}
func Main[S any](app *App[S]) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := app.Run(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s (instance %s): %v\n", filepath.Base(os.Args[0]), app.Name(), err)
		var incompatible *IncompatibleStateError
		if errors.As(err, &incompatible) {
			os.Exit(ExitIncompatibleState)
		}
		os.Exit(1)
	}
}
