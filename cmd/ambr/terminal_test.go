package main

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// TestCommandsDoNotQueryTheTerminal runs commands on a pseudo-terminal that
// never answers, as `script` or a serial console is: they must not ask it
// anything (Bubble Tea's init used to, and waited 5 s for the answer).
func TestCommandsDoNotQueryTheTerminal(t *testing.T) {
	ambr, _ := binaries(t)
	home := t.TempDir()
	for _, args := range [][]string{{"ls"}, {"version"}, {"ls", "--json"}} {
		cmd := exec.Command(ambr, args...)
		cmd.Env = append(os.Environ(), "AMBR_HOME="+home, "TERM=xterm-256color")
		term, err := pty.Start(cmd)
		if err != nil {
			t.Skipf("no pseudo-terminal on this machine: %v", err)
		}
		out, _ := io.ReadAll(term) // EIO once the command has exited
		term.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("ambr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		for _, q := range []string{"\x1b]11;?", "\x1b]10;?", "\x1b[6n"} {
			if strings.Contains(string(out), q) {
				t.Errorf("ambr %s asked the terminal %q:\n%q", strings.Join(args, " "), q, out)
			}
		}
	}
}

// TestTUIOnSilentTerminal: ambr tui asks the terminal for its background
// once, and on a terminal that never answers it gives up and comes up
// anyway (termquery.Timeout), then quits on q.
func TestTUIOnSilentTerminal(t *testing.T) {
	ambr, _ := binaries(t)
	cmd := exec.Command(ambr, "tui")
	cmd.Env = append(os.Environ(), "AMBR_HOME="+t.TempDir(), "TERM=xterm-256color")
	term, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 24, Cols: 80})
	if err != nil {
		t.Skipf("no pseudo-terminal on this machine: %v", err)
	}
	defer term.Close()
	var seen strings.Builder
	buf := make([]byte, 4096)
	for !strings.Contains(seen.String(), "no instances under") {
		n, err := term.Read(buf)
		seen.Write(buf[:n])
		if err != nil {
			t.Fatalf("ambr tui did not come up on a silent terminal (%v):\n%q", err, seen.String())
		}
	}
	if c := strings.Count(seen.String(), "\x1b]11;?"); c != 1 {
		t.Errorf("ambr tui asked for the background %d times, want once:\n%q", c, seen.String())
	}
	if _, err := term.Write([]byte("q")); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, term)
	if err := cmd.Wait(); err != nil {
		t.Errorf("ambr tui after q: %v", err)
	}
}
