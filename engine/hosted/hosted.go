// Package hosted runs a Go app and its coordinator in one process: the
// library mode of the architecture. App and coordinator still speak the app
// protocol byte for byte, over in-memory pipes instead of loopback TCP, so an
// app behaves the same hosted or as a separate process under `ambr run`.
//
//	app := accum.New(args, os.Stdout, 1)
//	err := hosted.Run(ctx, func() hosted.App { return app }, engine.Options{Dir: ".ambr/acc", Name: "acc"})
package hosted

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ambr-dev/ambr/engine"
)

// App is what hosted needs of an app: the Go binding's *immortal.App has it.
type App interface {
	Serve(ctx context.Context, toIC io.Writer, fromIC io.Reader) error
	SetName(name string)
}

// Run runs a coordinator for opts (its Listener is replaced by in-memory
// pipes) and an app from newApp against it, until ctx ends or the
// coordinator stops with an error. If the app's Serve fails, a new app from
// newApp is connected and recovers, as a supervisor would restart a process.
func Run(ctx context.Context, newApp func() App, opts engine.Options) error {
	pl := engine.NewPipeListener()
	defer pl.Close()
	opts.Listener = pl
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c, err := engine.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	icErr := make(chan error, 1)
	go func() { icErr <- c.Run(ctx) }()
	for {
		toIC, fromIC, err := pl.Dial(ctx)
		if err != nil {
			cancel()
			if e := <-icErr; e != nil {
				return e
			}
			return nil
		}
		app := newApp()
		app.SetName(opts.Name)
		serveErr := make(chan error, 1)
		go func() {
			err := app.Serve(ctx, toIC, fromIC)
			toIC.Close()
			fromIC.Close()
			serveErr <- err
		}()
		select {
		case err := <-serveErr:
			if ctx.Err() != nil {
				cancel()
				return <-icErr
			}
			opts.Logger.Warn("hosted app stopped; reconnecting", "instance", opts.Name, "reason", err)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		case err := <-icErr:
			toIC.Close()
			fromIC.Close()
			<-serveErr
			if err == nil {
				return nil
			}
			return fmt.Errorf("hosted %s: %w", opts.Name, err)
		}
	}
}
