package supervise

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestCrashLoopExitsBeforeAttach(t *testing.T) {
	d := &CrashLoop{}
	var waits []time.Duration
	for i := 1; i <= 5; i++ {
		wait, err := d.Ended(AppRun{Exit: errors.New("exit status 1"), Stderr: []string{"starting", "config.yaml: no such file"}})
		if i < 5 {
			if err != nil {
				t.Fatalf("start %d: gave up early: %v", i, err)
			}
			waits = append(waits, wait)
			continue
		}
		want := "the app exited 5 times before attaching (last stderr: config.yaml: no such file)"
		if err == nil || err.Error() != want {
			t.Fatalf("start 5: %v, want %q", err, want)
		}
	}
	if want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}; fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("backoff %v, want %v", waits, want)
	}
}

func TestCrashLoopSilentExit(t *testing.T) {
	d := &CrashLoop{Limits: Limits{ExitsBeforeAttach: 2}}
	d.Ended(AppRun{})
	_, err := d.Ended(AppRun{})
	if want := "the app exited 2 times before attaching (no stderr output; exit status 0)"; err == nil || err.Error() != want {
		t.Fatalf("%v, want %q", err, want)
	}
}

func TestCrashLoopSameRecord(t *testing.T) {
	d := &CrashLoop{Describe: func(seq int64) string { return fmt.Sprintf("call Withdraw from transfers #%d", seq) }}
	panicked := []string{"panic: insufficient funds", "", "goroutine 1 [running]:", "main.withdraw(...)", "\t/src/main.go:12 +0x1d"}
	// Two deaths elsewhere, then three on record 812.
	for _, r := range []int64{700, 811, 812, 812} {
		if _, err := d.Ended(AppRun{Attached: true, Record: r, Stderr: panicked}); err != nil {
			t.Fatalf("record %d: gave up early: %v", r, err)
		}
	}
	_, err := d.Ended(AppRun{Attached: true, Record: 812, Stderr: panicked})
	want := "the app died handling record 812 (call Withdraw from transfers #812) 3 times: panic: insufficient funds"
	var loop *CrashLoopError
	if !errors.As(err, &loop) || err.Error() != want {
		t.Fatalf("%v, want %q", err, want)
	}
}

// SIGKILLs come from outside (tests, ambr kill, an operator): any number
// of them in a row is not a crash loop, nor do they break a count.
func TestCrashLoopKillsDoNotCount(t *testing.T) {
	d := &CrashLoop{}
	for i := 0; i < 50; i++ {
		if wait, err := d.Ended(AppRun{Killed: true, Attached: i%2 == 0, Record: 9}); err != nil || wait != InitialBackoff {
			t.Fatalf("kill %d: wait %v, %v", i, wait, err)
		}
	}
	d.Ended(AppRun{Attached: true, Record: 9})
	d.Ended(AppRun{Killed: true})
	d.Ended(AppRun{Attached: true, Record: 9})
	if _, err := d.Ended(AppRun{Attached: true, Record: 9}); err == nil || !strings.Contains(err.Error(), "record 9 3 times") {
		t.Fatalf("a kill in between reset the count: %v", err)
	}
}

// Progress resets everything: an app that attaches and dies on ever new
// records is restarted after the initial backoff, for ever.
func TestCrashLoopProgressResets(t *testing.T) {
	d := &CrashLoop{}
	d.Ended(AppRun{})
	d.Ended(AppRun{})
	for r := int64(1); r < 100; r++ {
		wait, err := d.Ended(AppRun{Attached: true, Record: r})
		if err != nil || wait != InitialBackoff {
			t.Fatalf("record %d: wait %v, %v", r, wait, err)
		}
	}
	// The backoff is capped.
	for i := 0; i < 3; i++ {
		d.Ended(AppRun{})
	}
	d.Limits.ExitsBeforeAttach = 1000
	var wait time.Duration
	for i := 0; i < 20; i++ {
		wait, _ = d.Ended(AppRun{})
	}
	if wait != MaxBackoff {
		t.Fatalf("backoff after 23 failed starts %v, want the cap %v", wait, MaxBackoff)
	}
}

func TestTailWriterKeepsLastLines(t *testing.T) {
	var all strings.Builder
	w := newTailWriter(&all)
	fmt.Fprintf(w, "app (instance server): immortal: record 4: message 0: handler Inc panicked: boom\npanic: boom [recovered]\n\ngoroutine 1 [running]:\n")
	for i := 0; i < 30; i++ {
		fmt.Fprintf(w, "line %d\n", i)
	}
	w.Write([]byte("unfinished " + strings.Repeat("x", 2*tailLineMax)))
	lines, panicLine := w.take()
	if len(lines) != tailLines+1 || lines[0] != "line 10" || lines[tailLines-1] != "line 29" || len(lines[tailLines]) != tailLineMax {
		t.Fatalf("kept %d lines: first %q, last but one %q, last %d bytes", len(lines), lines[0], lines[len(lines)-2], len(lines[len(lines)-1]))
	}
	if panicLine != "panic: boom" {
		t.Fatalf("panic line %q, want the one the stack pushed out", panicLine)
	}
	if !strings.HasPrefix(all.String(), "app (instance server)") || len(all.String()) < 2*tailLineMax {
		t.Fatal("the tail writer did not pass everything on")
	}
	if again, p := w.take(); len(again) != 0 || p != "" {
		t.Fatalf("take did not forget: %q %q", again, p)
	}
}

// TestCrashLoopRefused: an app that exits with ExitRefused (its build
// cannot read the instance's state) stops the supervisor at once, marked
// as a refusal rather than a crash.
func TestCrashLoopRefused(t *testing.T) {
	err := exec.Command("sh", "-c", "exit 78").Run()
	d := &CrashLoop{}
	_, loop := d.Ended(AppRun{Attached: true, Exit: err, Stderr: []string{"app: the instance's checkpoint holds a state of type a.A, but this build's state is b.B"}})
	if loop == nil || !loop.Refused || !strings.Contains(loop.Error(), "refused the instance: app: the instance's checkpoint holds a state of type a.A") {
		t.Fatalf("exit 78: %+v", loop)
	}
	err = exec.Command("sh", "-c", "exit 77").Run()
	if _, loop := d.Ended(AppRun{Attached: true, Exit: err}); loop != nil {
		t.Fatalf("exit 77 stopped the supervisor: %v", loop)
	}
}

// TestLastWordsOfAQuickExit (found in CI): an app that writes its reason
// and exits before the supervisor gets past starting it is still quoted.
func TestLastWordsOfAQuickExit(t *testing.T) {
	afterStart = func() { time.Sleep(200 * time.Millisecond) }
	t.Cleanup(func() { afterStart = nil })
	c := &Child{Path: "sh", Args: []string{"-c", "echo 'config.yaml: no such file' >&2; exit 3"}, Limits: Limits{ExitsBeforeAttach: 2}}
	err := c.Run(context.Background())
	var loop *CrashLoopError
	if !errors.As(err, &loop) || !strings.Contains(loop.Message, "config.yaml: no such file") {
		t.Fatalf("Run: %v; want a crash loop quoting the app's last line", err)
	}
}
