package supervise

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/ambr-dev/ambr/engine/connowner"
)

// Child runs the app binary and restarts it whenever it exits, until ctx
// ends or the app is in a crash loop. The child is killed with the
// supervisor (Pdeathsig on Linux), so kill -9 of the supervisor is the
// machine failure the architecture expects.
//
// Restarts back off (InitialBackoff, doubling while starts in a row make no
// progress, up to MaxBackoff). Run gives up with a *CrashLoopError when the
// app exits Limits.ExitsBeforeAttach times in a row before attaching, or
// dies Limits.DeathsOnRecord times in a row handling the same record; the
// coordinator's hooks tell it through Attached and Gone.
type Child struct {
	Path   string
	Args   []string
	Env    []string
	Stdout io.Writer
	Stderr io.Writer
	Limits Limits
	// Describe names a record for a crash-loop message; optional.
	Describe func(seq int64) string
	// OnStart is called with each new child's pid; OnExit with how it
	// ended and how long until the next start, or with the crash loop that
	// ends the supervision.
	OnStart func(pid int)
	OnExit  func(run AppRun, next time.Duration, loop *CrashLoopError)

	mu  sync.Mutex
	cur *childStart
	// trial says Path is on trial (a live upgrade): a refusal of the
	// instance's state by a start of it does not end the supervision.
	trial bool
	proc  *os.Process // of the current start
	path  string      // of the current start
}

// Switch makes the next start run path; with trial, a refusal of the
// instance's state by it does not end the supervision (an upgrade being
// tried). The current app is killed (SIGKILL, which does not count toward a
// crash loop) unless it already runs path, so the switch happens now.
func (c *Child) Switch(path string, trial bool) {
	c.mu.Lock()
	c.Path, c.trial = path, trial
	p, cur := c.proc, c.path
	c.mu.Unlock()
	if p != nil && cur != path {
		_ = p.Kill()
	}
}

// EndTrial ends the trial Switch started: the path is kept.
func (c *Child) EndTrial() {
	c.mu.Lock()
	c.trial = false
	c.mu.Unlock()
}

// childStart is what the coordinator told about the current start.
type childStart struct {
	pid      int
	attached bool
	appPid   int // the process that attached: the child, or one of its own
	record   int64
	gone     chan struct{} // closed by Gone
}

// goneWait bounds how long an ended start waits for the coordinator's
// account of it: the coordinator sees the connection close as the process
// exits, so it comes at once; the bound covers a conversation that ended
// differently.
const goneWait = 2 * time.Second

// Attached tells the supervisor that process pid attached as the app: the
// child, or a process it started (an app behind a wrapper script).
func (c *Child) Attached(pid int) {
	c.mu.Lock()
	cur := c.cur
	c.mu.Unlock()
	// pid 0: the platform cannot tell; the child is the only app there is.
	if cur == nil || (pid != 0 && pid != cur.pid && !connowner.IsDescendant(pid, cur.pid)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cur.attached, cur.appPid = true, pid
}

// Gone tells the supervisor that the conversation with process pid ended,
// delivered being the newest record handed to it.
func (c *Child) Gone(pid int, delivered int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.cur; s != nil && s.attached && s.appPid == pid {
		select {
		case <-s.gone:
		default:
			s.record = delivered
			close(s.gone)
		}
	}
}

// afterStart, if set (tests), runs right after each start: a supervisor
// slow to get there.
var afterStart func()

// Run supervises until ctx ends (then it stops the child: SIGTERM, then
// SIGKILL after a grace period, and returns nil) or the app is in a crash
// loop (then it returns a *CrashLoopError).
func (c *Child) Run(ctx context.Context) error {
	loop := &CrashLoop{Limits: c.Limits, Describe: c.Describe}
	stderr := newTailWriter(c.Stderr)
	for ctx.Err() == nil {
		c.mu.Lock()
		path, onTrial := c.Path, c.trial
		c.mu.Unlock()
		cmd := exec.Command(path, c.Args...)
		cmd.Env = append(os.Environ(), c.Env...)
		cmd.Stdout, cmd.Stderr = c.Stdout, stderr
		cmd.SysProcAttr = childAttr()
		// A grandchild that keeps the app's stderr open must not hold up
		// the restart.
		cmd.WaitDelay = time.Second
		// Only this start's lines: forgotten before it starts (found in CI:
		// forgotten after, an app that wrote its reason and exited first
		// was told to have said nothing).
		stderr.take()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start app %s: %w", path, err)
		}
		if afterStart != nil {
			afterStart()
		}
		start := &childStart{pid: cmd.Process.Pid, gone: make(chan struct{})}
		c.mu.Lock()
		c.cur, c.proc, c.path = start, cmd.Process, path
		if c.Path != path {
			// Switched while this one started: the switch wins.
			_ = cmd.Process.Kill()
		}
		c.mu.Unlock()
		if c.OnStart != nil {
			c.OnStart(start.pid)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			c.mu.Lock()
			attached := start.attached
			c.mu.Unlock()
			if attached {
				select {
				case <-start.gone:
				case <-time.After(goneWait):
				case <-ctx.Done():
				}
			}
			c.mu.Lock()
			run := AppRun{Attached: start.attached, Record: start.record, Exit: err, Killed: killed(err)}
			run.Stderr, run.Panic = stderr.take()
			c.mu.Unlock()
			if ctx.Err() != nil {
				return nil
			}
			next, loopErr := loop.Ended(run)
			if loopErr != nil && loopErr.Refused && onTrial {
				// The build on trial refused the state: the upgrade
				// fails, its owner switches back.
				next, loopErr = InitialBackoff, nil
			}
			if c.OnExit != nil {
				c.OnExit(run, next, loopErr)
			}
			if loopErr != nil {
				return loopErr
			}
			select {
			case <-time.After(next):
			case <-ctx.Done():
			}
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

// killed reports whether the process ended by SIGKILL.
func killed(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}
