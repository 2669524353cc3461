package supervise

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Child runs the app binary and restarts it whenever it exits, until ctx
// ends. The child is killed with the supervisor (Pdeathsig on Linux), so
// kill -9 of the supervisor is the machine failure the architecture expects.
type Child struct {
	Path   string
	Args   []string
	Env    []string
	Stdout io.Writer
	Stderr io.Writer
	// OnStart is called with each new child's pid; OnExit with how it ended.
	OnStart func(pid int)
	OnExit  func(err error)
}

// Run supervises until ctx ends; then it stops the child (SIGTERM, then
// SIGKILL after a grace period).
func (c *Child) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		cmd := exec.Command(c.Path, c.Args...)
		cmd.Env = append(os.Environ(), c.Env...)
		cmd.Stdout, cmd.Stderr = c.Stdout, c.Stderr
		cmd.SysProcAttr = childAttr()
		started := time.Now()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start app %s: %w", c.Path, err)
		}
		if c.OnStart != nil {
			c.OnStart(cmd.Process.Pid)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if c.OnExit != nil {
				c.OnExit(err)
			}
			// A child that ran a while restarts at once; a crash loop
			// backs off up to two seconds.
			if time.Since(started) > 5*time.Second {
				backoff = 100 * time.Millisecond
			}
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, 2*time.Second)
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}
	}
	return nil
}
