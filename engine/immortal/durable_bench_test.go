package immortal

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// BenchmarkCriticalSection measures the binding's cost of one critical
// section on one instance, without coordinators: an orchestration locks two
// entities (a request forwarded from one to the other), calls each twice,
// and releases them; eight contend at a time. ns/op is per section, over
// its 13 or so messages.
func BenchmarkCriticalSection(b *testing.B) {
	n := &simNet{t: b, rng: rand.New(rand.NewPCG(1, 2)), nodes: map[string]*simNode{}, queues: map[[2]string][][]byte{}, crashAt: 1 << 62, noCkpt: true}
	defer n.stopAll()
	n.start("n0")
	set := []EntityID{{Instance: "n0", Name: "guard", Key: "a"}, {Instance: "n0", Name: "guard", Key: "b"}}
	b.ResetTimer()
	for i := 0; i < b.N; i += 8 {
		for range min(8, b.N-i) {
			n.startSection("n0", set)
		}
		for n.deliver() {
		}
	}
	b.StopTimer()
	if s, _ := n.nodes["n0"].app.State(); len(s.Results) != b.N {
		b.Fatalf("%d sections finished, want %d", len(s.Results), b.N)
	}
}

// BenchmarkOrchestrationRebuild measures re-running a body against its
// history after a checkpoint load: an orchestration that made 100
// sequential calls waits on a timer; each op loads the checkpoint in a new
// app, fires the timer (the body re-runs 100 steps, then finishes) and
// ends.
func BenchmarkOrchestrationRebuild(b *testing.B) {
	for _, steps := range []int{10, 100} {
		b.Run(fmt.Sprintf("steps=%d", steps), func(b *testing.B) {
			n := &simNet{t: b, rng: rand.New(rand.NewPCG(1, 2)), nodes: map[string]*simNode{}, queues: map[[2]string][][]byte{}, crashAt: 1 << 62, noCkpt: true}
			defer n.stopAll()
			n.start("n0")
			node := n.nodes["n0"]
			args := fmt.Appendf(nil, `{"orch":"chain","arg":%d}`, steps)
			k := [2]string{"driver", "n0"}
			n.queues[k] = append(n.queues[k], logfmt.AppendRPC(nil, logfmt.RPC{MethodID: MethodID("start"), Kind: logfmt.RPCFork, Args: Envelope{Method: "start", Payload: args}.Append(nil)}))
			for n.deliver() {
			}
			n.checkpoint(node)
			ck := node.ckState
			fire := logfmt.AppendRPC(nil, logfmt.RPC{MethodID: MethodID(timerMethod), Kind: logfmt.RPCImpulse, Args: Envelope{Method: timerMethod, Payload: []byte(`"1"`)}.Append(nil)})
			b.ResetTimer()
			for range b.N {
				app := newSimApp("n0")
				s := newSession(app, "n0")
				if _, err := s.record(logfmt.WireHeader{Seq: logfmt.SeqCheckpointRecord}, logfmt.AppendCheckpointMessage(nil, int64(len(ck))), bytes.NewReader(ck)); err != nil {
					b.Fatal(err)
				}
				out, err := s.record(logfmt.WireHeader{Seq: 1000}, fire, nil)
				if err != nil {
					b.Fatal(err)
				}
				if out.Len() == 0 {
					b.Fatal("the finished orchestration sent no reply")
				}
				app.mu.Lock()
				abortOrchestrations(app.bind.dur)
				app.mu.Unlock()
			}
		})
	}
}
