package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// treeSums maps each file under dir (but the run status and lock, which
// say who runs the instance, not what it holds) to its SHA-256.
func treeSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	sums := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if n := d.Name(); n == "RUN" || n == "LOCK" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		rel, _ := filepath.Rel(dir, p)
		sums[rel] = hex.EncodeToString(h[:])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return sums
}

// TestWrongBuildRefused: an instance started with a build whose state has
// another type (here the counter client's binary under the server's name,
// as a careless operator would) is refused before anything is written:
// `ambr run` exits 2 naming both types, and the instance's files are
// byte-identical afterwards. The right build then recovers it.
func TestWrongBuildRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	server := recordCounter(t, 10)
	before := treeSums(t, server.dir())
	cmd := exec.Command(builtBins.ambr, "--home", server.home, "run", counterBins.client, "--name", "server", "--", "--server", "nobody", "--count", "1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("ambr run with the wrong build: %v, want exit 2\n%s", err, out)
	}
	for _, want := range []string{"the app refused the instance", "counter.ServerState", "counter.ClientState"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	t.Logf("ambr run said:\n%s", out)
	after := treeSums(t, server.dir())
	for f, sum := range before {
		if after[f] != sum {
			t.Errorf("%s changed (or vanished) under the refused build", f)
		}
	}
	for f := range after {
		if _, ok := before[f]; !ok {
			t.Errorf("the refused build left a new file %s", f)
		}
	}
	// The right build recovers the instance as before.
	server.start()
	progress(t, server, 10)
	server.stop()
	checkServerLog(t, server, map[string]int{"client": 10})
}
