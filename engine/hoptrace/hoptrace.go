// Package hoptrace times the hops of a message through the engine: the
// binding's write to its coordinator, the coordinator's read, its loop, the
// peer link, the log writer's write and sync, the delivery to the app. It
// is for `ambr bench latency`, which turns it on for one run of calls at
// one in flight, where every call goes through the same points in the same
// order, and reports the median time between each point and the next.
//
// Off (the default) a point costs one atomic load. On, each point appends a
// timestamp under a mutex, up to maxEvents, so it is for benchmarks, never
// for production. The points are process-wide: the run it measures must
// have its coordinators and apps in one process (the bench's hosted nodes).
package hoptrace

import (
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Point is a place on the message path.
type Point byte

// The points, in the order a call at one in flight passes them (twice per
// call: the request to the server, the result back to the client).
const (
	AppWrite     Point = iota + 1 // the binding writes messages to its coordinator
	CoordRead                     // the coordinator has read one from the app
	LoopApp                       // its loop handles it
	LoopPeerSend                  // its loop queues messages for a peer link
	PeerWritten                   // the peer link has written them to the connection
	PeerRead                      // the receiving coordinator has read a message frame
	LoopPeer                      // its loop handles the frame's messages
	LogWrite                      // the log writer starts a write
	LogSynced                     // its fdatasync has returned
	LoopDurable                   // the loop handles the durable report
	LoopToApp                     // the loop hands records to the app sender
	AppSend                       // the app sender takes them to write
	AppRead                       // the binding has read a record from its coordinator
)

var names = [...]string{AppWrite: "app writes", CoordRead: "coordinator reads", LoopApp: "loop: app message",
	LoopPeerSend: "loop: to peer link", PeerWritten: "peer link written", PeerRead: "peer frame read",
	LoopPeer: "loop: peer messages", LogWrite: "log write", LogSynced: "log synced", LoopDurable: "loop: durable",
	LoopToApp: "loop: to app sender", AppSend: "app sender writes", AppRead: "app reads record"}

func (p Point) String() string {
	if int(p) < len(names) && names[p] != "" {
		return names[p]
	}
	return "?"
}

// maxEvents bounds the memory of a trace: 16 bytes each.
const maxEvents = 1 << 20

type event struct {
	p Point
	t int64
}

var (
	on    atomic.Bool
	mu    sync.Mutex
	evs   []event
	epoch = time.Now()
)

// Mark records that the path reached p, when tracing is on.
func Mark(p Point) {
	if !on.Load() {
		return
	}
	t := int64(time.Since(epoch))
	mu.Lock()
	if len(evs) < maxEvents {
		evs = append(evs, event{p, t})
	}
	mu.Unlock()
}

// Start clears the trace and turns tracing on.
func Start() {
	mu.Lock()
	evs = evs[:0]
	mu.Unlock()
	on.Store(true)
}

// Stop turns tracing off and returns the breakdown of what was traced.
func Stop() Breakdown {
	on.Store(false)
	mu.Lock()
	e := evs
	evs = nil
	mu.Unlock()
	return breakdown(e)
}

// Hop is the time from one point to the next in the cycle.
type Hop struct {
	From     string  `json:"from"`
	To       string  `json:"to"`
	MedianUs float64 `json:"median_us"`
}

// Breakdown is the dominant cycle of a trace: the sequence of points that
// starts at AppWrite and repeats most often, as hops with their medians.
type Breakdown struct {
	// Cycles is how many whole cycles matched; Events all that were marked.
	Cycles int `json:"cycles"`
	Events int `json:"events"`
	// CycleUs is the median of a whole cycle, first point to the next
	// cycle's first; the hops' medians need not add up to it.
	CycleUs float64 `json:"cycle_us"`
	Hops    []Hop   `json:"hops"`
}

// breakdown finds the cycle: the most frequent sequence between two
// AppWrite points after one (a call at one in flight passes AppWrite twice:
// the client's call, the server's result), taken as the pair of them.
func breakdown(e []event) Breakdown {
	b := Breakdown{Events: len(e)}
	var starts []int
	for i, x := range e {
		if x.p == AppWrite {
			starts = append(starts, i)
		}
	}
	// A cycle is two consecutive AppWrite-to-AppWrite spans.
	key := func(i, j int) string {
		var sb strings.Builder
		for _, x := range e[i:j] {
			sb.WriteByte(byte(x.p))
		}
		return sb.String()
	}
	counts := map[string]int{}
	for k := 0; k+2 < len(starts); k++ {
		counts[key(starts[k], starts[k+2])]++
	}
	best, n := "", 0
	for k, c := range counts {
		if c > n || c == n && k < best {
			best, n = k, c
		}
	}
	if n == 0 {
		return b
	}
	// The two halves pass the same points: they are told apart by the
	// parity of their AppWrite from the first whole cycle, so a call with a
	// stray point between its AppWrites is left out whole rather than read
	// as its second half and the next call's first. (A stray AppWrite
	// would swap the halves from there on; a run at one in flight has
	// none once the calls have begun.)
	first := 0
	for first+2 < len(starts) && key(starts[first], starts[first+2]) != best {
		first++
	}
	var hops [][]int64
	var cycles []int64
	for k := first; k+2 < len(starts); k += 2 {
		i, j := starts[k], starts[k+2]
		if key(i, j) != best {
			continue
		}
		d := make([]int64, j-i)
		for m := i; m < j; m++ {
			d[m-i] = e[m+1].t - e[m].t
		}
		hops = append(hops, d)
		cycles = append(cycles, e[j].t-e[i].t)
	}
	b.Cycles = len(cycles)
	b.CycleUs = median(cycles)
	col := make([]int64, len(hops))
	for m := range len(best) {
		for c := range hops {
			col[c] = hops[c][m]
		}
		b.Hops = append(b.Hops, Hop{From: Point(best[m]).String(), To: Point(best[(m+1)%len(best)]).String(), MedianUs: median(col)})
	}
	return b
}

func median(xs []int64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]int64(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return float64(s[len(s)/2]) / 1e3
}
