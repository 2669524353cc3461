package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/supervise"
)

// TestRunFile runs the counter's server and client from one ambr.yaml under
// one `ambr run -f`, SIGKILLs that process mid-way (a machine failure for
// both), runs the same command again, and checks the exact outcome; then
// Ctrl-C stops both cleanly, and every output line names its immortal.
func TestRunFile(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	const k = 30
	home, work := t.TempDir(), t.TempDir()
	// Relative app paths are relative to the file's directory.
	for name, bin := range map[string]string{"server": counterBins.server, "client": counterBins.client} {
		if err := os.Symlink(bin, filepath.Join(work, name)); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`immortals:
  - name: server
    app: ./server
  - name: client
    app: ./client
    args: [--server, server, --count, "%d", --interval, 5ms]
`, k)
	file := filepath.Join(work, "ambr.yaml")
	if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	out := &syncBuffer{}
	start := func() (*exec.Cmd, chan error) {
		cmd := exec.Command(builtBins.ambr, "--home", home, "run", "-f", file)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		return cmd, done
	}
	server := newInst(t, home, "server", counterBins.server)
	client := newInst(t, home, "client", counterBins.client)
	server.out, client.out = out, out

	cmd, done := start()
	progress(t, server, k/3)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	cmd, done = start()
	checkExact(t, waitClient(t, client, server).Results, k)
	checkServerLog(t, server, map[string]int{"client": k})

	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("ambr run -f after Ctrl-C: %v (want exit 0)\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("ambr run -f did not stop on Ctrl-C\n%s", out.String())
	}
	for _, name := range []string{"server", "client"} {
		if _, running := supervise.ReadRunStatus(filepath.Join(home, name)); running {
			t.Errorf("%s still has a RUN status after Ctrl-C", name)
		}
	}
	text := out.String()
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "server | ") && !strings.HasPrefix(line, "client | ") {
			t.Errorf("line without an instance prefix: %q", line)
		}
	}
	for _, want := range []string{"client | done: 30 results", "server | level=INFO msg=stopped", "client | level=INFO msg=stopped"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
