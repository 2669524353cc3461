package immortal

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

// A network of instances driven record by record, without coordinators:
// each node is a session fed the records of its own log; what it sends goes
// into per-pair FIFO queues, from which a seeded random choice delivers the
// next message anywhere. Nodes crash at random moments — before a logged
// record is handled, or after it was handled but before its output left —
// and recover from their newest checkpoint and log, and what their replay
// sends again is dropped by sequence, as coordinators do. It drives the
// lock protocol of critical sections with random lock sets over entities on
// every node.

var lockSeeds = flag.Int("lock-seeds", 40, "lock protocol fuzz: how many random networks to run")

type simNode struct {
	name     string
	sess     *session[durState]
	app      *App[durState]
	log      [][]byte // record bodies; record i+1 is log[i]
	ckState  []byte
	ckNext   int            // first record not in the checkpoint
	ckSent   map[string]int // produced per destination when the checkpoint was taken
	produced map[string]int // RPCs produced per destination by this incarnation's state
	sent     map[string]int // RPCs that left, per destination
	crashes  int
}

type simNet struct {
	t      testing.TB
	rng    *rand.Rand
	nodes  map[string]*simNode
	names  []string
	queues map[[2]string][][]byte // (from, to) → incoming RPC message frames
	// With crashAt > 0 the only crash is at that delivery (1 = first), of
	// kind crashKind; otherwise nodes crash at random.
	crashAt    int
	noCkpt     bool // no checkpoints but those asked for (benchmarks)
	crashKind  int  // 0: logged, not handled; 1: handled, output lost
	deliveries int
}

func newSimApp(name string) *App[durState] {
	app := newDurApp(durOpts{})
	app.SetName(name)
	addLockFuzz(app)
	return app
}

// guardState is the fuzz entity: who is inside its critical section.
type guardState struct {
	In      string `json:"in,omitempty"`
	Entered int    `json:"entered"`
}

func addLockFuzz(app *App[durState]) {
	g := NewEntity(app, "guard", func() guardState { return guardState{} })
	HandleOp(g, "enter", func(ec *EntityCtx, e *guardState, who string) (struct{}, error) {
		if e.In != "" {
			return struct{}{}, fmt.Errorf("%s entered by %s while %s is inside", ec.ID(), who, e.In)
		}
		e.In = who
		e.Entered++
		return struct{}{}, nil
	})
	HandleOp(g, "leave", func(ec *EntityCtx, e *guardState, who string) (struct{}, error) {
		if e.In != who {
			return struct{}{}, fmt.Errorf("%s left by %s but %q is inside", ec.ID(), who, e.In)
		}
		e.In = ""
		return struct{}{}, nil
	})
	Orchestrate(app, "section", func(oc *Orch, set []EntityID) (string, error) {
		cs, err := oc.Lock(set...)
		if err != nil {
			return "", err
		}
		me := oc.Self() + "/" + oc.ID()
		for _, e := range cs.Entities() {
			if _, err := CallEntityAsync[struct{}](oc, e, "enter", me).Await(); err != nil {
				return "", err
			}
		}
		for _, e := range cs.Entities() {
			if _, err := CallEntityAsync[struct{}](oc, e, "leave", me).Await(); err != nil {
				return "", err
			}
		}
		if oc.Rand().IntN(2) == 0 {
			cs.Unlock() // else the end of the body releases them
		}
		return "ok", nil
	})
}

func (n *simNet) start(name string) { n.startApp(name, newSimApp(name)) }

// startApp starts a node running app. (A crash restarts it as newSimApp.)
func (n *simNet) startApp(name string, app *App[durState]) {
	node := &simNode{name: name, app: app, produced: map[string]int{}, sent: map[string]int{}}
	node.sess = newSession(node.app, name)
	n.nodes[name], n.names = node, append(n.names, name)
	out := n.feed(node, logfmt.SeqControl, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil)
	var init []byte
	n.parse(node, out, func(m logfmt.Message) { init = bytes.Clone(m.Data) })
	n.logAndHandle(node, logfmt.AppendInitialMessage(nil, init), false)
}

func (n *simNet) feed(node *simNode, seq int64, body []byte, state io.Reader) []byte {
	n.t.Helper()
	out, err := node.sess.record(logfmt.WireHeader{Seq: seq}, body, state)
	if err != nil {
		n.t.Fatalf("%s: %v", node.name, err)
	}
	return bytes.Clone(out.Bytes())
}

// parse handles a node's output: RPCs go to the queues (those the node's
// earlier incarnation sent already are dropped), a checkpoint is kept, an
// InitialMessage goes to onInit.
func (n *simNet) parse(node *simNode, out []byte, onInit func(logfmt.Message)) {
	n.t.Helper()
	rpc := func(data []byte) {
		o, err := logfmt.ParseOutgoingRPC(data)
		if err != nil {
			n.t.Fatalf("%s sent a bad RPC: %v", node.name, err)
		}
		dest := string(o.Dest)
		if dest == "" {
			dest = node.name
		}
		node.produced[dest]++
		if node.produced[dest] <= node.sent[dest] {
			return // sent before the crash
		}
		node.sent[dest]++
		r := o.RPC
		r.Args = bytes.Clone(r.Args)
		k := [2]string{node.name, dest}
		n.queues[k] = append(n.queues[k], logfmt.AppendRPC(nil, r))
	}
	// Records' output is plain messages; only control records' output may
	// end in a Checkpoint, whose state follows its frame.
	it := logfmt.NewMessageIter(out)
	next := it.Next
	var mr *logfmt.MessageReader
	if onInit != nil || bytes.Contains(out, []byte{byte(logfmt.TypeCheckpoint)}) {
		mr = logfmt.NewMessageReader(bytes.NewReader(out))
		next = func() (logfmt.Message, bool) {
			m, err := mr.Next()
			if err != nil && err != io.EOF {
				n.t.Fatalf("%s output: %v", node.name, err)
			}
			return m, err == nil
		}
	}
	for {
		m, ok := next()
		if !ok {
			return
		}
		switch m.Type {
		case logfmt.TypeRPC:
			rpc(m.Data)
		case logfmt.TypeRPCBatch:
			b, err := logfmt.ParseBatch(m)
			if err != nil {
				n.t.Fatal(err)
			}
			it := b.Iter()
			for sub, ok := it.Next(); ok; sub, ok = it.Next() {
				rpc(sub.Data)
			}
		case logfmt.TypeCheckpoint:
			if mr == nil {
				n.t.Fatalf("%s sent a checkpoint in a record's output", node.name)
			}
			st, err := io.ReadAll(mr.State())
			if err != nil {
				n.t.Fatal(err)
			}
			node.ckState, node.ckNext, node.ckSent = st, len(node.log)+1, maps(node.produced)
		case logfmt.TypeInitialMessage:
			onInit(m)
		case logfmt.TypeAttachTo, logfmt.TypeTakeCheckpoint:
		default:
			n.t.Fatalf("%s sent %v", node.name, m.Type)
		}
	}
}

func maps(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// logAndHandle logs a record at node and handles it; with lose, the node
// crashes after handling it, before its output leaves.
func (n *simNet) logAndHandle(node *simNode, body []byte, lose bool) {
	node.log = append(node.log, body)
	out := n.feed(node, int64(len(node.log)), body, nil)
	if lose {
		n.crash(node)
		return
	}
	n.parse(node, out, nil)
}

func (n *simNet) checkpoint(node *simNode) {
	n.parse(node, n.feed(node, logfmt.SeqControl, logfmt.AppendControl(nil, logfmt.TypeTakeCheckpoint), nil), nil)
}

// crash replaces the node by a new process recovering from its checkpoint.
func (n *simNet) crash(node *simNode) {
	node.crashes++
	node.app.mu.Lock()
	abortOrchestrations(node.app.bind.dur)
	node.app.mu.Unlock()
	node.app = newSimApp(node.name)
	node.sess = newSession(node.app, node.name)
	node.produced = maps(node.ckSent)
	n.feed(node, logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(node.ckState))), bytes.NewReader(node.ckState))
	for seq := node.ckNext; seq <= len(node.log); seq++ {
		n.parse(node, n.feed(node, int64(seq), node.log[seq-1], nil), nil)
	}
	n.parse(node, n.feed(node, logfmt.SeqControl, logfmt.AppendControl(nil, logfmt.TypeTakeBecomingPrimaryCheckpoint), nil), nil)
}

// deliver moves one random message to its destination's log and handles
// it, crashing nodes now and then.
func (n *simNet) deliver() bool {
	var keys [][2]string
	for k, q := range n.queues {
		if len(q) > 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return false
	}
	slices.SortFunc(keys, func(a, b [2]string) int { return strings.Compare(a[0]+" "+a[1], b[0]+" "+b[1]) })
	k := keys[n.rng.IntN(len(keys))]
	msg := n.queues[k][0]
	n.queues[k] = n.queues[k][1:]
	node := n.nodes[k[1]]
	n.deliveries++
	x := n.rng.IntN(100)
	if n.crashAt > 0 {
		x = 100
		if n.deliveries == n.crashAt {
			x = 4 * n.crashKind
		}
	}
	switch {
	case x < 4: // logged, then the node dies before handling it
		node.log = append(node.log, msg)
		n.crash(node)
	case x < 8: // handled, then the node dies before its output leaves
		n.logAndHandle(node, msg, true)
	default:
		n.logAndHandle(node, msg, false)
	}
	if !n.noCkpt && (n.rng.IntN(10) == 0 || n.crashAt > 0 && n.deliveries%3 == 0) {
		n.checkpoint(node)
	}
	return true
}

func (n *simNet) stopAll() {
	for _, node := range n.nodes {
		node.app.mu.Lock()
		abortOrchestrations(node.app.bind.dur)
		node.app.mu.Unlock()
	}
}

// startSection has the driver start a section orchestration on a node.
func (n *simNet) startSection(name string, set []EntityID) {
	args, _ := json.Marshal(startArgs{Orch: "section", Arg: set})
	env := Envelope{Method: "start", Payload: args}
	k := [2]string{"driver", name}
	n.queues[k] = append(n.queues[k], logfmt.AppendRPC(nil, logfmt.RPC{MethodID: MethodID("start"), Kind: logfmt.RPCFork, Args: env.Append(nil)}))
}

// checkDrained checks a drained network: sections sections finished, each
// ok, guards entered entered times in all, nothing locked, queued or in
// flight.
func (n *simNet) checkDrained(what string, sections, entered int) {
	t := n.t
	t.Helper()
	done, in := 0, 0
	for _, name := range n.names {
		node := n.nodes[name]
		n.checkpoint(node)
		s, _ := node.app.State()
		for _, r := range s.Results {
			if r != `section: "ok"` {
				t.Errorf("%s: %s: %s", what, name, r)
			}
			done++
		}
		d := node.app.bind.dur
		if len(d.Orchestrations) != 0 {
			t.Errorf("%s: %s: %d orchestrations still in flight (deadlock?)", what, name, len(d.Orchestrations))
		}
		for k, e := range d.Entities {
			if e.LockedBy != "" || len(e.Queue) != 0 {
				t.Errorf("%s: %s: %s left locked by %q, %d queued", what, name, k, e.LockedBy, len(e.Queue))
			}
			var g guardState
			json.Unmarshal(e.State, &g)
			in += g.Entered
		}
	}
	if done != sections {
		t.Errorf("%s: %d sections finished, want %d", what, done, sections)
	}
	if in != entered {
		t.Errorf("%s: guards entered %d times, want %d (each section enters each of its guards once)", what, in, entered)
	}
}

func runLockFuzz(t *testing.T, seed uint64) {
	n := &simNet{t: t, rng: rand.New(rand.NewPCG(seed, 7)), nodes: map[string]*simNode{}, queues: map[[2]string][][]byte{}}
	defer n.stopAll()
	for i := range 3 {
		n.start(fmt.Sprintf("n%d", i))
	}
	// Orchestrations on every node lock random sets of guards spread over
	// the nodes; started by forks from outside ("driver").
	const guards = 5
	total, wantEntered, crashes := 0, 0, 0
	for _, name := range n.names {
		for range 2 + n.rng.IntN(3) {
			var set []EntityID
			for g := range guards {
				if n.rng.IntN(3) == 0 {
					set = append(set, EntityID{Instance: fmt.Sprintf("n%d", g%3), Name: "guard", Key: fmt.Sprint(g)})
				}
			}
			if len(set) == 0 {
				set = append(set, EntityID{Instance: "n0", Name: "guard", Key: "0"})
			}
			wantEntered += len(set)
			n.rng.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
			n.startSection(name, set)
			total++
		}
	}
	for steps := 0; n.deliver(); steps++ {
		if steps > 100000 {
			t.Fatal("the network does not drain")
		}
	}
	n.checkDrained(fmt.Sprintf("seed %d", seed), total, wantEntered)
	for _, node := range n.nodes {
		crashes += node.crashes
	}
	if testing.Verbose() {
		t.Logf("seed %d: %d sections, %d guard entries, %d crashes", seed, total, wantEntered, crashes)
	}
}

// TestLockAcrossInstancesCrashAtEveryStep locks guards on three instances
// from an orchestration on n0, with a rival on n1 locking an
// overlapping set, and crashes the receiving node at each delivery in turn:
// every lock request, forward, grant, call, result and release is once
// logged-but-unhandled and once handled-but-unsent. Each run must end with
// both sections done once and nothing locked.
func TestLockAcrossInstancesCrashAtEveryStep(t *testing.T) {
	run := func(crashAt, kind int) int {
		n := &simNet{t: t, rng: rand.New(rand.NewPCG(3, 7)), nodes: map[string]*simNode{}, queues: map[[2]string][][]byte{}, crashAt: crashAt, crashKind: kind}
		defer n.stopAll()
		for i := range 3 {
			n.start(fmt.Sprintf("n%d", i))
		}
		g := func(inst, key string) EntityID { return EntityID{Instance: inst, Name: "guard", Key: key} }
		n.startSection("n0", []EntityID{g("n2", "x"), g("n1", "y"), g("n0", "z")})
		n.startSection("n1", []EntityID{g("n0", "z"), g("n2", "x")})
		for steps := 0; n.deliver(); steps++ {
			if steps > 10000 {
				t.Fatal("the network does not drain")
			}
		}
		n.checkDrained(fmt.Sprintf("crash at delivery %d (kind %d)", crashAt, kind), 2, 5)
		return n.deliveries
	}
	total := run(0, 0)
	t.Logf("%d deliveries; crashing at each, two ways", total)
	if total < 20 {
		t.Fatalf("the scenario took %d deliveries; the test is not testing much", total)
	}
	for at := 1; at <= total; at++ {
		for kind := range 2 {
			run(at, kind)
			if t.Failed() {
				return
			}
		}
	}
}

func TestLockProtocolFuzz(t *testing.T) {
	for seed := range uint64(*lockSeeds) {
		runLockFuzz(t, seed+1)
		if t.Failed() {
			return
		}
	}
}

func FuzzLockProtocol(f *testing.F) {
	f.Add(uint64(1))
	f.Add(uint64(99))
	f.Fuzz(func(t *testing.T, seed uint64) { runLockFuzz(t, seed) })
}

// A lock set with an entity on an instance that hosts none: the request
// reaches it after the first entity is granted; that instance answers the
// call with an error, Lock returns it, and the granted entity is released.
func TestLockOnInstanceWithoutEntities(t *testing.T) {
	n := &simNet{t: t, rng: rand.New(rand.NewPCG(5, 7)), nodes: map[string]*simNode{}, queues: map[[2]string][][]byte{}, crashAt: 1 << 62, noCkpt: true}
	defer n.stopAll()
	n.start("n0")
	plain := New(func() durState { return durState{} }, WithLogger(quietLogger()))
	Handle(plain, "noop", func(*Ctx, *durState, struct{}) (struct{}, error) { return struct{}{}, nil })
	plain.SetName("plain")
	n.startApp("plain", plain)
	n.startSection("n0", []EntityID{{Instance: "plain", Name: "guard", Key: "b"}, {Instance: "n0", Name: "guard", Key: "a"}})
	for n.deliver() {
	}
	s, _ := n.nodes["n0"].app.State()
	if len(s.Results) != 1 || !strings.Contains(s.Results[0], "call to section failed: immortal: call to lock of [n0/guard@a plain/guard@b] failed: immortal: plain has no handler for method ambr.entity") {
		t.Errorf("results %q", s.Results)
	}
	d := n.nodes["n0"].app.bind.dur
	if e := d.Entities["guard@a"]; e == nil || e.LockedBy != "" || len(d.Orchestrations) != 0 {
		t.Errorf("guard@a %+v, %d orchestrations left", e, len(d.Orchestrations))
	}
}
