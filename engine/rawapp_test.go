package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/ambr-dev/ambr/logfmt"
)

// rawApp is a hand-written app that speaks the app protocol with logfmt's
// codec only (not the Go binding): a counter that, once started, calls its
// own method 1 ("Inc") by self-fork until its count reaches target. Its state
// is the count as 8 little-endian bytes. It checks the protocol as it goes:
// records in sequence, the right conversation order.
type rawApp struct {
	target int64

	mu        sync.Mutex
	count     int64
	primary   bool
	replaying bool
	lastSeq   int64 // highest record sequence number seen
	seen      []int64
	err       error
	// impulses sends this many impulses (method 2) once primary.
	impulses  int
	impulsed  int64 // impulses processed
	delivered atomic.Int64
	reachedCh chan struct{}
	reachOnce sync.Once
}

func newRawApp(target int64) *rawApp {
	return &rawApp{target: target, reachedCh: make(chan struct{})}
}

func (a *rawApp) state() []byte {
	return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, uint64(a.count)), uint64(a.impulsed))
}

// reached says the app has done all its work; call with a.mu held.
func (a *rawApp) reached() bool { return a.count >= a.target && a.impulsed >= int64(a.impulses) }

// run speaks the protocol until the connection ends.
func (a *rawApp) run(ctx context.Context, toIC io.WriteCloser, fromIC io.ReadCloser) error {
	defer toIC.Close()
	defer fromIC.Close()
	go func() {
		<-ctx.Done()
		toIC.Close()
		fromIC.Close()
	}()
	w := bufio.NewWriter(toIC)
	rr := logfmt.NewRecordReader(fromIC)
	inc := logfmt.RPC{MethodID: 1, Kind: logfmt.RPCFork}
	gotCheckpoint := false
	for {
		h, body, err := rr.Next()
		if err != nil {
			return err
		}
		if h.Seq >= 1 {
			a.mu.Lock()
			if a.lastSeq != 0 && h.Seq != a.lastSeq+1 {
				a.err = fmt.Errorf("record %d after %d", h.Seq, a.lastSeq)
			}
			a.lastSeq = h.Seq
			a.seen = append(a.seen, h.Seq)
			a.mu.Unlock()
			a.delivered.Store(h.Seq)
		}
		it := logfmt.NewMessageIter(body)
		for {
			m, ok := it.Next()
			if !ok {
				break
			}
			switch m.Type {
			case logfmt.TypeCheckpoint:
				state, err := io.ReadAll(rr.State())
				if err != nil {
					return err
				}
				if len(state) != 16 {
					return fmt.Errorf("checkpoint state of %d bytes", len(state))
				}
				a.mu.Lock()
				a.count = int64(binary.LittleEndian.Uint64(state))
				a.impulsed = int64(binary.LittleEndian.Uint64(state[8:]))
				a.replaying = true
				gotCheckpoint = true
				a.mu.Unlock()
			case logfmt.TypeTakeBecomingPrimaryCheckpoint, logfmt.TypeUpgradeTakeCheckpoint: // no conversion: the state's layout stays
				a.mu.Lock()
				if !gotCheckpoint {
					// First start: InitialMessage, then the initial state.
					w.Write(logfmt.AppendInitialMessage(nil, []byte("start")))
				}
				w.Write(logfmt.AppendCheckpointMessage(nil, 16))
				w.Write(a.state())
				a.primary, a.replaying = true, false
				n := a.impulses
				a.mu.Unlock()
				for i := 0; i < n; i++ {
					w.Write(logfmt.AppendOutgoingRPC(nil, "", logfmt.RPC{MethodID: 2, Kind: logfmt.RPCImpulse, Args: []byte{byte(i)}}))
				}
			case logfmt.TypeTakeCheckpoint:
				a.mu.Lock()
				w.Write(logfmt.AppendCheckpointMessage(nil, 16))
				w.Write(a.state())
				a.mu.Unlock()
			case logfmt.TypeInitialMessage:
				if string(m.Data) != "start" {
					return fmt.Errorf("echoed InitialMessage %q", m.Data)
				}
				w.Write(logfmt.AppendOutgoingRPC(nil, "", inc))
			case logfmt.TypeRPC:
				r, err := logfmt.ParseRPC(m.Data)
				if err != nil {
					return err
				}
				a.mu.Lock()
				switch r.MethodID {
				case 1:
					a.count++
					if a.count < a.target {
						w.Write(logfmt.AppendOutgoingRPC(nil, "", inc))
					}
				case 2:
					a.impulsed++
				}
				a.mu.Unlock()
			default:
				return fmt.Errorf("unexpected %s from the coordinator", m.Type)
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		if err := w.Flush(); err != nil {
			return err
		}
		// Done once primary with all work done, and only after what this
		// record produced (a checkpoint, say) has left for the coordinator.
		a.mu.Lock()
		done := a.primary && !a.replaying && a.reached()
		a.mu.Unlock()
		if done {
			a.reachOnce.Do(func() { close(a.reachedCh) })
		}
	}
}

// resetConn forgets per-connection ordering, for a reconnect.
func (a *rawApp) resetConn() {
	a.mu.Lock()
	a.lastSeq = 0
	a.primary = false
	a.mu.Unlock()
}

var errStop = errors.New("stop")
