package timetravel

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ambr-dev/ambr/samples/counter/counter"
)

var (
	serverOnce sync.Once
	serverBin  string
	serverErr  error
)

// counterServer builds the counter sample's server once per test run.
func counterServer(t testing.TB) string {
	t.Helper()
	serverOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ambr-tt-")
		if err != nil {
			serverErr = err
			return
		}
		serverBin = filepath.Join(dir, "counter-server")
		if out, err := exec.Command("go", "build", "-o", serverBin, "../samples/counter/server").CombinedOutput(); err != nil {
			serverErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return serverBin
}

var synthStart = counter.SynthStart

func writeCounterLog(t testing.TB, dir string, n, perSeg int, app string) {
	t.Helper()
	if err := counter.WriteServerLog(dir, n, perSeg, app); err != nil {
		t.Fatal(err)
	}
}

func appendRecords(t testing.TB, dir string, from, to, perSeg int) {
	t.Helper()
	if err := counter.AppendServerRecords(dir, from, to, perSeg); err != nil {
		t.Fatal(err)
	}
}
