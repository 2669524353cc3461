package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// The active/active scenarios: three replicas of the counter server share
// its directory; a client calls through kills of the primary, of a standby,
// of all of them, and a stalled primary.

var replicaKills = flag.Int("replica-kills", 5, "replicas: random primary kills in the replica kill loop")

// replicas is a set of `ambr run --replica N` of one instance.
type replicas struct {
	t    *testing.T
	reps []*inst
}

func newReplicas(t *testing.T, home, name string, n int, extra ...string) *replicas {
	r := &replicas{t: t}
	for i := 0; i < n; i++ {
		in := newInst(t, home, name, counterBins.server)
		in.extra = append([]string{"--replica", strconv.Itoa(i)}, extra...)
		r.reps = append(r.reps, in)
	}
	t.Cleanup(func() {
		for _, in := range r.reps {
			in.stop()
		}
	})
	return r
}

func (r *replicas) dir() string { return r.reps[0].dir() }

func (r *replicas) output() string {
	var b strings.Builder
	for i, in := range r.reps {
		fmt.Fprintf(&b, "--- replica %d:\n%s\n", i, in.out.String())
	}
	return b.String()
}

// status waits until replica n runs with role (and, as primary, an epoch
// above after) and its app is up.
func (r *replicas) status(n int, role string, after uint64) supervise.ReplicaStatus {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range supervise.ReadReplicaStatuses(r.dir()) {
			if s.Replica == n && s.Role == role && (role != "primary" || s.Epoch > after) && s.AppPid != 0 && supervise.Alive(s.AppPid) {
				return s
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.t.Fatalf("replica %d did not run as %s (epoch > %d); status %+v\n%s", n, role, after, supervise.ReadReplicaStatuses(r.dir()), r.output())
	return supervise.ReplicaStatus{}
}

// primary waits for a primary of an epoch above after.
func (r *replicas) primary(after uint64) supervise.ReplicaStatus {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range supervise.ReadReplicaStatuses(r.dir()) {
			if s.Role == "primary" && s.Epoch > after {
				return s
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	r.t.Fatalf("no primary of an epoch above %d; status %+v\n%s", after, supervise.ReadReplicaStatuses(r.dir()), r.output())
	return supervise.ReplicaStatus{}
}

// progress waits until the instance has logged at least n Inc() calls.
func (r *replicas) progress(n int) {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		calls, _ := loggedCalls(r.dir(), "Inc")
		if calls["client"] >= n {
			return
		}
		time.Sleep(3 * time.Millisecond)
	}
	r.t.Fatalf("the server did not reach %d Inc() calls\n%s", n, r.output())
}

// kill SIGKILLs replica n's ambr run and its app: a machine failure.
func (r *replicas) kill(n int) {
	r.t.Helper()
	var app int
	for _, s := range supervise.ReadReplicaStatuses(r.dir()) {
		if s.Replica == n {
			app = s.AppPid
		}
	}
	r.reps[n].killAll()
	if app != 0 && supervise.Alive(app) {
		_ = syscall.Kill(app, syscall.SIGKILL)
	}
	// The failure is complete when replica n's lock is free: a restart
	// before that is refused as "already running" (seen under load, just
	// after both processes were killed; not yet explained).
	lock := flock.New(filepath.Join(r.dir(), supervise.ReplicaLockFile(n)))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ok, err := lock.TryLock(); err == nil && ok {
			_ = lock.Unlock()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("replica %d's lock is still held 10 s after its coordinator and app were killed\n%s", n, r.output())
		}
	}
}

// restart starts replica n again and waits until it is a standby.
func (r *replicas) restart(n int) {
	r.t.Helper()
	r.reps[n].start()
	r.status(n, "standby", 0)
}

// checkReplay time-travels over the whole history of the server, from its
// first checkpoint to the end, and checks the count it reaches.
func checkReplay(t *testing.T, home string, want int) {
	t.Helper()
	out, err := exec.Command(builtBins.ambr, "--home", home, "replay", "server", "--until", "end", "--from-checkpoint", "1", "--json").Output()
	if err != nil {
		var stderr []byte
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("ambr replay server --until end: %v\n%s%s", err, out, stderr)
	}
	var res struct {
		State struct{ Count int }
	}
	if err := json.Unmarshal(out, &res); err != nil || res.State.Count != want {
		t.Fatalf("replay of the whole history: count %d (%v), want %d\n%s", res.State.Count, err, want, out)
	}
}

// checkEpochs checks the MANIFEST's epoch and that seals were set. The
// newest primary may still be about to write its MANIFEST (its app
// reconnecting: a client done before the last kill needs nothing of it):
// it waits for that.
func checkEpochs(t *testing.T, dir string, minEpoch uint64, minSeals int) {
	t.Helper()
	var m *logfmt.Manifest
	var e uint64
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if m, err = layout.ReadManifest(vfs.Default(), dir); err != nil {
			t.Fatal(err)
		}
		if e, err = engine.ReadEpoch(dir); err != nil {
			t.Fatal(err)
		}
		if m.Epoch == e || time.Now().After(deadline) {
			break
		}
	}
	if m.Epoch != e || e < minEpoch || len(m.Seals) < minSeals {
		t.Fatalf("MANIFEST epoch %d, EPOCH %d, %d seals; want equal epochs ≥ %d and ≥ %d seals", m.Epoch, e, len(m.Seals), minEpoch, minSeals)
	}
}

func TestReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	k := *scenarioSize

	t.Run("one process per replica, no run beside replicas", func(t *testing.T) {
		home := t.TempDir()
		rs := newReplicas(t, home, "server", 1)
		rs.reps[0].start()
		p := rs.primary(0)
		// ls lists an instance once its first start wrote the MANIFEST.
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(rs.dir(), layout.ManifestFile)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no MANIFEST after the first start\n%s", rs.output())
			}
		}
		for _, tc := range []struct {
			args []string
			code int
			want string
		}{
			{[]string{"run", counterBins.server, "--name", "server", "--replica", "0"}, 2, "replica 0 of server is already running (coordinator pid " + strconv.Itoa(p.ICPid) + ")"},
			{[]string{"run", counterBins.server, "--name", "server"}, 2, "instance server runs as replicas (0); start another one with --replica N, or stop them first"},
			{[]string{"kill", "server", "--replica", "4"}, 2, "replica 4 of server is not running"},
			{[]string{"ls", "--json"}, 0, `"replicas": [
      {
        "replica": 0,
        "role": "primary",
        "epoch": 1,
        "ic_pid": ` + strconv.Itoa(p.ICPid)},
		} {
			cmd := exec.Command(builtBins.ambr, append([]string{"--home", home}, tc.args...)...)
			out, _ := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(string(out), tc.want) {
				t.Fatalf("ambr %v: exit %d, want %d with %q; output:\n%s", tc.args, code, tc.code, tc.want, out)
			}
		}
	})

	t.Run("kill primary, standby, all", func(t *testing.T) {
		home := t.TempDir()
		rs := newReplicas(t, home, "server", 3)
		for _, in := range rs.reps {
			in.start()
		}
		p := rs.primary(0)
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "5ms")
		client.start()
		t.Cleanup(client.stop)
		epoch := p.Epoch
		step := 0
		next := func() { step++; rs.progress(step * k / 7) }
		// The primary, three times, each killed replica rejoining as a
		// standby before the next kill.
		for i := 0; i < 3; i++ {
			next()
			rs.kill(p.Replica)
			np := rs.primary(epoch)
			rs.restart(p.Replica)
			p, epoch = np, np.Epoch
		}
		// A standby: the primary serves on.
		next()
		standby := (p.Replica + 1) % 3
		rs.kill(standby)
		rs.restart(standby)
		// All of them; all restarted.
		next()
		for n := range rs.reps {
			rs.kill(n)
		}
		for n := range rs.reps {
			rs.reps[n].start()
		}
		rs.primary(epoch)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		checkEpochs(t, rs.dir(), 5, 4)
		client.stop()
		for _, in := range rs.reps {
			in.stop()
		}
		checkReplay(t, home, k)
	})

	t.Run("add a replica, then kill the primary; kill client and server", func(t *testing.T) {
		home := t.TempDir()
		rs := newReplicas(t, home, "server", 3)
		rs.reps[0].start()
		rs.reps[1].start()
		p := rs.primary(0)
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "5ms")
		client.start()
		t.Cleanup(client.stop)
		rs.progress(k / 4)
		rs.restart(2) // a new replica joins as a standby
		rs.kill(p.Replica)
		np := rs.primary(p.Epoch)
		rs.restart(p.Replica)
		rs.progress(k / 2)
		// The client and the server's primary at once.
		client.killAll()
		rs.kill(np.Replica)
		client.start()
		np2 := rs.primary(np.Epoch)
		rs.restart(np.Replica)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		checkEpochs(t, rs.dir(), np2.Epoch, 2)
	})

	t.Run("stalled primary", func(t *testing.T) {
		home := t.TempDir()
		rs := newReplicas(t, home, "server", 2, "--lease-ttl", "300ms")
		for _, in := range rs.reps {
			in.start()
		}
		p := rs.primary(0)
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "5ms")
		client.start()
		t.Cleanup(client.stop)
		rs.progress(k / 3)
		stalled := rs.reps[p.Replica]
		if err := stalled.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		np := rs.primary(p.Epoch)
		// The successor sealed the log before it wrote: the segments the
		// stalled primary could write to are the sealed ones.
		var sealed map[uint64]int64
		deadline := time.Now().Add(30 * time.Second)
		for {
			if m, err := layout.ReadManifest(vfs.Default(), rs.dir()); err == nil && m.Epoch == np.Epoch && len(m.Seals) > 0 {
				sealed = m.Seals
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new primary (epoch %d) wrote no MANIFEST with seals\n%s", np.Epoch, rs.output())
			}
			time.Sleep(2 * time.Millisecond)
		}
		before := segmentContents(t, rs.dir())
		rs.progress(k / 2) // the new primary serves
		if err := stalled.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		<-stalled.done
		code := stalled.cmd.ProcessState.ExitCode()
		want := fmt.Sprintf("replica %d: deposed at epoch %d by a newer primary (epoch %d); stopping without writing", p.Replica, p.Epoch, np.Epoch)
		if code != 1 || !strings.Contains(stalled.out.String(), want) {
			t.Fatalf("the stalled primary exited %d, want 1 saying %q; output:\n%s", code, want, stalled.out.String())
		}
		checkSealedUnchanged(t, rs.dir(), before, sealed)
		rs.restart(p.Replica)
		checkExact(t, waitClient(t, client, rs.reps...).Results, k)
		checkServerLog(t, rs.reps[0], map[string]int{"client": k})
		client.stop()
		for _, in := range rs.reps {
			in.stop()
		}
		checkReplay(t, home, k)
	})

	t.Run("kill loop", func(t *testing.T) {
		kills := *replicaKills
		n := 40 * kills
		home := t.TempDir()
		rs := newReplicas(t, home, "server", 3)
		for _, in := range rs.reps {
			in.start()
		}
		p := rs.primary(0)
		client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(n), "--interval", "10ms")
		client.start()
		t.Cleanup(client.stop)
		seed := time.Now().UnixNano()
		rng := rand.New(rand.NewPCG(uint64(seed), 13))
		t.Logf("seed %d, %d primary kills, %d calls", seed, kills, n)
		midRun := 0
		for i := 0; i < kills; i++ {
			time.Sleep(time.Duration(20+rng.IntN(80)) * time.Millisecond)
			if calls, _ := loggedCalls(rs.dir(), "Inc"); calls["client"] < n {
				midRun++
			}
			rs.kill(p.Replica)
			np := rs.primary(p.Epoch)
			rs.restart(p.Replica)
			p = np
		}
		s := waitClient(t, client, rs.reps...)
		checkExact(t, s.Results, n)
		checkServerLog(t, rs.reps[0], map[string]int{"client": n})
		checkEpochs(t, rs.dir(), uint64(kills+1), 1)
		if midRun != kills {
			t.Fatalf("only %d of %d kills came before the client was done", midRun, kills)
		}
	})
}

// TestBenchFailoverSmoke runs `ambr bench failover --smoke` as CI does:
// three kills of the primary, each taken over and timed.
func TestBenchFailoverSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	binaries(t)
	cmd := exec.Command(builtBins.ambr, "--home", t.TempDir(), "bench", "failover", "--smoke", "--json")
	cmd.Dir = "../.."
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ambr bench failover --smoke: %v\n%s%s", err, out, stderr.String())
	}
	var rep failoverReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if rep.Kills != 3 || len(rep.SamplesMs) != 3 || rep.Replicas != 3 || rep.MinMs <= 0 || rep.P50Ms < rep.MinMs || rep.MaxMs < rep.P99Ms {
		t.Fatalf("report %+v", rep)
	}
}

// segmentContents reads every log segment of the instance directory dir.
func segmentContents(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	logDir := filepath.Join(dir, layout.VersionDir(0))
	entries, err := os.ReadDir(logDir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "log-") {
			b, err := os.ReadFile(filepath.Join(logDir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = b
		}
	}
	return out
}

// checkSealedUnchanged checks that not a byte of a sealed segment below its
// seal changed since before (read once the old primary was stopped and
// its successor had sealed the log). A primary stopped between its fence
// check and its write(2) finishes that one write when it runs again: it
// lands past the seal, where no reader looks, and its sync is never
// reported durable (the fence check after the sync deposes it), so the
// rule is "nothing below the seal", not "no byte more".
func checkSealedUnchanged(t *testing.T, dir string, before map[string][]byte, seals map[uint64]int64) {
	t.Helper()
	now := segmentContents(t, dir)
	checked := 0
	for seg, seal := range seals {
		f := layout.SegmentName(seg)
		old, ok := before[f]
		if !ok {
			continue
		}
		checked++
		if int64(len(old)) < seal {
			t.Fatalf("%s: sealed at %d, but it held only %d bytes once its primary was stopped", f, seal, len(old))
		}
		cur := now[f]
		if int64(len(cur)) < seal {
			t.Fatalf("%s: sealed at %d, now %d bytes: the log below the seal was cut", f, seal, len(cur))
		}
		if string(cur[:seal]) != string(old[:seal]) {
			t.Fatalf("%s: bytes below its seal (%d) changed after the stalled primary was let go", f, seal)
		}
		if grew := int64(len(cur)) - int64(len(old)); grew > 0 {
			t.Logf("%s: %d bytes past the seal at %d, from the write the stalled primary had begun (never reported durable; readers stop at the seal)", f, grew, seal)
		}
	}
	if checked == 0 {
		t.Fatalf("no sealed segment to check (seals %v)", seals)
	}
}
