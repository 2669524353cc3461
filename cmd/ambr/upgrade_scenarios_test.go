package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/logfmt"
	"github.com/ambr-dev/ambr/upgrade"
)

var upgradeKills = flag.Int("upgrade-kills", 6, "upgrade kill loop: SIGKILLs of the server while upgrades are attempted")

// ambrExec runs ambr with args and returns its stdout, exit code and
// stderr; anything but an exit is fatal.
func ambrExec(t *testing.T, args ...string) ([]byte, int, string) {
	t.Helper()
	cmd := exec.Command(builtBins.ambr, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out, code, stderr.String()
}

// ambrJSON runs ambr with args and decodes its stdout into v (when it is
// not exit 2), returning the exit code and stderr.
func ambrJSON(t *testing.T, v any, args ...string) (int, string) {
	t.Helper()
	out, code, stderr := ambrExec(t, args...)
	if code == 0 && v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("ambr %v printed %q: %v\nstderr: %s", args, out, err, stderr)
		}
	}
	return code, stderr
}

// waitVersion waits until the instance's MANIFEST says version v.
func waitVersion(t *testing.T, i *inst, v uint32) *logfmt.Manifest {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := layout.ReadManifest(vfsDefault(), i.dir()); err == nil && m.Version == v {
			return m
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not reach version %d; output:\n%s", i.name, v, i.out.String())
	return nil
}

// checkMovedOnce asserts the MANIFEST moved from version 0 to 1 exactly
// once: version 1 now, and its builds run version 0 then version 1, the
// last one the build upgraded to.
func checkMovedOnce(t *testing.T, dir, sha string) *logfmt.Manifest {
	t.Helper()
	m, err := layout.ReadManifest(vfsDefault(), dir)
	if err != nil {
		t.Fatal(err)
	}
	moves := 0
	for i := 1; i < len(m.Builds); i++ {
		if m.Builds[i].Version != m.Builds[i-1].Version {
			moves++
		}
	}
	if m.Version != 1 || m.UpgradeVersion != 1 || moves != 1 || m.App.SHA256 != sha || m.Builds[0].Version != 0 || m.Builds[len(m.Builds)-1].Version != 1 {
		t.Fatalf("MANIFEST version %d/%d, builds %+v, app %s; want version 1 reached once, on %s", m.Version, m.UpgradeVersion, m.Builds, m.App.SHA256, sha)
	}
	return m
}

// checkReplayBothSides replays the server on both sides of its upgrade:
// the record before the first one the new build ran shows the old layout
// (count), the end the new one with the total (value).
func checkReplayBothSides(t *testing.T, home string, m *logfmt.Manifest, total int) {
	t.Helper()
	in, err := layout.Open(vfsDefault(), layout.ResolveDir(home, "server"))
	if err != nil {
		t.Fatal(err)
	}
	var boundary int64
	for _, b := range m.Builds {
		if b.Version == 1 {
			ck, err := in.ReadCheckpoint(b.FromCheckpoint)
			if err != nil {
				t.Fatal(err)
			}
			boundary = ck.NextSeq
			break
		}
	}
	type point struct {
		until, field string
		want         int
	}
	points := []point{{strconv.FormatInt(boundary-1, 10), "count", total}}
	if _, code, _ := ambrExec(t, "--home", home, "replay", "server", "--until", strconv.FormatInt(boundary, 10), "--json"); code == 0 {
		points = []point{
			{strconv.FormatInt(boundary-1, 10), "count", -1},
			{strconv.FormatInt(boundary, 10), "value", -1},
			{"end", "value", total},
		}
	} else {
		// The upgrade came after the client's last call: no record was
		// run by the new build, so only the old side can be replayed
		// (replay's checkpoint:K shows the state before the upgrade's
		// checkpoint, not the converted one).
		t.Logf("the upgrade (checkpoint %d) came after the last record; only the old side replays", boundary)
	}
	for _, tc := range points {
		var r struct {
			State map[string]int `json:"state"`
		}
		if code, stderr := ambrJSON(t, &r, "--home", home, "replay", "server", "--until", tc.until, "--json"); code != 0 {
			t.Fatalf("replay --until %s: exit %d\n%s\nbuilds %+v", tc.until, code, stderr, m.Builds)
		}
		got, ok := r.State[tc.field]
		if !ok || tc.want >= 0 && got != tc.want {
			t.Fatalf("replay --until %s: state %v; want the %q layout (%d)", tc.until, r.State, tc.field, tc.want)
		}
		t.Logf("replay --until %s: %v", tc.until, r.State)
	}
}

// TestUpgradeScenarios (scenarios.md "upgrade after / during"): the
// server is upgraded to server-v2 after a client's run, while stopped (it
// upgrades as it next starts), and during a run while its app and its
// whole ambr run are SIGKILLed again and again. Every time: the clients'
// results exact, the server's log exact, the version moved exactly once,
// replay on both sides of the boundary gives each side's recorded state,
// and a retro-test across the boundary finds nothing.
func TestUpgradeScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	v2 := goBuild(t, "server-v2", "../../samples/counter/server-v2")
	badConvert := goBuild(t, "badconvert", "./testdata/upgrade/badconvert")
	k := 40

	t.Run("upgrade after", func(t *testing.T) {
		server, client := pair(t, k)
		server.start()
		client.start()
		checkExact(t, waitClient(t, client, server).Results, k)
		client.stop()
		server.killAll() // down, as after a machine failure
		before := treeSums(t, server.dir())

		// An upgrade of the stopped instance to a build whose conversion
		// fails: it is tried as the instance starts; the given build runs
		// on, at version 0, and ambr ls says why.
		var res upgrade.Result
		if code, stderr := ambrJSON(t, &res, "--home", server.home, "upgrade", "server", "--to", badConvert, "--json"); code != 0 || !res.Pending {
			t.Fatalf("ambr upgrade of a stopped instance: exit %d, %+v\n%s", code, res, stderr)
		}
		server.start()
		var last *upgrade.Result
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if r, ok := upgrade.LastResult(server.dir()); ok && r.Requested == res.Requested {
				last = r
				break
			}
		}
		if last == nil || last.OK || !strings.Contains(last.Error, "cannot convert the count") {
			t.Fatalf("the upgrade at the start: %+v; want a failure naming the conversion\n%s", last, server.out.String())
		}
		server.appPid()
		server.stop()
		after := treeSums(t, server.dir())
		for f, sum := range before {
			if after[f] != sum && !strings.HasPrefix(f, "v0/log-") && f != layout.ManifestFile && !strings.HasPrefix(f, "UPGRADE") {
				t.Errorf("%s changed under the failed upgrade", f)
			}
		}
		var ls0 []struct {
			Name          string
			Version       uint32
			UpgradeFailed string `json:"upgrade_failed"`
		}
		if code, _ := ambrJSON(t, &ls0, "--home", server.home, "ls", "--json"); code != 0 || ls0[1].Version != 0 || !strings.Contains(ls0[1].UpgradeFailed, "cannot convert the count") {
			t.Fatalf("ambr ls after the failed upgrade: exit %d, %+v", code, ls0)
		}

		if code, stderr := ambrJSON(t, &res, "--home", server.home, "upgrade", "server", "--to", v2, "--json"); code != 0 || !res.Pending || res.OK || res.Version != 0 {
			t.Fatalf("ambr upgrade of a stopped instance: exit %d, %+v\n%s", code, res, stderr)
		}
		var ls []struct {
			Name           string
			Version        uint32
			UpgradePending string `json:"upgrade_pending"`
		}
		if code, _ := ambrJSON(t, &ls, "--home", server.home, "ls", "--json"); code != 0 || len(ls) != 2 || ls[1].Name != "server" || ls[1].UpgradePending == "" || ls[1].Version != 0 {
			t.Fatalf("ambr ls before the start: exit %d, %+v", code, ls)
		}
		// The usual command: it starts the new build first, which upgrades.
		server.start()
		waitVersion(t, server, 1)
		// No record has run on the new build yet: a retro-test to the end
		// still crosses the upgrade and compares the converted state.
		checkRetroAcrossUpgrade(t, server.home, "server", v2)
		client2 := newInst(t, server.home, "client2", counterBins.client, "--server", "server", "--count", strconv.Itoa(k))
		t.Cleanup(client2.stop)
		client2.start()
		results := waitClient(t, client2, server).Results
		if len(results) != k || results[0] != k+1 || results[k-1] != 2*k {
			t.Fatalf("the second client got %v; want %d..%d", results, k+1, 2*k)
		}
		checkExact(t, func() []int {
			out := make([]int, len(results))
			for i, r := range results {
				out[i] = r - k
			}
			return out
		}(), k)
		client2.stop()
		// A machine failure after the upgrade: the same (old) command
		// recovers the instance with its current build.
		server.killAll()
		server.start()
		var st supervise.RunStatus
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if s, ok := supervise.ReadRunStatus(server.dir()); ok && s.ICPid == server.cmd.Process.Pid && s.AppPid != 0 {
				st = s
				break
			}
		}
		if !strings.HasSuffix(st.App, sha256Of(t, v2)) {
			t.Fatalf("after the upgrade the old command runs %q, want the current build\n%s", st.App, server.out.String())
		}
		server.stop()
		if !strings.Contains(server.out.String(), "was upgraded to version 1") {
			t.Errorf("ambr run with the old build did not say it runs the current one:\n%s", server.out.String())
		}
		checkServerLog(t, server, map[string]int{"client": k, "client2": k})
		m := checkMovedOnce(t, server.dir(), sha256Of(t, v2))
		if code, _ := ambrJSON(t, &ls, "--home", server.home, "ls", "--json"); code != 0 || ls[len(ls)-1].Version != 1 || ls[len(ls)-1].UpgradePending != "" {
			t.Fatalf("ambr ls after: exit %d, %+v", code, ls)
		}
		checkReplayBothSides(t, server.home, m, 2*k)
		checkRetroAcrossUpgrade(t, server.home, "server", v2)
	})

	t.Run("upgrade during a kill loop", func(t *testing.T) {
		n := 3 * k
		server, client := pair(t, n)
		// Slow enough that the upgrade usually lands while calls still
		// come (a failed attempt can take seconds); checkReplayBothSides
		// copes when it does not.
		client.appArgs = append(client.appArgs, "--interval", "40ms")
		server.start()
		client.start()
		seed := time.Now().UnixNano()
		rng := rand.New(rand.NewPCG(uint64(seed), 14))
		t.Logf("seed %d", seed)
		kill := func() {
			server.appPid() // up and running
			if rng.IntN(2) == 0 {
				server.killApp()
				t.Log("killed the server's app")
			} else {
				server.killAll()
				server.start()
				t.Log("killed the server's ambr run, restarted it")
			}
		}
		progress(t, server, 5)
		kills, attempts, failed := *upgradeKills, 0, 0
		for {
			m, err := layout.ReadManifest(vfsDefault(), server.dir())
			if err != nil {
				t.Fatal(err)
			}
			if m.Version == 1 {
				break
			}
			if attempts++; attempts > kills+10 {
				t.Fatalf("no upgrade succeeded in %d attempts; server:\n%s", attempts-1, server.out.String())
			}
			_, oldStart := server.app()
			cmd := exec.Command(builtBins.ambr, "--home", server.home, "upgrade", "server", "--to", v2, "--json")
			var stdout strings.Builder
			stderr := &syncBuffer{}
			cmd.Stdout, cmd.Stderr = &stdout, stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			restart := false
			if attempts <= kills {
				// SIGKILL parts of the server during the upgrade: its app
				// (the old or the new build; its ambr run restarts it) once
				// or twice, or its whole ambr run. Most kills wait for a new
				// start of the app, then come at a random point of its
				// recovery and conversion.
				asked := func() bool { return strings.Contains(stderr.String(), "asked server") }
				lastStart := oldStart
				newApp := func() bool {
					st, ok := supervise.ReadRunStatus(server.dir())
					return ok && st.AppStarted != lastStart && st.AppPid != 0
				}
				waitFor := func(cond func() bool) bool {
					for !cond() {
						select {
						case <-done:
							return false
						case <-time.After(time.Millisecond):
						}
					}
					return true
				}
			kills:
				for j, n := 0, 1+rng.IntN(2); j < n; j++ {
					if rng.IntN(3) > 0 {
						if !waitFor(func() bool { return asked() && newApp() }) {
							break
						}
						time.Sleep(time.Duration(rng.IntN(15)) * time.Millisecond)
					} else {
						if !waitFor(asked) { // the request is out: kill before or as the run takes it
							break
						}
						time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
					}
					select {
					case <-done:
						break kills
					default:
					}
					if rng.IntN(3) > 0 {
						st, ok := supervise.ReadRunStatus(server.dir())
						if ok && st.AppPid != 0 {
							server.killed[st.AppStarted] = true
							lastStart = st.AppStarted
							_ = syscall.Kill(st.AppPid, syscall.SIGKILL)
							t.Logf("attempt %d: killed the server's app", attempts)
						}
					} else {
						server.killAll()
						restart = true
						t.Logf("attempt %d: killed the server's ambr run", attempts)
						break
					}
				}
			}
			<-done
			code := cmd.ProcessState.ExitCode()
			if restart {
				server.start() // after the upgrade command has seen it stop
			}
			t.Logf("attempt %d: ambr upgrade exit %d %s %s", attempts, code, strings.TrimSpace(stdout.String()), strings.TrimSpace(stderr.String()))
			switch code {
			case 0:
			case 1:
				failed++
			case 2:
				// "already runs this build": the upgrade was durable when the
				// kill came; the MANIFEST says so above.
			default:
				t.Fatalf("ambr upgrade exit %d\n%s", code, stderr.String())
			}
		}
		// Kills after the upgrade too: each restart recovers on the new build.
		for i := 0; i < 3; i++ {
			kill()
		}
		checkExact(t, waitClient(t, client, server).Results, n)
		client.stop()
		server.stop()
		checkServerLog(t, server, map[string]int{"client": n})
		m := checkMovedOnce(t, server.dir(), sha256Of(t, v2))
		t.Logf("upgraded after %d attempts (%d failed with the reason), builds %d", attempts, failed, len(m.Builds))
		checkReplayBothSides(t, server.home, m, n)
		checkRetroAcrossUpgrade(t, server.home, "server", v2)
	})
}

func sha256Of(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
