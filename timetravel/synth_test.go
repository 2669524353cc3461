package timetravel

import (
	"os"
	"testing"

	"github.com/ambr-dev/ambr/internal/testbin"
	"github.com/ambr-dev/ambr/samples/counter/counter"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Clean() // the binaries the tests built
	os.Exit(code)
}

// counterServer builds the counter sample's server once per test run.
func counterServer(t testing.TB) string {
	t.Helper()
	return testbin.Build(t, "../samples/counter/server")
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
