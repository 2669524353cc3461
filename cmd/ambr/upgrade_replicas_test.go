package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/logfmt"
)

// The live upgrade of an instance running as replicas (issue 14): the
// primary's ambr run takes the request and upgrades as a single instance
// does; the standbys and the checkpointer hold before the upgrade's
// records and switch their apps to the new build once the version moved.

// onBuild waits until every replica runs an app of the build at path
// (the process executes that very file), and returns their statuses.
func (r *replicas) onBuild(path string) []supervise.ReplicaStatus {
	r.t.Helper()
	want, err := filepath.EvalSymlinks(path)
	if err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var rs []supervise.ReplicaStatus
	for time.Now().Before(deadline) {
		rs = supervise.ReadReplicaStatuses(r.dir())
		on := 0
		for _, s := range rs {
			if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.AppPid)); err == nil && s.AppPid != 0 && exe == want && s.App == path {
				on++
			}
		}
		if on == len(r.reps) && len(rs) == len(r.reps) {
			return rs
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("not every replica runs %s: %+v\n%s", path, rs, r.output())
	return nil
}

// settled waits until the MANIFEST says version, no upgrade under way
// (the old build's recovery after a failed one says so), on build app.
func (r *replicas) settled(version uint32, app string) {
	r.t.Helper()
	var m *logfmt.Manifest
	var err error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m, err = layout.ReadManifest(vfsDefault(), r.dir()); err == nil && m.Version == version && m.UpgradeVersion == version && m.App.Path == app {
			return
		}
	}
	r.t.Fatalf("the MANIFEST says %+v (%v); want version %d, no upgrade under way, app %s\n%s", m, err, version, app, r.output())
}

// oldBuild returns the path of the build the instance ran first.
func oldBuild(t *testing.T, dir string) string {
	t.Helper()
	m, err := layout.ReadManifest(vfsDefault(), dir)
	if err != nil || len(m.Builds) == 0 {
		t.Fatalf("MANIFEST: %v, builds %+v", err, m)
	}
	return m.Builds[0].App.Path
}

// TestReplicaUpgrade: three replicas of the counter server (a primary, a
// hot standby, the checkpointer) and a client calling Inc() through it.
//
// "fail then upgrade": three failed upgrades (the conversion returns an
// error, the new build panics converting, a build that cannot read the
// state) each leave version 0 on the old build on every replica, ambr ls
// says why; then an upgrade to server-v2 moves the version exactly once
// and every replica ends on it. Each standby in turn then takes over (the
// primary killed) and answers the next call exactly; the client got
// exactly 1..k and the log replays on both sides of the upgrade.
//
// "upgrader killed": the primary's ambr run is SIGKILLed while its new
// build converts the state: a standby takes over on the old version,
// nothing lost; a later upgrade works.
//
// "standby stalled through the upgrade": a standby SIGSTOPped while the
// primary upgrades, then the primary killed and the standby resumed: it
// takes over on the new build.
func TestReplicaUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	v2 := goBuild(t, "server-v2", "../../samples/counter/server-v2")
	badConvert := goBuild(t, "badconvert", "./testdata/upgrade/badconvert")
	panicConvert := goBuild(t, "panicconvert", "./testdata/upgrade/panicconvert")
	slowConvert := goBuild(t, "slowconvert", "./testdata/upgrade/slowconvert")
	const k = 150

	start := func(t *testing.T) (string, *replicas, *inst) {
		home := t.TempDir()
		rs := newActiveActive(t, home)
		for _, in := range rs.reps {
			in.start()
		}
		rs.primary(0)
		rs.status(checkpointerReplica, "checkpointer", 0)
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "10ms")
		client.start()
		t.Cleanup(client.stop)
		rs.progress(10)
		return home, rs, client
	}

	t.Run("fail then upgrade", func(t *testing.T) {
		home, rs, client := start(t)
		old := oldBuild(t, rs.dir())
		for _, bad := range []struct{ app, says string }{
			{badConvert, "cannot convert the count"},
			{panicConvert, "index out of range"},
			{counterBins.client, "holds a state of type"},
		} {
			code, res, stderr := upgradeTo(t, home, "server", bad.app)
			if code != 1 || res.OK || res.Version != 0 {
				t.Fatalf("upgrade to %s: exit %d, %+v; want exit 1 at version 0\n%s\n%s", bad.app, code, res, stderr, rs.output())
			}
			if !strings.Contains(res.Error, bad.says) {
				t.Fatalf("upgrade to %s: the failure does not say %q: %s", bad.app, bad.says, res.Error)
			}
			t.Logf("failed as it should: %s", res.Error)
			var ls []lsEntry
			if code, _ := ambrJSON(t, &ls, "--home", home, "ls", "--json"); code != 0 || !lsSays(ls, "server", func(v uint32, failed string) bool { return v == 0 && strings.Contains(failed, bad.says) }) {
				t.Fatalf("ambr ls after the failed upgrade: exit %d, %+v", code, ls)
			}
			rs.onBuild(old)
		}
		rs.settled(0, old)

		rs.progress(40)
		code, res, stderr := upgradeTo(t, home, "server", v2)
		if code != 0 || !res.OK || res.Version != 1 {
			t.Fatalf("upgrade to server-v2: exit %d, %+v\n%s\n%s", code, res, stderr, rs.output())
		}
		// Every replica, the checkpointer too, switches to the new build.
		rs.onBuild(res.Build.Path)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		// Each standby (on v2) takes over hot and answers exactly; the
		// killed primary rejoins with its old command and runs v2.
		calls := rs.everyStandbyServes(home, k, rs.primary(0).Epoch)
		rs.onBuild(res.Build.Path)
		client.stop()
		for _, in := range rs.reps {
			in.stop()
		}
		m := checkMovedOnce(t, rs.dir(), res.Build.SHA256)
		checkReplayBothSides(t, home, m, calls)
	})

	t.Run("upgrader killed", func(t *testing.T) {
		home, rs, client := start(t)
		old := oldBuild(t, rs.dir())
		p := rs.primary(0)
		cmd := exec.Command(builtBins.ambr, "--home", home, "upgrade", "server", "--to", slowConvert)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill the primary once its app is the new build (converting for
		// 3 s): the upgrade is under way.
		bin := ""
		for deadline := time.Now().Add(30 * time.Second); bin == "" && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			for _, s := range supervise.ReadReplicaStatuses(rs.dir()) {
				if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.AppPid)); s.Replica == p.Replica && err == nil && strings.Contains(exe, string(filepath.Separator)+".bin"+string(filepath.Separator)) && !sameFile(exe, old) {
					bin = exe
				}
			}
		}
		if bin == "" {
			t.Fatalf("the primary's app never became the new build\n%s\n%s", out.String(), rs.output())
		}
		rs.kill(p.Replica)
		np := rs.primary(p.Epoch)
		if np.Replica == checkpointerReplica {
			t.Fatalf("the checkpointer became primary\n%s", rs.output())
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out.String(), "primary stopped before answering") {
			t.Fatalf("ambr upgrade with its upgrader killed: %v\n%s", err, out.String())
		}
		t.Logf("ambr upgrade said: %s", strings.TrimSpace(out.String()))
		rs.rejoin(p.Replica)
		rs.onBuild(old)
		rs.settled(0, old)
		// A later upgrade works.
		code, res, stderr := upgradeTo(t, home, "server", v2)
		if code != 0 || !res.OK || res.Version != 1 {
			t.Fatalf("upgrade to server-v2: exit %d, %+v\n%s\n%s", code, res, stderr, rs.output())
		}
		rs.onBuild(res.Build.Path)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		client.stop()
		for _, in := range rs.reps {
			in.stop()
		}
		m := checkMovedOnce(t, rs.dir(), res.Build.SHA256)
		checkReplayBothSides(t, home, m, k)
	})

	t.Run("standby stalled through the upgrade", func(t *testing.T) {
		home, rs, client := start(t)
		p := rs.primary(0)
		standby := 1 - p.Replica
		stalled := rs.reps[standby]
		if err := stalled.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		code, res, stderr := upgradeTo(t, home, "server", v2)
		if code != 0 || !res.OK || res.Version != 1 {
			_ = stalled.cmd.Process.Signal(syscall.SIGCONT)
			t.Fatalf("upgrade to server-v2: exit %d, %+v\n%s\n%s", code, res, stderr, rs.output())
		}
		// The primary dies; the standby wakes up on the old build, finds
		// the lock free and the version moved: whether it sees the move as
		// a follower or only once elected, it takes over on the new build.
		rs.kill(p.Replica)
		if err := stalled.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		if np := rs.primary(p.Epoch); np.Replica != standby {
			t.Fatalf("replica %d took over; want the stalled standby %d\n%s", np.Replica, standby, rs.output())
		}
		rs.rejoin(p.Replica)
		rs.onBuild(res.Build.Path)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		client.stop()
		for _, in := range rs.reps {
			in.stop()
		}
		for _, line := range strings.Split(stalled.out.String(), "\n") {
			if strings.Contains(line, "version 1") || strings.Contains(line, "primary") {
				t.Logf("the stalled standby: %s", line)
			}
		}
		m := checkMovedOnce(t, rs.dir(), res.Build.SHA256)
		checkReplayBothSides(t, home, m, k)
	})
}

func sameFile(a, b string) bool {
	ea, err1 := filepath.EvalSymlinks(a)
	eb, err2 := filepath.EvalSymlinks(b)
	return err1 == nil && err2 == nil && ea == eb
}

// lsEntry is what the tests read of ambr ls --json.
type lsEntry struct {
	Name          string
	Version       uint32
	UpgradeFailed string `json:"upgrade_failed"`
}

// lsSays reports whether ambr ls --json's entry for name satisfies ok.
func lsSays(ls []lsEntry, name string, ok func(version uint32, failed string) bool) bool {
	for _, v := range ls {
		if v.Name == name {
			return ok(v.Version, v.UpgradeFailed)
		}
	}
	return false
}
