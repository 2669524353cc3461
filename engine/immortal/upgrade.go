package immortal

import (
	"fmt"
	"io"

	"github.com/ambr-dev/ambr/logfmt"
)

// processor is what Serve feeds records to: a session of the current code.
// An upgrade replaces it with a session of the next code.
type processor interface {
	record(h logfmt.WireHeader, body []byte, state io.Reader) (wireOut, error)
	afterRecord()
}

// switchCode is returned by a session that hands over to the next code.
type switchCode struct {
	next processor
	out  wireOut
}

func (e *switchCode) Error() string { return "immortal: switching to the next version" }

// Upgrade makes app carry the code of its next version: when the
// coordinator asks for the upgrade — UpgradeService in an upgrade test (the
// recorded history then runs on the new code), UpgradeTakeCheckpoint in a
// live upgrade (the new code then checkpoints its converted state) — the
// binding converts the state with convert and hands everything that follows
// to next's handlers. The binding's own bookkeeping (pending calls, call
// ids) carries over, so next must register result handlers under the same
// names as app for calls that may be pending.
//
//	v1 := counter.NewServer(os.Stdout)             // the code that runs today
//	v2 := immortal.New(func() StateV2 { return StateV2{} })
//	immortal.Handle(v2, "Inc", incV2)
//	immortal.Upgrade(v1, v2, func(s counter.ServerState) (StateV2, error) {
//		return StateV2{Value: s.Count, Version: 2}, nil
//	})
//	immortal.Main(v1)
func Upgrade[S, S2 any](app *App[S], next *App[S2], convert func(S) (S2, error)) {
	app.checkOpen("Upgrade")
	// An instance upgraded already checkpoints next's state: load it into
	// next (or a version after it) directly.
	app.adopt = func(old *session[S], stateType string, data []byte) (*switchCode, bool, error) {
		app.lmu.Lock()
		w, name := app.wire, app.name
		app.lmu.Unlock()
		next.lmu.Lock()
		next.frozen, next.wire, next.name = true, w, name
		next.lmu.Unlock()
		ns := newSession(next, old.rt.name)
		next.mu.Lock()
		defer next.mu.Unlock()
		if stateType != next.stateType {
			if next.adopt == nil {
				return nil, false, nil
			}
			return next.adopt(ns, stateType, data)
		}
		if err := ns.decodeInto(data); err != nil {
			return nil, true, err
		}
		return &switchCode{next: ns}, true, nil
	}
	app.upgrade = func(old *session[S], takeCheckpoint bool) (*switchCode, error) {
		// The bodies of orchestrations re-run on next's code, from their
		// history, when their next result arrives.
		abortOrchestrations(app.bind.dur)
		st, err := convert(app.state)
		if err != nil {
			return nil, fmt.Errorf("converting the state to the next version failed: %w", err)
		}
		next.mu.Lock()
		next.state, next.bind, next.started = st, app.bind, true
		next.mu.Unlock()
		app.lmu.Lock()
		w, name := app.wire, app.name
		app.lmu.Unlock()
		next.lmu.Lock()
		next.frozen, next.wire, next.name = true, w, name
		next.lmu.Unlock()
		ns := newSession(next, old.rt.name)
		ns.phase = old.phase
		sw := &switchCode{next: ns}
		if takeCheckpoint {
			next.mu.Lock()
			err := ns.checkpoint()
			next.mu.Unlock()
			if err != nil {
				return nil, err
			}
			ns.rt.out.flush()
			sw.out = ns.rt.out.take()
		}
		return sw, nil
	}
}

// afterRecord publishes the session's phase to its app (impulses are allowed
// once it is primary).
func (s *session[S]) afterRecord() { s.app.setPhase(s.phase) }

// IncompatibleStateError says a checkpoint holds a state of another type
// than the build's: the build is not this instance's app, or it needs an
// Upgrade from that type. The binding refuses to go on rather than decode
// the state into a type it was not written from; immortal.Main exits with
// ExitIncompatibleState, and `ambr run` stops on it without a restart.
type IncompatibleStateError struct {
	Checkpoint, Build string
}

func (e *IncompatibleStateError) Error() string {
	return fmt.Sprintf("the instance's checkpoint holds a state of type %s, but this build's state is %s: "+
		"this build is not the instance's app, or it needs immortal.Upgrade from %s (a renamed type keeps its name with immortal.WithStateType); nothing was changed",
		e.Checkpoint, e.Build, e.Checkpoint)
}

// ExitIncompatibleState is the exit code of immortal.Main for an
// IncompatibleStateError (EX_CONFIG in sysexits.h).
const ExitIncompatibleState = 78
