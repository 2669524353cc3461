package engine

import (
	"fmt"

	"github.com/ambr-dev/ambr/logfmt"
)

// A following Core is the state machine of a hot standby or a
// checkpointer: it recovers from a checkpoint like any recovery, but then
// the caller keeps feeding it the records the primary logs (ReplayRecord),
// as they become committed, instead of calling FinishRecovery. It never
// logs anything: the app's output is regenerated output (deduplicated by
// the receivers once it is sent, which only a primary does), its
// self-calls are matched against the records that arrive, and impulses are
// refused as in any recovery. A standby's Core becomes a primary's with
// Promote: the app gets BecomingPrimary and no checkpoint is asked for. A
// checkpointer's Core takes checkpoints with FollowerCheckpoint.

// StartFollowing begins following from checkpoint ck: as StartRecovery,
// but the Core stays a follower until Promote.
func (c *Core) StartFollowing(ck *logfmt.Checkpoint, newSegment uint64) {
	c.StartRecovery(ck, newSegment)
	c.following = true
}

// Following reports whether the Core follows a primary's log.
func (c *Core) Following() bool { return c.following }

// followed keeps the own output stream in step with the records fed: the
// self-calls they hold are logged, so the regenerated ones are dropped as
// they come, and those already made are acknowledged.
//
// It also matches the points the output stream has reached already (a
// record the app answers with nothing): a follower of an app that sends
// little would otherwise keep every record it fed for the nondeterminism
// report, for as long as it follows.
func (c *Core) followed() {
	c.loggedSelf = c.inWM[c.cfg.Name]
	if s := c.outs[c.cfg.Name]; s != nil {
		s.ack(c.loggedSelf)
	}
	c.checkExpectations()
}

// Promote makes a following Core a primary's: every committed record up to
// the seal has been fed; records from now on go to newSegment, above every
// segment and checkpoint present. Self-calls the app made that no fed
// record holds are logged now (the old primary's app made them, but they
// never reached its log); the app gets BecomingPrimary, then new input.
// The app may still be replaying what was fed: its regenerated output is
// deduplicated as in recovery, and compared with the log's digests.
func (c *Core) Promote(newSegment uint64) error {
	if !c.following {
		return fmt.Errorf("promote: the coordinator is %s, not following", c.phase)
	}
	c.following, c.promoted, c.replayOpen = false, true, false
	c.segment, c.segmentBytes = newSegment, 0
	c.checkExpectations()
	c.loggedSelf = c.inWM[c.cfg.Name]
	if s := c.outs[c.cfg.Name]; s != nil {
		s.ack(c.loggedSelf)
		for i := range s.unacked.len() {
			m := s.unacked.at(i)
			c.appendInput(c.cfg.Name, m.seq, m.data)
		}
	}
	c.phase = phaseLive
	c.enqueueControl(logfmt.TypeBecomingPrimary)
	if c.wantCheckpoint && c.awaiting == nil && c.inFlight == 0 {
		c.RequestCheckpoint()
	}
	return nil
}

// FollowerCheckpoint asks a following app for checkpoint n: the state
// before segment n's first record, which the caller feeds after this call.
// False if a checkpoint is still asked for or being written.
func (c *Core) FollowerCheckpoint(n uint64) bool {
	if !c.following || c.awaiting != nil || c.inFlight != 0 {
		return false
	}
	c.awaiting = &pendingCheckpoint{number: n, nextSeq: c.nextSeq, inputs: c.watermarks()}
	c.enqueueControl(logfmt.TypeTakeCheckpoint)
	return true
}

// SetExternalCheckpoints says whether a checkpointer takes the checkpoints:
// then a full segment only rolls to the next, and the primary's app never
// pauses to checkpoint. Turned off (the checkpointer died), the next full
// segment is checkpointed here again.
func (c *Core) SetExternalCheckpoints(on bool) { c.externalCheckpoints = on }

// rollSegment starts a new segment at the next record boundary without a
// checkpoint (a checkpointer will take it).
func (c *Core) rollSegment() {
	c.sealOpen()
	c.segment++
	c.segmentBytes = 0
}

// TrimOutput drops buffered output dest has logged up to seq, as the
// primary learned from dest's acknowledgements: a follower gets no
// acknowledgements of its own, and without this its buffers (and a
// checkpointer's checkpoints) would hold every message since it started.
func (c *Core) TrimOutput(dest string, seq int64) {
	if dest == c.cfg.Name {
		return
	}
	if s := c.outs[dest]; s != nil {
		s.ack(min(seq, s.lastSeq)) // what it has not made yet it will trim next time
	}
}
