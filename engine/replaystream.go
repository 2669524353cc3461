package engine

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/ambr-dev/ambr/logfmt"
)

// Recovery streams the log to the app while it reads it: a reader
// goroutine reads and verifies the records after the checkpoint and hands
// them to the conversation's loop in batches, which replays them into the
// Core and sends them to the app, so that the app loads the checkpoint and
// replays while the rest of the log is still being read, and memory holds
// the read-ahead rather than the whole log. Its sizes are variables so
// that a test can shrink them.
var (
	// replayAheadMin and replayAheadMax bound how far the reader runs
	// ahead of the app (replayAhead): it waits while the bytes handed to
	// the app sender and not yet written to the app reach it.
	replayAheadMin int64 = 8 << 20
	replayAheadMax int64 = 256 << 20
	// replayBatchBytes is the size a batch of records reaches before the
	// reader hands it over (a record larger than that goes alone).
	replayBatchBytes = 256 << 10
)

// replayBatches is how many batches wait between the reader and the loop.
const replayBatches = 4

// replayItem is a record read from the log and its wire record for the
// app, built once: rec.Messages is the body of wire.
type replayItem struct {
	rec  logfmt.Record
	wire []byte
}

// replayBatch is what the log reader hands the loop: records in order,
// then, in the last batch, the end of the log or the error that ended
// recovery.
type replayBatch struct {
	items []replayItem
	bytes int
	err   error // the log is damaged (or could not be read or repaired)
	end   bool  // the log ended cleanly; rec's notes and tail are set
}

var errReplayStopped = errors.New("replay stopped")

// replayAhead is how far the log reader may run ahead of the app after a
// checkpoint of state bytes: as far as the checkpoint is large (within
// replayAheadMin and replayAheadMax), so that while the app loads the
// checkpoint, reading nothing, the reader keeps reading the log instead of
// waiting after a few MiB, and recovery holds at most about as much log as
// it holds checkpoint.
func replayAhead(state int) int64 {
	return min(max(int64(state), replayAheadMin), replayAheadMax)
}

// streamLog reads the log after rec's checkpoint in a goroutine of its own
// (rec.readLogOwn, with every rule about torn tails and damage) and hands
// its records to the channel it returns, each with its wire record under
// committer, in batches of batchBytes (or one record larger). Before it
// hands a batch it calls wait, which blocks while the app is behind and
// returns false once the reader should stop. The last batch it sends has
// err or end set. It stops without one once stop is closed, and calls
// finished when it is gone.
func streamLog(rec *recovered, committer int32, batchBytes int, wait func() bool, stop <-chan struct{}, finished func()) <-chan replayBatch {
	ch := make(chan replayBatch, replayBatches)
	send := func(b replayBatch) bool {
		select {
		case ch <- b:
			return true
		case <-stop:
			return false
		}
	}
	go func() {
		defer finished()
		var b replayBatch
		err := rec.readLogOwn(true, func(r *logfmt.Record, raw []byte) error {
			wire := wireInPlace(raw, r, committer)
			it := replayItem{rec: *r, wire: wire}
			it.rec.Messages = wire[logfmt.WireHeaderSize:]
			it.rec.Sources = append([]logfmt.Source(nil), r.Sources...)
			b.items = append(b.items, it)
			b.bytes += len(wire)
			if b.bytes < batchBytes {
				return nil
			}
			if !wait() || !send(b) {
				return errReplayStopped
			}
			b = replayBatch{}
			return nil
		})
		if errors.Is(err, errReplayStopped) {
			return
		}
		b.err, b.end = err, err == nil
		send(b)
	}()
	return ch
}

// wireInPlace returns the wire record of r, whose encoded bytes raw are its
// own: the wire header is written over the end of the record's fixed part
// and sources, which were decoded into r already, right before its
// messages, so that the messages are not copied again. (A record's fixed
// part alone is longer than a wire header.)
func wireInPlace(raw []byte, r *logfmt.Record, committer int32) []byte {
	m := len(r.Messages)
	at := len(raw) - m - logfmt.WireHeaderSize
	if at < 0 || len(raw)-at > math.MaxInt32 || m > 0 && &raw[len(raw)-m] != &r.Messages[0] {
		// Not a record's bytes with its messages at the end: copy.
		return logfmt.AppendWireRecord(nil, committer, r.Seq, r.Messages)
	}
	wire := raw[at:]
	logfmt.AppendWireHeader(wire[:0], logfmt.WireHeader{CommitterID: committer, Size: int32(len(wire)), CheckBytes: logfmt.CheckBytes(r.Messages), Seq: r.Seq})
	return wire
}

// replayLog streams the log after rec's checkpoint to the Core and the app
// (streamLog) and ends recovery once all of it was read. What the app and
// its outgoing links send meanwhile is handled as it comes, as a
// follower's is (Core.replayOpen): output to other instances goes out as
// their links come up (not held to the output budget meanwhile: see
// readApp), regenerated self-calls are dropped once a record read holds
// them, those no record holds are logged by FinishRecovery, and a
// Checkpoint nobody asked for is a protocol error. (No other instance
// connects in: the peer listener starts afterwards.) The log's notes (a
// torn tail cut) are logged at the end; notes[:logged] already were.
func (v *conversation) replayLog(ctx context.Context, rec *recovered, logged int) error {
	// The checkpoint is among the bytes handed to the app sender until it
	// is written: the read-ahead comes on top of what of it is not written
	// yet (else the reader stopped after its first batch until the app had
	// read the state), and is replayAhead once it is (found in review: a
	// fixed state + replayAhead let the log run that far ahead of a
	// stalled app).
	state := v.stateSize.Load()
	ahead, ckpt := replayAhead(int(state)), state+checkpointRoom
	limit := func() int64 { return ahead + max(0, ckpt-v.sender.written.Load()) }
	v.wg.Add(1)
	batches := streamLog(rec, v.core.cfg.CommitterID, replayBatchBytes, func() bool {
		v.flow.waitToAppBelowFunc(v.done, limit)
		select {
		case <-v.done:
			return false
		default:
			return true
		}
	}, v.done, v.wg.Done)
	records := 0
	for end := false; !end; {
		if err := v.dispatch(v.core.Ready()); err != nil {
			return err
		}
		select {
		case b, ok := <-batches:
			if !ok {
				return fmt.Errorf("%w: recover: internal error: the log reader stopped", ErrFatal)
			}
			for i := range b.items {
				if err := v.core.ReplayWire(&b.items[i].rec, b.items[i].wire); err != nil {
					return fmt.Errorf("%w: recover: %w", ErrFatal, err)
				}
			}
			records += len(b.items)
			if b.err != nil {
				return fmt.Errorf("%w: %w", ErrFatal, b.err)
			}
			end = b.end
		case e := <-v.events:
			if err := v.handleBurst(e); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, n := range rec.notes[logged:] {
		v.c.log.Warn("recovery: " + n)
	}
	v.core.FinishRecovery()
	v.replaying.Store(false)
	v.c.publishCommitted(v.core.NextSeq() - 1)
	v.c.log.Info("recovering", "checkpoint", rec.checkpoint.Number, "records", records)
	return nil
}
