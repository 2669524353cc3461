package supervise

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// AppRun is one start of the app, as the supervisor saw it end.
type AppRun struct {
	// Attached says the app connected both its streams to the coordinator.
	Attached bool
	// Record is the newest log record handed to the app before it died (0:
	// none): the one it was handling, or replaying, when it died.
	Record int64
	// Exit is how the process ended (cmd.Wait's error; nil for status 0).
	Exit error
	// Killed says it was SIGKILLed: by hand, `ambr kill --app`, a test, or
	// the OOM killer. A kill comes from outside and is not the app's crash.
	Killed bool
	// Stderr is the app's last lines of standard error; Panic its first
	// Go panic or fatal error line, if any.
	Stderr []string
	Panic  string
}

// Limits of a crash loop: how many consecutive times the app may fail the
// same way before the supervisor gives up.
type Limits struct {
	// ExitsBeforeAttach: starts in a row that ended before the app
	// attached (default 5).
	ExitsBeforeAttach int
	// DeathsOnRecord: deaths in a row while handling the same record
	// (default 3).
	DeathsOnRecord int
}

// Backoff between restarts: InitialBackoff after a start that made
// progress, doubling with every start in a row that did not, up to
// MaxBackoff — the shape of a supervisor's crash-loop backoff.
const (
	InitialBackoff = 100 * time.Millisecond
	MaxBackoff     = 30 * time.Second
)

// CrashLoopError says why the supervisor stopped restarting the app.
type CrashLoopError struct {
	Message string
	// Refused says the app refused to run on the instance at all (its
	// build cannot read the instance's state): not a crash, a wrong build.
	Refused bool
}

// ExitRefused is the exit status with which an app says it cannot run on
// the instance's state (EX_CONFIG; the Go binding's
// immortal.ExitIncompatibleState): the supervisor stops at once, without a
// restart.
const ExitRefused = 78

func (e *CrashLoopError) Error() string { return e.Message }

// CrashLoop tells a crash loop from an app that merely died: it counts
// starts in a row that failed the same way. It is pure bookkeeping, fed by
// the supervisor one ended start at a time.
type CrashLoop struct {
	Limits Limits
	// Describe names a record for the message ("call Withdraw from
	// transfers"); optional.
	Describe func(seq int64) string

	beforeAttach int   // starts in a row that ended before attaching
	onRecord     int   // deaths in a row on record
	record       int64 // the record of the last death
	stalled      int   // starts in a row without progress, for the backoff
}

// Ended records how a start ended. It returns the wait before the next
// start, or a *CrashLoopError when the app is in a crash loop.
func (d *CrashLoop) Ended(r AppRun) (time.Duration, *CrashLoopError) {
	limits := d.Limits
	if limits.ExitsBeforeAttach <= 0 {
		limits.ExitsBeforeAttach = 5
	}
	if limits.DeathsOnRecord <= 0 {
		limits.DeathsOnRecord = 3
	}
	var ee *exec.ExitError
	switch {
	case r.Killed:
		// From outside: neither progress nor a crash.
		return InitialBackoff, nil
	case errors.As(r.Exit, &ee) && ee.ExitCode() == ExitRefused:
		return 0, &CrashLoopError{Message: "the app refused the instance: " + lastWords(r, ""), Refused: true}
	case !r.Attached:
		d.beforeAttach++
		d.stalled++
		if d.beforeAttach >= limits.ExitsBeforeAttach {
			return 0, &CrashLoopError{Message: fmt.Sprintf("the app exited %d times before attaching (%s)", d.beforeAttach, lastWords(r, "last stderr: "))}
		}
	case r.Record > 0 && r.Record == d.record:
		d.beforeAttach = 0
		d.onRecord++
		d.stalled++
		if d.onRecord >= limits.DeathsOnRecord {
			what := ""
			if d.Describe != nil {
				if s := d.Describe(r.Record); s != "" {
					what = " (" + s + ")"
				}
			}
			return 0, &CrashLoopError{Message: fmt.Sprintf("the app died handling record %d%s %d times: %s", r.Record, what, d.onRecord, lastWords(r, ""))}
		}
	default:
		// Attached, and died somewhere new: progress.
		d.beforeAttach, d.stalled = 0, 0
		d.record, d.onRecord = r.Record, 0
		if r.Record > 0 {
			d.onRecord = 1
		}
	}
	wait := InitialBackoff
	for i := 1; i < d.stalled && wait < MaxBackoff; i++ {
		wait *= 2
	}
	return min(wait, MaxBackoff), nil
}

// lastWords is what the app said last: a Go panic or fatal error line if
// there is one among its last stderr lines, else the last line, else how
// it exited.
func lastWords(r AppRun, prefix string) string {
	if r.Panic != "" {
		return prefix + r.Panic
	}
	for i := len(r.Stderr) - 1; i >= 0; i-- {
		if l := r.Stderr[i]; strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") {
			return prefix + l
		}
	}
	for i := len(r.Stderr) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(r.Stderr[i]); l != "" {
			return prefix + l
		}
	}
	status := "exit status 0"
	if r.Exit != nil {
		status = r.Exit.Error()
	}
	return "no stderr output; " + status
}
