package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/internal/etcdtest"
)

// testHosts are network namespaces made for one test, each a "host" on a
// bridge of its own (a /24 from 10.231.0.0/16 that no one else uses), so
// that coordinators talk over a network and etcd can be cut off from one
// host. The hosts share the filesystem: the instance directory is the
// storage every replica reaches.
type testHosts struct {
	t      *testing.T
	bridge string
	gw     string   // the bridge's address, where etcd listens
	names  []string // the namespaces
	ips    []string // their addresses
}

func (h *testHosts) ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// newTestHosts makes n hosts, or skips the test with the reason where this
// kernel or user cannot make network namespaces.
func newTestHosts(t *testing.T, n int) *testHosts {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces as test hosts need root; run the tests as root to cover the across-hosts scenarios")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("the ip command (iproute2) is not installed: install it to cover the across-hosts scenarios")
	}
	id := os.Getpid() % 200
	h := &testHosts{t: t, bridge: fmt.Sprintf("ambrbr%d", id), gw: fmt.Sprintf("10.231.%d.1", id)}
	t.Cleanup(h.remove)
	if err := h.ip("link", "add", h.bridge, "type", "bridge"); err != nil {
		if strings.Contains(err.Error(), "Operation not permitted") {
			t.Skipf("this kernel does not let the tests make network namespaces (%v): the across-hosts scenarios are not covered here", err)
		}
		t.Fatal(err)
	}
	steps := [][]string{{"addr", "add", h.gw + "/24", "dev", h.bridge}, {"link", "set", h.bridge, "up"}}
	for i := 0; i < n; i++ {
		ns, veth := fmt.Sprintf("ambr%d-%c", id, 'a'+i), fmt.Sprintf("ambrv%d%c", id, 'a'+i)
		addr := fmt.Sprintf("10.231.%d.%d", id, 2+i)
		h.names, h.ips = append(h.names, ns), append(h.ips, addr)
		steps = append(steps,
			[]string{"netns", "add", ns},
			[]string{"link", "add", veth, "type", "veth", "peer", "name", veth + "p"},
			[]string{"link", "set", veth + "p", "netns", ns},
			[]string{"link", "set", veth, "master", h.bridge},
			[]string{"link", "set", veth, "up"},
			[]string{"netns", "exec", ns, "ip", "addr", "add", addr + "/24", "dev", veth + "p"},
			[]string{"netns", "exec", ns, "ip", "link", "set", veth + "p", "up"},
			[]string{"netns", "exec", ns, "ip", "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := h.ip(s...); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

func (h *testHosts) remove() {
	for _, ns := range h.names {
		_ = h.ip("netns", "del", ns)
	}
	_ = h.ip("link", "del", h.bridge)
}

// cutFromEtcd makes host i unable to reach etcd (the bridge's address),
// and heal undoes it.
func (h *testHosts) cutFromEtcd(i int) {
	h.t.Helper()
	if err := h.ip("netns", "exec", h.names[i], "ip", "route", "add", "blackhole", h.gw+"/32"); err != nil {
		h.t.Fatal(err)
	}
}

func (h *testHosts) heal(i int) {
	h.t.Helper()
	if err := h.ip("netns", "exec", h.names[i], "ip", "route", "del", "blackhole", h.gw+"/32"); err != nil {
		h.t.Fatal(err)
	}
}

// TestAcrossHosts (scenarios.md "across hosts"): server replicas on hosts A
// and B (network namespaces), the counter client on host B, etcd as the
// registry and for the primaries' leases, TLS between the coordinators.
// The primary is killed; then stalled (SIGSTOP) past its lease and let go
// (it must stop without writing); then cut off from etcd (it steps down
// before its lease can have run out, a primary is elected elsewhere); then
// etcd itself restarts. The client's results are exactly 1..k and the
// server logged exactly k calls.
func TestAcrossHosts(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	hosts := newTestHosts(t, 2)
	etcd := etcdtest.StartOn(t, hosts.gw)
	const k = 120
	home := t.TempDir()
	rs := newReplicas(t, home, "server", 2, "--registry", etcd.URL())
	for i, in := range rs.reps {
		in.netns = hosts.names[i]
		in.extra = append(in.extra, "--peer-addr", hosts.ips[i]+":0")
	}
	client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "20ms")
	client.netns, client.extra = hosts.names[1], []string{"--registry", etcd.URL(), "--peer-addr", hosts.ips[1] + ":0"}
	t.Cleanup(client.stop)
	for _, in := range rs.reps {
		in.start()
	}
	p := rs.primary(0)
	client.start()
	rs.progress(10)

	// A lost machine: the primary's host kills it; the other host's replica
	// takes over once the lease runs out.
	rs.kill(p.Replica)
	next := rs.primary(p.Epoch)
	rs.progress(30)
	rs.restart(p.Replica)
	p = next

	// A stalled primary: past its lease, then let go. It must write nothing
	// more and stop.
	if err := syscall.Kill(rs.reps[p.Replica].cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stalled := p.Replica
	next = rs.primary(p.Epoch)
	before := segmentContents(t, rs.dir())
	_ = syscall.Kill(rs.reps[stalled].cmd.Process.Pid, syscall.SIGCONT)
	select {
	case <-rs.reps[stalled].done:
	case <-time.After(30 * time.Second):
		t.Fatalf("the stalled primary did not stop after it was let go\n%s", rs.output())
	}
	if out := rs.reps[stalled].out.String(); !strings.Contains(out, "lost the lease") && !strings.Contains(out, "deposed") {
		t.Fatalf("the stalled primary stopped without saying why:\n%s", out)
	}
	// Segments sealed by the takeover are the old primaries': not a byte
	// below their seals changed.
	m, err := layout.ReadManifest(vfsDefault(), rs.dir())
	if err != nil {
		t.Fatal(err)
	}
	checkSealedUnchanged(t, rs.dir(), before, m.Seals)
	rs.progress(55)
	rs.restart(stalled)
	p = next

	// The primary's host loses etcd: it steps down; the other is elected.
	hosts.cutFromEtcd(p.Replica)
	next = rs.primary(p.Epoch)
	deadline := time.Now().Add(*clientTimeout)
	for !strings.Contains(rs.reps[p.Replica].out.String(), "lost the lease at epoch") {
		if time.Now().After(deadline) {
			t.Fatalf("the primary cut off from etcd did not step down\n%s", rs.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	hosts.heal(p.Replica)
	<-rs.reps[p.Replica].done
	rs.restart(p.Replica)
	rs.progress(80)

	// etcd restarts: the primary may lose its lease; one is elected again.
	etcd.Restart()
	for i, in := range rs.reps {
		select {
		case <-in.done:
			rs.restart(i)
		default:
		}
	}
	checkExact(t, waitClient(t, client, rs.reps...).Results, k)
	client.stop()
	for _, in := range rs.reps {
		in.stop()
	}
	calls, err := loggedCalls(rs.dir(), "Inc")
	if err != nil || len(calls) != 1 || calls["client"] != k {
		t.Fatalf("the server logged %v Inc calls (%v), want exactly %d from client", calls, err, k)
	}
	_ = next
}
