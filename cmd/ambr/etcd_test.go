package main

import (
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/engine/etcdreg"
	"github.com/ambr-dev/ambr/internal/etcdtest"
)

// TestEtcdRegistry: a counter client and server find each other through a
// real etcd (embedded in the test, free ports). The server is killed and
// comes back on a new port, etcd itself is restarted mid-run, and the
// client's results are exactly 1..k; `ambr ls --registry` lists both from
// etcd. An unreachable etcd at start is a clear error.
func TestEtcdRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	etcd := etcdtest.Start(t)
	const k = 60
	server, client := pair(t, k)
	server.extra = []string{"--registry", etcd.URL()}
	client.extra = []string{"--registry", etcd.URL()}
	client.appArgs = append(client.appArgs, "--interval", "10ms")
	server.start()
	client.start()
	progress(t, server, 10)

	out, err := exec.Command(builtBins.ambr, "ls", "--registry", etcd.URL(), "--json").Output()
	if err != nil {
		t.Fatalf("ls --registry: %v", err)
	}
	var entries []etcdreg.Entry
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) != 2 || entries[0].Name != "client" || entries[1].Name != "server" {
		t.Fatalf("ls --registry --json: %v\n%s", err, out)
	}

	server.killAll() // back on a new port: found through etcd
	server.start()
	progress(t, server, 25)
	etcd.Restart()
	progress(t, server, 40)
	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()
	checkServerLog(t, server, map[string]int{"client": k})

	b, err := exec.Command(builtBins.ambr, "--home", t.TempDir(), "run", counterBins.server, "--registry", "etcd://127.0.0.1:1").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(b), "does not answer") {
		t.Fatalf("run with an unreachable etcd: %v\n%s", err, b)
	}
}
