package main

import (
	"encoding/json"
	"errors"
	"flag"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestEtcdReplicas (scenarios.md "across hosts", on one host): two server
// replicas elect their primary in a real etcd (a lease; the leader
// revision is the epoch) while a client calls through etcd's registry. The
// primary is killed twice (its lease runs out, the standby wins a higher
// epoch) and each killed replica rejoins; then etcd is stopped under the
// primary, which steps down on its own before its lease can have run out,
// and when etcd is back a primary is elected and the run goes on. The
// client's results are exactly 1..k.
func TestEtcdReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	etcd := etcdtest.Start(t)
	const k = 80
	home := t.TempDir()
	rs := newReplicas(t, home, "server", 2, "--registry", etcd.URL())
	client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "20ms")
	client.extra = []string{"--registry", etcd.URL()}
	t.Cleanup(client.stop)
	for _, in := range rs.reps {
		in.start()
	}
	p := rs.primary(0)
	client.start()
	rs.progress(10)
	// ls --registry shows the replicas from etcd's election, the primary first.
	out, err := exec.Command(builtBins.ambr, "ls", "--registry", etcd.URL(), "--json").Output()
	if err != nil {
		t.Fatalf("ls --registry: %v", err)
	}
	var entries []etcdreg.Entry
	if err := json.Unmarshal(out, &entries); err != nil {
		t.Fatalf("ls --registry --json: %v\n%s", err, out)
	}
	found := false
	for _, e := range entries {
		if e.Name == "server" {
			found = len(e.Replicas) == 2 && e.Replicas[0].Role == "primary" && e.Replicas[0].Replica == p.Replica && e.Replicas[0].Epoch == p.Epoch && e.Replicas[1].Role == "standby"
		}
	}
	if !found {
		t.Fatalf("ls --registry --json does not show server's two replicas with replica %d primary at epoch %d:\n%s", p.Replica, p.Epoch, out)
	}
	for round := 0; round < 2; round++ {
		rs.kill(p.Replica)
		next := rs.primary(p.Epoch)
		rs.progress(10 + 15*(round+1))
		rs.restart(p.Replica)
		p = next
	}
	// etcd goes away under the primary: it steps down (its lease may be
	// gone); when etcd is back, an election is held and the calls go on.
	etcd.Stop()
	deadline := time.Now().Add(*clientTimeout)
	for !strings.Contains(rs.output(), "lost the lease at epoch") {
		if time.Now().After(deadline) {
			t.Fatalf("the primary did not step down without etcd\n%s", rs.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	etcd.Restart()
	rs.restart(p.Replica) // it stopped; it rejoins (and may well win again)
	checkExact(t, waitClient(t, client, rs.reps...).Results, k)
	client.stop()
	for _, in := range rs.reps {
		in.stop()
	}
	for _, line := range strings.Split(rs.output(), "\n") {
		if strings.Contains(line, "→ primary") || strings.Contains(line, "lost the lease") {
			t.Log(strings.TrimSpace(line))
		}
	}
	calls, err := loggedCalls(rs.dir(), "Inc")
	if err != nil || calls["client"] != k {
		t.Fatalf("the server logged %v Inc calls (%v), want exactly %d from client", calls, err, k)
	}
}

var etcdFailoverKills = flag.Int("etcd-failover-kills", 2, "TestBenchFailoverEtcd: primary kills to time (BENCHMARKS.md uses 10)")

// TestBenchFailoverEtcd runs `ambr bench failover --registry etcd://…`
// against a real etcd: the replicas elect their primary with etcd leases,
// so a killed primary is replaced when its lease runs out. It checks the
// report and logs the figures (go test -v; -etcd-failover-kills 10 for
// BENCHMARKS.md).
func TestBenchFailoverEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	binaries(t)
	etcd := etcdtest.Start(t)
	cmd := exec.Command(builtBins.ambr, "--home", t.TempDir(), "bench", "failover", "--registry", etcd.URL(), "--replicas", "2",
		"--kills", strconv.Itoa(*etcdFailoverKills), "--json")
	cmd.Dir = "../.."
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ambr bench failover --registry: %v\n%s%s", err, out, stderr.String())
	}
	var rep failoverReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if rep.Kills != *etcdFailoverKills || len(rep.SamplesMs) != rep.Kills || rep.MinMs <= 0 || rep.P50Ms < rep.MinMs || rep.MaxMs < rep.P99Ms {
		t.Fatalf("report %+v", rep)
	}
	t.Logf("failover with etcd leases over %d kills: p50 %.1f ms, p99 %.1f ms, min %.1f ms, max %.1f ms", rep.Kills, rep.P50Ms, rep.P99Ms, rep.MinMs, rep.MaxMs)
}
