package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
)

// AMBROSIA's seven active/active scenarios (AmbrosiaTest/ActiveActive_Test.cs),
// and an eighth under retention,
// with real processes: three replicas of the counter server — two hot
// standbys (one of them primary) and a checkpointer — and a client calling
// Inc() through each kill. Every killed replica is restarted and rejoins.
// Afterwards: the client got exactly 1..k, the server logged each call
// once, each standby in turn takes over without recovery and answers the
// next call with the exact next count (its app followed the log to the same
// state), and the server's log replays to the same count from its first
// checkpoint and from its newest, which the checkpointer wrote.

// activeActiveSegment makes the log roll, and the checkpointer checkpoint,
// every few dozen calls.
const activeActiveSegment = "4096"

// checkpointerReplica is the replica number of the checkpointer.
const checkpointerReplica = 2

func newActiveActive(t *testing.T, home string, extra ...string) *replicas {
	rs := newReplicas(t, home, "server", 3, append([]string{"--segment-size", activeActiveSegment}, extra...)...)
	rs.reps[checkpointerReplica].extra = append(rs.reps[checkpointerReplica].extra, "--checkpointer")
	return rs
}

// restartAs starts replica n again and waits until it runs with role.
func (r *replicas) restartAs(n int, role string) {
	r.t.Helper()
	r.reps[n].start()
	r.status(n, role, 0)
}

// rejoin restarts replica n in the role it has (standby or checkpointer).
func (r *replicas) rejoin(n int) {
	r.t.Helper()
	if n == checkpointerReplica {
		r.restartAs(n, "checkpointer")
		return
	}
	r.restartAs(n, "standby")
}

// everyStandbyServes makes each standby primary in turn (the primary is
// killed and restarted) and has it answer one Inc(): its count must be
// exactly the calls made before, so its app, which followed the log, holds
// the same state as the primary's did. It returns the calls made.
func (r *replicas) everyStandbyServes(home string, calls int, epoch uint64) int {
	r.t.Helper()
	p := r.primary(epoch - 1)
	for i := 0; i < 2; i++ {
		standby := r.status(1-p.Replica, "standby", 0)
		r.kill(p.Replica)
		np := r.primary(p.Epoch)
		if np.Replica == checkpointerReplica {
			r.t.Fatalf("the checkpointer became primary\n%s", r.output())
		}
		if np.AppPid != standby.AppPid {
			// A hot takeover keeps the standby's app: no restart, no recovery.
			r.t.Fatalf("replica %d took over with app pid %d; as a standby its app was pid %d (restarted, not hot)\n%s", np.Replica, np.AppPid, standby.AppPid, r.output())
		}
		probe := newInst(r.t, home, fmt.Sprintf("probe-%d", i), counterBins.client, "--server", "server", "--count", "1")
		probe.start()
		s := waitClient(r.t, probe, r.reps...)
		probe.stop()
		calls++
		if len(s.Results) != 1 || s.Results[0] != calls {
			r.t.Fatalf("replica %d, primary after a hot takeover, answered %v; want [%d]\n%s", np.Replica, s.Results, calls, r.output())
		}
		r.rejoin(p.Replica)
		p = np
	}
	return calls
}

// checkReplayNewest replays the server's log from its newest checkpoint and
// checks the count; it returns that checkpoint's number.
func checkReplayNewest(t *testing.T, home string, want int) uint64 {
	t.Helper()
	out, err := exec.Command(builtBins.ambr, "--home", home, "replay", "server", "--until", "end", "--json").CombinedOutput()
	var res struct {
		State struct{ Count int }
	}
	if err != nil || json.Unmarshal(out, &res) != nil || res.State.Count != want {
		t.Fatalf("ambr replay server --until end: %v, count %d, want %d\n%s", err, res.State.Count, want, out)
	}
	m, err := layout.ReadManifest(vfs.Default(), home+"/server")
	if err != nil {
		t.Fatal(err)
	}
	return m.Checkpoint
}

func TestActiveActive(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	k := *scenarioSize

	// Each scenario: what to do once the client is a third of the way
	// through; the replicas are all up before it and after it.
	scenarios := []struct {
		name string
		// start says which replicas run before the client starts (nil:
		// all three).
		start []int
		// retain runs the replicas with --retain 2: the checkpointer and
		// the primary delete old segments under the standbys.
		retain bool
		kill   func(t *testing.T, rs *replicas, client *inst)
	}{
		{name: "kill primary", kill: func(t *testing.T, rs *replicas, _ *inst) {
			p := rs.primary(0)
			rs.kill(p.Replica)
			rs.primary(p.Epoch)
			rs.rejoin(p.Replica)
		}},
		{name: "kill checkpointer", kill: func(t *testing.T, rs *replicas, _ *inst) {
			rs.kill(checkpointerReplica)
			rs.progress(2 * k / 3) // the primary checkpoints meanwhile
			rs.rejoin(checkpointerReplica)
		}},
		{name: "kill standby", kill: func(t *testing.T, rs *replicas, _ *inst) {
			p := rs.primary(0)
			standby := 1 - p.Replica
			rs.kill(standby)
			rs.rejoin(standby)
		}},
		{name: "kill standby and checkpointer", kill: func(t *testing.T, rs *replicas, _ *inst) {
			p := rs.primary(0)
			standby := 1 - p.Replica
			rs.kill(standby)
			rs.kill(checkpointerReplica)
			rs.progress(2 * k / 3)
			rs.rejoin(standby)
			rs.rejoin(checkpointerReplica)
		}},
		{name: "kill client and server", kill: func(t *testing.T, rs *replicas, client *inst) {
			p := rs.primary(0)
			client.killAll()
			rs.kill(p.Replica)
			client.start()
			rs.primary(p.Epoch)
			rs.rejoin(p.Replica)
		}},
		{name: "kill all", kill: func(t *testing.T, rs *replicas, _ *inst) {
			p := rs.primary(0)
			for n := range rs.reps {
				rs.kill(n)
			}
			for n := range rs.reps {
				rs.reps[n].start()
			}
			rs.primary(p.Epoch)
			rs.status(checkpointerReplica, "checkpointer", 0)
		}},
		{name: "add a replica then kill primary", start: []int{0, checkpointerReplica}, kill: func(t *testing.T, rs *replicas, _ *inst) {
			rs.restartAs(1, "standby") // joins and follows
			p := rs.primary(0)
			rs.kill(p.Replica)
			if np := rs.primary(p.Epoch); np.Replica != 1 {
				t.Fatalf("replica %d took over; want the replica added, 1", np.Replica)
			}
			rs.rejoin(p.Replica)
		}},
		// Beyond AMBROSIA's seven: the same under retention.
		{name: "kill primary then checkpointer, with retention", retain: true, kill: func(t *testing.T, rs *replicas, _ *inst) {
			p := rs.primary(0)
			rs.kill(p.Replica)
			rs.primary(p.Epoch)
			rs.rejoin(p.Replica)
			rs.progressSeq(k / 2)
			rs.kill(checkpointerReplica)
			rs.progressSeq(2 * k / 3)
			rs.rejoin(checkpointerReplica)
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			home := t.TempDir()
			var extra []string
			if sc.retain {
				extra = []string{"--retain", "2"}
			}
			rs := newActiveActive(t, home, extra...)
			start := sc.start
			if start == nil {
				start = []int{0, 1, checkpointerReplica}
			}
			for _, n := range start {
				rs.reps[n].start()
			}
			rs.primary(0)
			rs.status(checkpointerReplica, "checkpointer", 0)
			checkLsRoles(t, home)
			client := newInst(t, home, "client", counterBins.client, "--server", "server", "--count", strconv.Itoa(k), "--interval", "5ms")
			client.start()
			t.Cleanup(client.stop)
			if sc.retain {
				rs.progressSeq(k / 3) // retention drops the calls logged first
			} else {
				rs.progress(k / 3)
			}
			sc.kill(t, rs, client)
			checkExact(t, waitClient(t, client, rs.reps...).Results, k)
			if !sc.retain {
				checkServerLog(t, rs.reps[0], map[string]int{"client": k})
			}
			calls := rs.everyStandbyServes(home, k, rs.primary(0).Epoch)
			client.stop()
			for _, in := range rs.reps {
				in.stop()
			}
			if !sc.retain {
				checkReplay(t, home, calls)
			}
			if ck := checkReplayNewest(t, home, calls); ck < 2 {
				t.Fatalf("the newest checkpoint is %d: nobody checkpointed as the log rolled\n%s", ck, rs.output())
			}
			if sc.retain {
				m, err := layout.ReadManifest(vfs.Default(), rs.dir())
				if err != nil {
					t.Fatal(err)
				}
				if m.FirstSegment < 3 {
					t.Fatalf("under --retain 2 the log still starts at segment %d: retention deleted nothing", m.FirstSegment)
				}
			}
		})
	}
}

// checkLsRoles checks that ambr ls --json shows the checkpointer's role
// (once the first start wrote the MANIFEST: ls lists instances from then).
func checkLsRoles(t *testing.T, home string) {
	t.Helper()
	var out []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var err error
		out, err = exec.Command(builtBins.ambr, "--home", home, "ls", "--json").Output()
		if err != nil {
			t.Fatalf("ambr ls --json: %v\n%s", err, out)
		}
		var views []struct {
			Name     string
			Replicas []replicaView
		}
		if err := json.Unmarshal(out, &views); err != nil {
			t.Fatalf("ambr ls --json: %v\n%s", err, out)
		}
		for _, v := range views {
			for _, r := range v.Replicas {
				if v.Name == "server" && r.Replica == checkpointerReplica && r.Role == "checkpointer" && r.ICPid != 0 {
					return
				}
			}
		}
	}
	t.Fatalf("ambr ls --json shows no checkpointer:\n%s", out)
}

// progressSeq waits until the server's newest record is at least n + 1 (the
// client calls one at a time: one record per call, after the
// InitialMessage), read from the newest segment: under retention the
// older ones, and the calls in them, are gone.
func (r *replicas) progressSeq(n int) {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(3 * time.Millisecond) {
		if newestSeq(r.dir()) >= int64(n)+1 {
			return
		}
	}
	r.t.Fatalf("the server did not reach record %d\n%s", n+1, r.output())
}

func newestSeq(dir string) int64 {
	in, err := layout.Open(vfs.Default(), dir)
	if err != nil {
		return 0
	}
	segs, err := in.Segments()
	if err != nil || len(segs) == 0 {
		return 0
	}
	lr, err := in.NewLogReader(segs[len(segs)-1])
	if err != nil {
		return 0
	}
	defer lr.Close()
	var last int64
	for {
		rec, err := lr.Next()
		if err != nil {
			return last
		}
		last = rec.Seq
	}
}
