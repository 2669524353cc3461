package termquery

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// openTerminal opens a pseudo-terminal; the test plays the terminal on
// term, the code under test gets tty.
func openTerminal(t *testing.T) (term, tty *os.File) {
	t.Helper()
	term, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal on this machine: %v", err)
	}
	t.Cleanup(func() { term.Close(); tty.Close() })
	return term, tty
}

// TestBackgroundSilentTerminal: a terminal that never answers yields
// "unknown" (after the timeout), and the question was asked.
func TestBackgroundSilentTerminal(t *testing.T) {
	term, tty := openTerminal(t)
	asked := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(term, buf, len("\x1b]11;?\x1b\\\x1b[6n"))
		asked <- buf[:n]
	}()
	// Background only asks a foreground process's controlling terminal;
	// a pty opened by the test is neither, so it must not ask at all.
	if _, known := Background(tty, Timeout); known {
		t.Fatal("Background knew a background colour from a terminal that is not the controlling one")
	}
	select {
	case q := <-asked:
		t.Fatalf("Background wrote %q to a terminal that is not its controlling terminal", q)
	default:
	}
}

func TestParseAnswers(t *testing.T) {
	for _, c := range []struct {
		in                string
		dark, known, done bool
	}{
		{"", false, false, false},
		{"\x1b]11;rgb:0000/0000/0000\x1b\\", false, false, false}, // waiting for the cursor report
		{"\x1b]11;rgb:0000/0000/0000\x1b\\\x1b[12;1R", true, true, true},
		{"\x1b]11;rgb:ffff/ffff/ffff\x07\x1b[12;1R", false, true, true},
		{"\x1b]11;rgb:fd/f6/e3\x07\x1b[3;40R", false, true, true}, // two hex digits (solarized light)
		{"\x1b]11;rgb:1e1e/1e1e/2e2e\x1b\\\x1b[3;40R", true, true, true},
		{"\x1b[3;40R", false, false, true}, // OSC 11 not supported
		{"\x1b]11;rgb:zz/00/00\x07\x1b[3;40R", false, false, true},
	} {
		dark, known, done := parseAnswers([]byte(c.in))
		if dark != c.dark || known != c.known || done != c.done {
			t.Errorf("parseAnswers(%q) = dark %v known %v done %v, want %v %v %v", c.in, dark, known, done, c.dark, c.known, c.done)
		}
	}
}

// TestMain doubles as the process that asks: under a pseudo-terminal that
// is its controlling terminal (TestBackgroundAsks), it prints what
// Background found.
func TestMain(m *testing.M) {
	if os.Getenv("TERMQUERY_ASK") == "1" {
		dark, known := Background(os.Stdout, Timeout)
		fmt.Printf("\nresult dark=%v known=%v\n", dark, known)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBackgroundAsks runs a process on a pseudo-terminal that is its
// controlling terminal, plays the terminal, and checks what the process
// concludes: a light background, a dark one, a terminal that answers only
// the cursor report, and one that never answers.
func TestBackgroundAsks(t *testing.T) {
	for _, c := range []struct {
		name, answer, want string
	}{
		{"light", "\x1b]11;rgb:ffff/ffff/ffff\x1b\\\x1b[1;1R", "dark=false known=true"},
		{"dark", "\x1b]11;rgb:0000/0000/0000\x07\x1b[1;1R", "dark=true known=true"},
		{"no OSC 11", "\x1b[1;1R", "dark=false known=false"},
		{"silent", "", "dark=false known=false"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "TERMQUERY_ASK=1")
			term, err := pty.Start(cmd)
			if err != nil {
				t.Skipf("no pseudo-terminal on this machine: %v", err)
			}
			defer term.Close()
			r := bufio.NewReader(term)
			query := "\x1b]11;?\x1b\\\x1b[6n"
			var seen strings.Builder
			for !strings.Contains(seen.String(), query) {
				b, err := r.ReadByte()
				if err != nil {
					t.Fatalf("the process did not ask the terminal (read %q: %v)", seen.String(), err)
				}
				seen.WriteByte(b)
			}
			if c.answer != "" {
				if _, err := io.WriteString(term, c.answer); err != nil {
					t.Fatal(err)
				}
			}
			var result string
			for {
				line, err := r.ReadString('\n')
				if strings.HasPrefix(line, "result ") {
					result = strings.TrimSpace(strings.TrimPrefix(line, "result "))
					break
				}
				if err != nil {
					t.Fatalf("no result from the process (%v)", err)
				}
			}
			cmd.Wait()
			if result != c.want {
				t.Errorf("the process found %q, want %q", result, c.want)
			}
		})
	}
}
