package engine

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"github.com/ambr-dev/ambr/logfmt"
)

// phase is where the coordinator is in its conversation with the app.
type phase int

const (
	// phaseIdle: neither started nor recovering.
	phaseIdle phase = iota
	// phaseFirstStart: TakeBecomingPrimaryCheckpoint sent, waiting for the
	// app's InitialMessage and initial Checkpoint.
	phaseFirstStart
	// phaseRecovering: checkpoint and log are being replayed; the app's
	// output is regenerated output, deduplicated against the log.
	phaseRecovering
	// phaseLive: normal processing.
	phaseLive
)

func (p phase) String() string {
	return [...]string{"idle", "first start", "recovering", "live"}[p]
}

// NondeterminismPolicy says what the coordinator does when a replay produces
// output that differs from what the log recorded.
type NondeterminismPolicy int

const (
	// NondeterminismStop stops the coordinator with an error naming the record.
	NondeterminismStop NondeterminismPolicy = iota
	// NondeterminismWarn reports the record and carries on.
	NondeterminismWarn
)

// CoreConfig configures a Core.
type CoreConfig struct {
	// Name is the instance's name; self-calls are logged under it.
	Name string
	// CommitterID goes into the header of every record sent to the app.
	CommitterID int32
	// SegmentSize is the log size at which the coordinator rolls to a new
	// segment and takes a checkpoint. 0 means never by size.
	SegmentSize int64
	// Now is the clock used to time-stamp records. Tests inject their own.
	Now func() time.Time
	// Nondeterminism is the policy for replays that differ from the log.
	Nondeterminism NondeterminismPolicy
	// AppVersion is stored in checkpoints.
	AppVersion uint32
	// Upgrade makes the end of recovery an upgrade: the app is asked for
	// UpgradeTakeCheckpoint (convert the state, switch to the next code,
	// checkpoint) instead of TakeBecomingPrimaryCheckpoint.
	Upgrade bool
	// SenderGates lets Ready hand over deliveries of records not yet
	// reported durable, each with the record it waits for in ToAppGate, so
	// that a sender told of durability by the log writer itself can write
	// them without a round trip through the caller's loop.
	SenderGates bool
}

// LogWrite is one record for the log writer, with the segment it belongs in.
// Records arrive in sequence order; a higher Segment than the previous
// write's means "roll to a new segment before this record".
type LogWrite struct {
	Segment uint64
	Record  *logfmt.Record
}

// Ready is what the Core wants done, in the order the caller must do it:
// persist Log (the writer syncs before reporting LogDurable), write
// Checkpoint (then the MANIFEST, then report CheckpointDurable), send ToApp.
// Nothing in ToApp depends on a write that has not been reported durable,
// except, with CoreConfig.SenderGates, what ToAppGate says waits for one.
type Ready struct {
	Log        []LogWrite
	Checkpoint *logfmt.Checkpoint
	// ToApp is bytes for the app's send connection, in order.
	ToApp [][]byte
	// ToAppGate is set with CoreConfig.SenderGates: ToAppGate[i] is the log
	// record ToApp[i] waits for (0: none). The caller writes ToApp in order,
	// each once its record is reported durable by the log writer: nothing
	// after a waiting item is written before it, gate or not.
	ToAppGate []int64
	// PeerSends are messages for other instances, in order per peer; send
	// them on the peer's current connection (the Core only emits them while
	// that peer is connected, and resends from the output buffer after a
	// reconnect).
	PeerSends []PeerSend
	// PeerAcks tell senders what is durably logged: send each on the
	// sender's inbound connection.
	PeerAcks []PeerAck
	// NeedPeers are destinations the network should connect to (once each).
	NeedPeers []string
	// Warnings are events worth telling the user (refused impulses,
	// nondeterminism under the warn policy).
	Warnings []string
	// Fatal, when set, means the coordinator must stop: the error says why.
	Fatal error
}

// PeerSend is one message for another instance, with its sender sequence
// number on the stream from this instance to that one.
type PeerSend struct {
	Peer string
	Seq  int64
	Msg  []byte // a framed RPC message in delivery form
}

// PeerAck says that everything up to Seq from Peer is durably logged.
type PeerAck struct {
	Peer string
	Seq  int64
}

// IsEmpty reports whether there is nothing to do.
func (r *Ready) IsEmpty() bool {
	return len(r.Log) == 0 && r.Checkpoint == nil && len(r.ToApp) == 0 && len(r.Warnings) == 0 && r.Fatal == nil &&
		len(r.PeerSends) == 0 && len(r.PeerAcks) == 0 && len(r.NeedPeers) == 0
}

// delivery is an item of the queue of what goes to the app, in order. A
// record item waits until its sequence number is durable; a control item
// goes as soon as it reaches the head.
type delivery struct {
	seq  int64 // record sequence number; 0 for control items
	wire []byte
}

// expectation is a point of the output stream recorded in the log: after
// count outgoing messages, the chained digest was digest.
type expectation struct {
	seq    int64
	count  uint64
	digest uint64
}

// outPoint is the output stream's digest after count messages.
type outPoint struct{ count, digest uint64 }

// maxOutHist bounds Core.outHist: of an app that sends this many messages
// with no point compared between, the earlier half is compared no more.
const maxOutHist = 1 << 16

// outStream is the bookkeeping of one destination's output: the sender
// sequence number of the last message produced, of the last one the
// destination has logged, and the messages in between (seqs ackedSeq+1 …
// lastSeq, in order). For the instance's own stream, "logged" means in a
// durable record of its own log.
type outStream struct {
	peer string
	// connected says the network has a connection to peer; needed that
	// it was asked to make one (the Core's maps say the same; these spare
	// a lookup per message).
	connected, needed bool
	lastSeq           int64
	ackedSeq          int64
	unacked           msgRing
	bytes             int64 // of the messages in unacked
}

type outMsg struct {
	seq  int64
	data []byte
}

// ack records that the destination has logged everything up to seq.
func (s *outStream) ack(seq int64) {
	if seq <= s.ackedSeq {
		return
	}
	s.ackedSeq = seq
	for s.unacked.len() > 0 && s.unacked.at(0).seq <= seq {
		s.bytes -= int64(len(s.unacked.at(0).data))
		s.unacked.pop()
	}
}

// push keeps an unacknowledged message.
func (s *outStream) push(m outMsg) {
	s.bytes += int64(len(m.data))
	s.unacked.push(m)
}

// add records a new message; messages the destination already logged (a
// replay regenerating them) are not kept. It reports whether it was new.
func (s *outStream) add(data []byte) bool {
	s.lastSeq++
	if s.lastSeq <= s.ackedSeq {
		return false
	}
	s.push(outMsg{seq: s.lastSeq, data: data})
	return true
}

// outStream returns the output stream to dest, made if there is none.
func (c *Core) outStream(dest string) *outStream {
	s := c.outs[dest]
	if s == nil {
		s = &outStream{peer: dest}
		c.outs[dest] = s
	}
	return s
}

type durableMark struct {
	record int64
	last   map[string]int64
}

// pendingCheckpoint is a checkpoint the Core asked the app for.
type pendingCheckpoint struct {
	number  uint64
	nextSeq int64
	inputs  []logfmt.Watermark
	// control is the place, among the control records made for the app
	// (from 1), of the one that asks for this checkpoint.
	control int64
}

// Core is the coordinator's state machine. It never touches disk, network or
// the wall clock: the caller feeds it events (AppMessage, LogDurable,
// CheckpointDurable) and takes what it wants done from Ready. It is not safe
// for concurrent use; one goroutine owns it.
//
// Invariants it keeps:
//   - a record reaches the app only after the caller reported it durable;
//   - records reach the app in sequence order, each exactly once per
//     conversation;
//   - checkpoint n holds the state before segment n's first record: the
//     TakeCheckpoint control goes to the app right after the last record of
//     segment n-1, and every later record is logged in segment n or after.
type Core struct {
	cfg   CoreConfig
	phase phase

	nextSeq      int64  // sequence number of the next record
	durable      int64  // highest sequence number reported durable
	segment      uint64 // segment new records go to
	segmentBytes int64  // bytes logged to segment so far

	// The record being filled; sealed by Ready. openWire holds its
	// messages after room for the wire header, so that sealing makes the
	// record the app receives without copying them again. lastSize is the
	// size of the previous record's messages: the next one starts with
	// that much room.
	open     *logfmt.Record
	openWire []byte
	lastSize int

	queue []delivery

	inWM map[string]int64 // last logged sequence number per sender
	// sealedWM is inWM as of the last sealed record: what a checkpoint may
	// claim is logged before its NextSeq (the open record comes after it).
	sealedWM map[string]int64
	// durableWM is inWM as of the last durable record: what a receiver may
	// tell a (re)connecting sender it has logged.
	durableWM map[string]int64
	outs      map[string]*outStream
	// marks says, per sealed record not yet durable, the last sequence
	// number of each sender it holds, so LogDurable can acknowledge what is
	// durable: to the own output stream, and to peers.
	marks     []durableMark
	openMarks map[string]int64
	// known tells which destinations the network was asked to connect to.
	known map[string]bool
	// lastOut is the stream of the last message sent to another instance.
	lastOut *outStream
	// loggedSelf is the last self-call in the log recovery read: replayed
	// self-calls up to it are dropped, not logged again.
	loggedSelf int64
	outCount   uint64
	outDig     uint64
	expects    []expectation
	nondet     nondeterminismWatch // explains a replay that differs (nondeterminism.go)
	// outHist is the output stream's digest at each count reached while
	// points may still be fed after the app's output passed them (a
	// recovery still reading the log, a follower: a record's point is the
	// count when it was sealed, before the output of the record ahead of
	// it, so an app that caught up with the reader is past it), from the
	// last point compared on. nondetLost: a point fed late differed
	// (policy warn); the digest cannot be re-based there, so points go
	// uncompared until one that the output reaches exactly re-bases it.
	outHist    []outPoint
	lastPoint  uint64 // the count of the last point compared
	nondetLost bool

	firstStartGate bool // hold records until checkpoint 1 is durable
	// heldCheckpoint is the first checkpoint, held back until record 1 (the
	// echoed InitialMessage) is durable: once the MANIFEST names checkpoint
	// 1 the instance counts as started, and its bootstrap input must exist.
	heldCheckpoint *logfmt.Checkpoint
	initial        []byte // the app's InitialMessage, framed
	awaiting       *pendingCheckpoint
	inFlight       uint64 // checkpoint number being written, 0 if none
	wantCheckpoint bool   // a checkpoint was asked for while one was busy

	// following: a standby or checkpointer feeding its app the primary's
	// log; it never logs. externalCheckpoints: a checkpointer takes the
	// checkpoints; a full segment only rolls. (core_follow.go)
	following, externalCheckpoints bool
	// promoted: a follower made primary, whose app may still be
	// replaying what was fed: its regenerated self-calls are dropped.
	promoted bool
	// controls counts the control records made for the app.
	controls int64
	// replayOpen: a recovery is still feeding the log (StartRecovery until
	// FinishRecovery; StartFollowing until Promote), which a streamed
	// recovery does while the app replays. Self-calls are then kept as a
	// follower keeps them: dropped once a fed record holds them, logged by
	// FinishRecovery if none does.
	replayOpen bool

	ready Ready
	// lastLists is the lengths of the Log, ToApp and PeerSends lists of the
	// last Ready returned: how far the next one must clear their arrays.
	lastLists [3]int
}

// NewCore returns a Core for cfg. Call StartFresh or StartRecovery next.
func NewCore(cfg CoreConfig) *Core {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Core{cfg: cfg, inWM: map[string]int64{}, sealedWM: map[string]int64{}, durableWM: map[string]int64{}, outs: map[string]*outStream{}, openMarks: map[string]int64{},
		known: map[string]bool{}}
}

// Phase returns the conversation phase, for status displays.
func (c *Core) Phase() string { return c.phase.String() }

// CheckpointBusy reports whether a checkpoint is asked for, held or being
// written.
func (c *Core) CheckpointBusy() bool {
	return c.awaiting != nil || c.inFlight != 0 || c.heldCheckpoint != nil
}

// NextSeq returns the sequence number the next record will get.
func (c *Core) NextSeq() int64 { return c.nextSeq }

// StartFresh begins the first-start conversation of a new instance: the app
// is asked for its initial state; its InitialMessage becomes record 1.
func (c *Core) StartFresh() {
	c.phase = phaseFirstStart
	c.nextSeq, c.durable, c.segment = 1, 0, 1
	c.firstStartGate = true
	c.awaiting = &pendingCheckpoint{number: 1, nextSeq: 1}
	c.enqueueControl(logfmt.TypeTakeBecomingPrimaryCheckpoint)
}

// StartRecovery begins recovery from checkpoint ck. The caller then feeds
// every logged record after it, in order, to ReplayRecord, and calls
// FinishRecovery. newSegment is the number of the segment that records
// logged from now on go to: one above every segment and checkpoint present.
func (c *Core) StartRecovery(ck *logfmt.Checkpoint, newSegment uint64) {
	c.StartRecoveryFramed(ck, nil, newSegment)
}

// checkpointRoom is the room recovery reads a checkpoint's state with
// (StartRecoveryFramed): a wire header and a Checkpoint message's header.
const checkpointRoom = logfmt.WireHeaderSize + 16

// StartRecoveryFramed is StartRecovery of a checkpoint whose State ends
// framed, the buffer it was read into (layout.Instance.ReadCheckpointRoom),
// with free bytes before it: the Core frames the state for the app there,
// and keeps it, instead of copying the state behind the headers. A framed
// of nil or without enough room is StartRecovery.
func (c *Core) StartRecoveryFramed(ck *logfmt.Checkpoint, framed []byte, newSegment uint64) {
	c.phase, c.replayOpen = phaseRecovering, true
	c.nextSeq = ck.NextSeq
	c.durable = ck.NextSeq - 1
	c.segment = newSegment
	c.outCount, c.outDig = ck.OutCount, ck.OutDigest
	c.outHist = append(c.outHist[:0], outPoint{ck.OutCount, ck.OutDigest})
	c.lastPoint = ck.OutCount
	for _, w := range ck.Inputs {
		c.inWM[w.Peer] = w.Seq
		c.sealedWM[w.Peer] = w.Seq
		c.durableWM[w.Peer] = w.Seq
	}
	for _, o := range ck.Outputs {
		s := &outStream{peer: o.Peer, lastSeq: o.LastSeq, ackedSeq: o.AckedSeq}
		for i, m := range o.Unacked {
			s.push(outMsg{seq: o.AckedSeq + 1 + int64(i), data: append([]byte(nil), m...)})
		}
		c.outs[o.Peer] = s
		if o.Peer != c.cfg.Name {
			c.needPeer(o.Peer)
		}
	}
	// The wire record and the state go to the app as one chunk (the app
	// sender reads each chunk's sequence number from its front): framed in
	// the room the checkpoint's reader left before the state, when it did,
	// rather than a copy of the whole state behind the headers.
	var wire []byte
	hdr := logfmt.AppendCheckpointMessage(nil, int64(len(ck.State)))
	if at := len(framed) - len(ck.State) - logfmt.WireHeaderSize - len(hdr); len(ck.State) > 0 && at >= 0 && &framed[len(framed)-len(ck.State)] == &ck.State[0] {
		wire = framed[at:]
		logfmt.AppendWireRecord(wire[:0], c.cfg.CommitterID, logfmt.SeqCheckpointRecord, hdr)
	} else {
		wire = logfmt.AppendWireRecord(nil, c.cfg.CommitterID, logfmt.SeqCheckpointRecord, hdr)
		wire = append(wire, ck.State...)
	}
	c.queue = append(c.queue, delivery{wire: wire})
}

// ReplayRecord feeds one logged record during recovery.
func (c *Core) ReplayRecord(rec *logfmt.Record) error {
	return c.ReplayWire(rec, logfmt.AppendWireRecord(nil, c.cfg.CommitterID, rec.Seq, rec.Messages))
}

// ReplayWire is ReplayRecord of rec as its wire record for the app, built by
// logfmt.AppendWireRecord with the instance's committer id: rec.Messages is
// the body of wire, which the Core keeps.
func (c *Core) ReplayWire(rec *logfmt.Record, wire []byte) error {
	if c.phase != phaseRecovering {
		return fmt.Errorf("replay record %d: coordinator is %s, not recovering", rec.Seq, c.phase)
	}
	if rec.Seq != c.nextSeq {
		return fmt.Errorf("replay record %d: expected record %d", rec.Seq, c.nextSeq)
	}
	if h, err := logfmt.ParseWireHeader(wire); err != nil || h.CommitterID != c.cfg.CommitterID || h.Seq != rec.Seq || int(h.Size) != len(wire) {
		return fmt.Errorf("replay record %d: its wire record is not this instance's record %d of %d bytes (%+v, %v)", rec.Seq, rec.Seq, len(wire), h, err)
	}
	for _, s := range rec.Sources {
		if last := s.LastSeq(); last > c.inWM[s.Peer] {
			c.inWM[s.Peer] = last
			c.sealedWM[s.Peer] = last
			c.durableWM[s.Peer] = last
		}
	}
	c.expects = append(c.expects, expectation{seq: rec.Seq, count: rec.OutCount, digest: rec.OutDigest})
	c.nondet.replayed(rec, wire)
	c.queue = append(c.queue, delivery{seq: rec.Seq, wire: wire})
	c.nextSeq = rec.Seq + 1
	c.durable = rec.Seq
	if c.following || c.replayOpen {
		c.followed()
	}
	return nil
}

// FinishRecovery ends the replayed part: the app is asked to become primary
// and checkpoint; that checkpoint starts the new segment.
func (c *Core) FinishRecovery() {
	c.replayOpen = false
	c.checkExpectations()
	// Self-calls the app made (before the checkpoint, or in this replay)
	// that no record read holds: the replay will not make them again, so
	// log them now.
	c.loggedSelf = c.inWM[c.cfg.Name]
	if s := c.outs[c.cfg.Name]; s != nil {
		s.ack(c.loggedSelf)
		for i := range s.unacked.len() {
			m := s.unacked.at(i)
			c.appendInput(c.cfg.Name, m.seq, m.data)
		}
	}
	c.awaiting = &pendingCheckpoint{number: c.segment, nextSeq: c.nextSeq, inputs: c.watermarks()}
	if c.cfg.Upgrade {
		c.enqueueControl(logfmt.TypeUpgradeTakeCheckpoint)
		return
	}
	c.enqueueControl(logfmt.TypeTakeBecomingPrimaryCheckpoint)
}

// AppMessage handles one message from the app. For a Checkpoint message,
// state holds the state bytes that followed it. An error is a protocol
// violation by the app: the caller should drop the app connection. The Core
// keeps m.Data and rewrites parts of it, and keeps state as the
// checkpoint's (a 64 MiB state is not copied on the way to being live): the
// caller must not use either again.
func (c *Core) AppMessage(m logfmt.Message, state []byte) error {
	return c.AppMessageIn(m, m.Data, state)
}

// AppMessageIn is AppMessage for a message whose Data ends buf, the whole
// buffer it was read into (logfmt.MessageReader.Buf): the Core keeps all of
// buf and may rewrite the bytes in front of m.Data too. With room there
// (logfmt.FreshRoom), an RPC is framed for delivery in place, over its
// destination and that room, however long its destination's name: no copy
// of a giant message.
func (c *Core) AppMessageIn(m logfmt.Message, buf []byte, state []byte) error {
	switch m.Type {
	case logfmt.TypeRPC:
		at := len(buf) - len(m.Data)
		if at < 0 || len(m.Data) > 0 && &buf[at] != &m.Data[0] {
			buf, at = m.Data, 0 // not m.Data's buffer: no room
		}
		return c.appRPC(buf, at)
	case logfmt.TypeRPCBatch, logfmt.TypeCountReplayableRPCBatch:
		b, err := logfmt.ParseBatch(m)
		if err != nil {
			return fmt.Errorf("app sent a bad batch: %w", err)
		}
		it := b.Iter()
		for {
			start := it.Offset()
			sub, ok := it.Next()
			if !ok {
				break
			}
			if sub.Type != logfmt.TypeRPC {
				return fmt.Errorf("app sent a %s inside a batch; batches hold RPCs only", sub.Type)
			}
			// The RPC's own frame, whose header is room for framing it
			// for delivery in place; nothing before it: those bytes are
			// the batch's and its other RPCs'.
			end := it.Offset()
			if err := c.appRPC(b.Messages[start:end:end], end-start-len(sub.Data)); err != nil {
				return err
			}
		}
		return it.Err()
	case logfmt.TypeAttachTo:
		return nil // peers are found through the registry; nothing to do here
	case logfmt.TypeTakeCheckpoint:
		c.RequestCheckpoint()
		return nil
	case logfmt.TypeInitialMessage:
		if c.phase != phaseFirstStart || c.initial != nil {
			return fmt.Errorf("app sent InitialMessage while %s; it is only sent once, on first start", c.phase)
		}
		c.initial = logfmt.AppendMessage(nil, logfmt.TypeInitialMessage, m.Data)
		return nil
	case logfmt.TypeCheckpoint:
		return c.appCheckpoint(state)
	default:
		return fmt.Errorf("app sent a %s message, which apps do not send", m.Type)
	}
}

// appRPC handles the RPC whose data is buf[at:]; the bytes in front of it in
// buf are room the Core may write over.
func (c *Core) appRPC(buf []byte, at int) error {
	data := buf[at:]
	o, err := logfmt.ParseOutgoingRPC(data)
	if err != nil {
		return fmt.Errorf("app sent a bad RPC: %w", err)
	}
	self := o.IsSelf() || string(o.Dest) == c.cfg.Name
	prefix := o.BodyAt
	body := data[prefix:] // delivery form
	// deliveryMsg frames body for delivery: over the destination bytes
	// and the room in front of them where they leave enough (o.Dest is
	// unusable afterwards), or in a copy when inPlace is false. A message
	// framed in place keeps the app's whole message (batch) reachable
	// while it is kept.
	deliveryMsg := func(inPlace bool) []byte {
		if inPlace {
			if m := logfmt.DeliveryFormInPlace(buf, at+prefix); m != nil {
				return m
			}
		}
		return logfmt.AppendMessage(nil, logfmt.TypeRPC, body)
	}
	if o.Kind == logfmt.RPCImpulse {
		if c.phase != phaseLive {
			c.ready.Warnings = append(c.ready.Warnings, fmt.Sprintf("refused an impulse (method %d) sent while %s: apps may send impulses only once primary", o.MethodID, c.phase))
			return nil
		}
		if self {
			// Impulses are new input, not regenerated output: logged once,
			// unsequenced, outside the deterministic output stream.
			c.appendInputIn(c.cfg.Name, 0, buf, deliveryMsg(true)) // copied into the record, unless giant
			return nil
		}
		// An impulse to another instance would take a sequence number of
		// the stream to it that a replay never makes again, shifting every
		// later message: refused until impulses get a stream of their own.
		c.ready.Warnings = append(c.ready.Warnings, fmt.Sprintf("refused an impulse (method %d) to %s: impulses to other instances are not supported yet; send the impulse to this instance and fork from its handler", o.MethodID, o.Dest))
		return nil
	}
	digestDest := o.Dest
	if self {
		digestDest = nil
	}
	c.outCount++
	c.outDig = logfmt.ChainDigest(c.outDig, digestDest, body)
	if c.replayOpen || c.following {
		if len(c.outHist) == maxOutHist {
			// The older half goes at once (found in review: one at a time
			// moved the whole history for every message past the bound).
			c.outHist = c.outHist[:copy(c.outHist, c.outHist[maxOutHist/2:])]
		}
		c.outHist = append(c.outHist, outPoint{c.outCount, c.outDig})
	}
	if c.phase == phaseRecovering || len(c.expects) > 0 { // (a promoted standby's app may still replay)
		c.nondet.sentDuringRecovery(digestDest, body, c.outCount)
		c.checkExpectations()
	}
	// Looked up with string(bytes), which does not allocate, and only when
	// the destination differs from the last message's; the stream holds
	// the name as a string for what needs one.
	var s *outStream
	switch {
	case self:
		s = c.outStream(c.cfg.Name)
	case c.lastOut != nil && c.lastOut.peer == string(o.Dest):
		s = c.lastOut
	default:
		if s = c.outs[string(o.Dest)]; s == nil {
			s = c.outStream(string(o.Dest))
		}
		c.lastOut = s
	}
	dest := s.peer
	if self {
		s.lastSeq++
		if (c.phase == phaseRecovering || c.promoted) && s.lastSeq <= c.loggedSelf {
			// A replayed self-call that the durable log already holds: it is
			// acknowledged, which keeps the buffer exactly (acked, last].
			s.ack(s.lastSeq)
			return nil
		}
		msg := deliveryMsg(true) // acknowledged once the open record is durable
		s.push(outMsg{seq: s.lastSeq, data: msg})
		if c.following || c.replayOpen {
			// A follower writes nothing, nor does a recovery still reading
			// the log: a later record holds it, or promotion (or
			// FinishRecovery) logs it.
			return nil
		}
		c.appendInputIn(c.cfg.Name, s.lastSeq, buf, msg)
		return nil
	}
	// Kept until dest acknowledges it: in place only while dest is
	// connected (acks come within milliseconds); for a destination that is
	// down, a copy of its own, so one message cannot pin a whole batch.
	msg := deliveryMsg(s.connected)
	if s.add(msg) && s.connected {
		c.ready.PeerSends = append(c.ready.PeerSends, PeerSend{Peer: dest, Seq: s.lastSeq, Msg: msg})
	}
	if !s.needed {
		s.needed = true
		c.needPeer(dest)
	}
	return nil
}

// checkExpectations compares the output stream with the points the log
// recorded, as far as the app has produced output.
func (c *Core) checkExpectations() {
	for len(c.expects) > 0 {
		e := c.expects[0]
		if e.count > c.outCount {
			break
		}
		c.expects = c.expects[1:]
		c.lastPoint = max(c.lastPoint, e.count)
		onTime := e.count == c.outCount
		dig, ok := c.outDig, true
		if !onTime {
			// Fed after the output passed it: the digest at its count,
			// unless that lies before the restored checkpoint's output.
			dig, ok = c.digestAt(e.count)
		}
		if !ok {
			continue
		}
		switch {
		case c.nondetLost && onTime:
			c.nondetLost = false
			c.rebase(e.digest)
		case c.nondetLost:
		case e.digest != dig:
			key, msg := c.nondet.mismatch(e.seq, e.count, e.digest, dig, c.outCount, false)
			if c.cfg.Nondeterminism == NondeterminismStop {
				c.ready.Fatal = fmt.Errorf("nondeterminism: %s (stopping; run with nondeterminism policy \"warn\" to continue anyway)", msg)
			} else {
				// Counted, told once recovery ends; later points are
				// compared from the log's digest on.
				c.nondet.count(key, msg, e.seq)
				if onTime {
					c.rebase(e.digest)
				} else {
					c.nondetLost = true
				}
			}
		}
		c.nondet.matched(e.seq, e.count)
	}
	// Points come in count order: what lies before the next one (or, with
	// none waiting, before the last one) is not asked for again.
	next := c.lastPoint
	if len(c.expects) > 0 {
		next = c.expects[0].count
	}
	if !c.replayOpen && !c.following && len(c.expects) == 0 {
		c.outHist = c.outHist[:0] // no point is fed from now on
	} else if i := sort.Search(len(c.outHist), func(i int) bool { return c.outHist[i].count >= next }); i > 0 {
		c.outHist = c.outHist[:copy(c.outHist, c.outHist[i:])]
	}
}

// digestAt is the output stream's digest after count messages, if outHist
// still holds it.
func (c *Core) digestAt(count uint64) (uint64, bool) {
	i := sort.Search(len(c.outHist), func(i int) bool { return c.outHist[i].count >= count })
	if i < len(c.outHist) && c.outHist[i].count == count {
		return c.outHist[i].digest, true
	}
	return 0, false
}

// rebase makes the log's digest the output stream's at the current count
// (after a difference, policy warn): later points compare from there.
func (c *Core) rebase(digest uint64) {
	c.outDig = digest
	c.outHist = append(c.outHist[:0], outPoint{c.outCount, digest})
}

// maxOpenRecord is the size of messages past which the open record is
// sealed before more are added: records stay small enough to pipeline
// (the app handles one while the next is logged), and far below the 2 GiB
// a record can hold. A single larger message gets a record of its own.
const maxOpenRecord = 1 << 20

// appendInput adds one framed message from sender (with sender sequence
// number seq, 0 for unsequenced input) to the open record.
func (c *Core) appendInput(sender string, seq int64, msg []byte) {
	c.appendRun(sender, seq, 1, msg)
}

// appendRun adds count framed messages from sender, back to back in msgs,
// to the open record: sender sequence numbers seq, seq+1, …, or all
// unsequenced if seq is 0.
func (c *Core) appendRun(sender string, seq int64, count uint32, msgs []byte) {
	if c.open != nil && len(c.openWire)-logfmt.WireHeaderSize+len(msgs) > maxOpenRecord {
		c.sealOpen()
	}
	if c.open == nil {
		c.open = &logfmt.Record{}
		// Room for twice the last record: under steady load records are
		// alike, and growing one copies all it holds.
		c.openWire = make([]byte, logfmt.WireHeaderSize, logfmt.WireHeaderSize+max(min(2*c.lastSize, maxOpenRecord), len(msgs), 256))
	}
	c.openWire = append(c.openWire, msgs...)
	c.noteRun(sender, seq, count)
}

// noteRun records in the open record that its messages end with count from
// sender, with sequence numbers from seq (0: unsequenced).
func (c *Core) noteRun(sender string, seq int64, count uint32) {
	r := c.open
	n := len(r.Sources)
	if n > 0 && r.Sources[n-1].Peer == sender && ((seq == 0 && r.Sources[n-1].FirstSeq == 0) ||
		(seq != 0 && r.Sources[n-1].LastSeq()+1 == seq)) {
		r.Sources[n-1].Count += count
	} else {
		r.Sources = append(r.Sources, logfmt.Source{Peer: sender, FirstSeq: seq, Count: count})
	}
	r.MessageCount += count
	if seq == 0 {
		return
	}
	last := seq + int64(count) - 1
	if last > c.inWM[sender] {
		c.inWM[sender] = last
	}
	if last > c.openMarks[sender] {
		c.openMarks[sender] = last
	}
}

// sealOpen turns the open record into a log write.
func (c *Core) sealOpen() {
	r := c.open
	if r == nil {
		return
	}
	c.open = nil
	r.Messages = c.openWire[logfmt.WireHeaderSize:]
	c.lastSize = len(r.Messages)
	r.Seq = c.nextSeq
	c.nextSeq++
	r.Time = c.cfg.Now().UnixNano()
	r.OutCount, r.OutDigest = c.outCount, c.outDig
	c.ready.Log = append(c.ready.Log, LogWrite{Segment: c.segment, Record: r})
	for peer, last := range c.openMarks {
		if last > c.sealedWM[peer] {
			c.sealedWM[peer] = last
		}
	}
	if len(c.openMarks) > 0 {
		c.marks = append(c.marks, durableMark{record: r.Seq, last: c.openMarks})
		c.openMarks = map[string]int64{}
	}
	// The wire header goes into the room left for it: the record for the
	// app shares its messages with the record for the log.
	wire := logfmt.AppendWireHeader(c.openWire[:0], logfmt.WireHeader{
		CommitterID: c.cfg.CommitterID, Size: int32(len(c.openWire)), CheckBytes: logfmt.CheckBytes(r.Messages), Seq: r.Seq,
	})
	c.openWire = nil
	c.queue = append(c.queue, delivery{seq: r.Seq, wire: wire[:logfmt.WireHeaderSize+len(r.Messages)]})
	c.segmentBytes += int64(r.EncodedSize())
}

// RequestCheckpoint asks for a checkpoint at the next record boundary:
// records logged so far stay in the current segment, later ones go to a new
// one, and the app is asked for its state in between. A request while a
// checkpoint is under way is remembered and served after it.
func (c *Core) RequestCheckpoint() {
	if c.phase != phaseLive || c.awaiting != nil || c.inFlight != 0 {
		c.wantCheckpoint = true
		return
	}
	c.wantCheckpoint = false
	c.sealOpen()
	c.segment++
	c.segmentBytes = 0
	c.awaiting = &pendingCheckpoint{number: c.segment, nextSeq: c.nextSeq, inputs: c.watermarks()}
	c.enqueueControl(logfmt.TypeTakeCheckpoint)
}

// CheckpointAskedAt is the place, among the control records made for the
// app (from 1), of the one that asks for the checkpoint awaited: an app's
// Checkpoint read before that record was on its way to the app answers
// nothing (the caller checks, knowing what it sent). 0 if none is awaited.
func (c *Core) CheckpointAskedAt() int64 {
	if c.awaiting == nil {
		return 0
	}
	return c.awaiting.control
}

func (c *Core) appCheckpoint(state []byte) error {
	p := c.awaiting
	if p == nil {
		return fmt.Errorf("app sent a Checkpoint nobody asked for")
	}
	if c.phase == phaseFirstStart && c.initial == nil {
		return fmt.Errorf("app sent its first Checkpoint before its InitialMessage")
	}
	c.awaiting = nil
	ck := &logfmt.Checkpoint{
		Number: p.number, AppVersion: c.cfg.AppVersion, NextSeq: p.nextSeq, Time: c.cfg.Now().UnixNano(),
		OutCount: c.outCount, OutDigest: c.outDig, Inputs: p.inputs, Outputs: c.outputs(),
		State: state, // the caller's, which the Core keeps (AppMessage)
	}
	c.inFlight = p.number
	if c.following {
		// A checkpointer's checkpoint: the state before segment p.number.
		c.ready.Checkpoint = ck
		return nil
	}
	switch c.phase {
	case phaseFirstStart:
		c.phase = phaseLive
		c.appendInput(c.cfg.Name, 0, c.initial)
		c.initial = nil
		c.heldCheckpoint = ck
		return nil
	case phaseRecovering:
		// Every point the log recorded must have been reached by now: the
		// app answered after handling all replayed records.
		if len(c.expects) > 0 {
			e := c.expects[len(c.expects)-1]
			key, msg := c.nondet.mismatch(e.seq, e.count, e.digest, c.outDig, c.outCount, true)
			if c.cfg.Nondeterminism == NondeterminismStop {
				c.ready.Fatal = fmt.Errorf("nondeterminism: %s (stopping; run with nondeterminism policy \"warn\" to continue anyway)", msg)
			} else {
				c.nondet.count(key, msg, e.seq)
			}
		}
		c.ready.Warnings = append(c.ready.Warnings, c.nondet.summary()...)
		c.nondet = nondeterminismWatch{}
		c.phase = phaseLive
		c.expects = nil
	}
	c.ready.Checkpoint = ck
	return nil
}

// LogDurable reports that every record up to seq is on stable storage.
func (c *Core) LogDurable(seq int64) {
	if seq > c.durable {
		c.durable = seq
	}
	i := 0
	acks := map[string]int64{}
	for i < len(c.marks) && c.marks[i].record <= seq {
		for peer, last := range c.marks[i].last {
			if last > c.durableWM[peer] {
				c.durableWM[peer] = last
			}
			if peer == c.cfg.Name {
				if s := c.outs[c.cfg.Name]; s != nil {
					s.ack(last)
				}
			} else if last > acks[peer] {
				acks[peer] = last
			}
		}
		i++
	}
	c.marks = c.marks[i:]
	if c.firstStartGate {
		return // no acks before the instance exists for good (none are expected)
	}
	for _, p := range sortedKeys(acks) {
		c.ready.PeerAcks = append(c.ready.PeerAcks, PeerAck{Peer: p, Seq: acks[p]})
	}
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// needPeer asks the network, once, to connect to dest.
func (c *Core) needPeer(dest string) {
	if !c.known[dest] {
		c.known[dest] = true
		c.ready.NeedPeers = append(c.ready.NeedPeers, dest)
	}
}

// ExpectFrom returns the next sequence number this instance wants from
// sender: what a receiver says when a sender (re)connects. It counts only
// durably logged messages, because the sender drops everything before it:
// messages logged but not yet synced are sent again and dropped here as
// duplicates.
func (c *Core) ExpectFrom(sender string) int64 { return c.durableWM[sender] + 1 }

// AcceptingPeers reports whether messages from other instances may be
// logged: not before the first start is complete (the first checkpoint
// durable), so that nothing is acknowledged for an instance that a crash
// would make start over, and the InitialMessage is its first input.
func (c *Core) AcceptingPeers() bool {
	return c.phase != phaseIdle && c.phase != phaseFirstStart && !c.firstStartGate
}

// PeerMessage handles a message from another instance's coordinator: a
// framed RPC in delivery form with the sender's sequence number. A message
// already logged (a resend) is dropped; the next one is logged; a gap is a
// protocol error (the caller drops the connection). msg is copied into the
// open record, not kept: the caller may reuse it.
func (c *Core) PeerMessage(from string, seq int64, msg []byte) error {
	if next, err := c.admitPeer(from, seq); !next {
		return err
	}
	c.appendInput(from, seq, msg)
	return nil
}

// admitPeer says whether message seq from peer from is the next one to log:
// not if it was logged already (a resend, no error) or comes out of turn,
// from this instance itself, or before the first start is complete (an
// error: the caller drops the connection).
func (c *Core) admitPeer(from string, seq int64) (next bool, err error) {
	if from == c.cfg.Name {
		return false, fmt.Errorf("peer message from %q, which is this instance", from)
	}
	if !c.AcceptingPeers() {
		return false, fmt.Errorf("peer message from %s before this instance's first start is complete", from)
	}
	w := c.inWM[from]
	switch {
	case seq <= w:
		return false, nil
	case seq != w+1:
		return false, fmt.Errorf("peer %s sent message %d, but the next one expected is %d", from, seq, w+1)
	}
	return true, nil
}

// PeerMessageOwned is PeerMessage for a message msg that ends buf, a buffer
// the Core may keep (logfmt.PeerReader.Owned): a message too large to share
// a record (more than maxOpenRecord bytes) with logfmt.WireHeaderSize bytes
// of room in front of it becomes a record of its own that holds msg where
// it is: the record's wire header is written into the room, the log writer
// writes msg from there, and the app receives it from there. The record's
// bytes are those PeerMessage would log. Otherwise msg is copied, as by
// PeerMessage. Nothing may change buf afterwards.
func (c *Core) PeerMessageOwned(from string, seq int64, buf, msg []byte) error {
	at := len(buf) - len(msg)
	if len(msg) <= maxOpenRecord || at < logfmt.WireHeaderSize || &buf[at] != &msg[0] {
		return c.PeerMessage(from, seq, msg)
	}
	if next, err := c.admitPeer(from, seq); !next {
		return err
	}
	c.appendOwned(from, seq, buf, at)
	return nil
}

// appendOwned is appendInput for a message larger than maxOpenRecord that
// lies at buf[at:], with at least logfmt.WireHeaderSize bytes of buf in
// front of it, all of which the Core keeps: what appendRun does for such a
// message (a record of its own), with that room as the open record's, so
// the record holds the message where it is. Nothing may change buf
// afterwards.
func (c *Core) appendOwned(sender string, seq int64, buf []byte, at int) {
	c.sealOpen()
	c.open = &logfmt.Record{}
	c.openWire = buf[at-logfmt.WireHeaderSize : len(buf) : len(buf)]
	c.noteRun(sender, seq, 1)
	c.sealOpen()
}

// appendInputIn is appendInput for a message msg that may end buf, a
// buffer the Core keeps unchanged from now on (the app's message, which msg
// was framed in place in): a giant one with room in front becomes a record
// of its own that holds it where it is (appendOwned); any other is copied.
func (c *Core) appendInputIn(sender string, seq int64, buf, msg []byte) {
	at := len(buf) - len(msg)
	if len(msg) > maxOpenRecord && at >= logfmt.WireHeaderSize && &buf[at] == &msg[0] {
		c.appendOwned(sender, seq, buf, at)
		return
	}
	c.appendInput(sender, seq, msg)
}

// PeerMessages handles messages from one sender, in order, as PeerMessage
// would one by one: message i is arena[ends[i-1]:ends[i]] (from 0 for the
// first) with sequence number seqs[i]. The accepted ones are copied into
// the open record in one piece. On a gap, the messages before it are kept
// and the error is returned.
func (c *Core) PeerMessages(from string, seqs []int64, ends []int, arena []byte) error {
	if len(seqs) == 0 {
		return nil
	}
	if from == c.cfg.Name {
		return fmt.Errorf("peer message from %q, which is this instance", from)
	}
	if !c.AcceptingPeers() {
		return fmt.Errorf("peer message from %s before this instance's first start is complete", from)
	}
	end := func(i int) int { // where message i starts
		if i == 0 {
			return 0
		}
		return ends[i-1]
	}
	w := c.inWM[from]
	for i := 0; i < len(seqs); {
		if seqs[i] <= w {
			i++ // a resend of what is logged
			continue
		}
		if seqs[i] != w+1 {
			return fmt.Errorf("peer %s sent message %d, but the next one expected is %d", from, seqs[i], w+1)
		}
		// The run of the next expected messages, in pieces of at most
		// maxOpenRecord (or one larger message), each copied at once.
		start, k := end(i), i+1
		for k < len(seqs) && seqs[k] == seqs[k-1]+1 && ends[k]-start <= maxOpenRecord {
			k++
		}
		c.appendRun(from, seqs[i], uint32(k-i), arena[start:ends[k-1]])
		w, i = seqs[k-1], k
	}
	return nil
}

// PeerConnected reports that the connection to dest is up and that dest
// expects sender sequence number expect next: everything before it is
// logged there. The Core resends the rest of its output buffer and sends new
// output from now on.
//
// A receiver that expects a message it has already acknowledged has lost
// input it said was durable (its log was damaged, or restored from an older
// copy): those messages are trimmed here, so nothing can be resent. The
// Core then sends nothing more to dest and returns a *LostInputError.
func (c *Core) PeerConnected(dest string, expect int64) error {
	s := c.outStream(dest)
	if expect-1 < s.ackedSeq {
		s.connected = false
		return &LostInputError{Receiver: dest, Sender: c.cfg.Name, Acked: s.ackedSeq, Expect: expect}
	}
	s.ack(expect - 1)
	s.connected = true
	// Sends queued for the previous connection would go out ahead of the
	// resend on this one: drop them; the resend covers them.
	kept := c.ready.PeerSends[:0]
	for _, ps := range c.ready.PeerSends {
		if ps.Peer != dest {
			kept = append(kept, ps)
		}
	}
	clear(c.ready.PeerSends[len(kept):])
	c.ready.PeerSends = kept
	for i := range s.unacked.len() {
		m := s.unacked.at(i)
		c.ready.PeerSends = append(c.ready.PeerSends, PeerSend{Peer: dest, Seq: m.seq, Msg: m.data})
	}
	return nil
}

// LostInputError says that a receiver no longer has messages it
// acknowledged as durably logged: it acknowledged Sender's messages up to
// Acked, but now expects Expect (≤ Acked) next.
type LostInputError struct {
	Receiver, Sender string
	Acked, Expect    int64
}

func (e *LostInputError) Error() string {
	return fmt.Sprintf("%s lost input it had acknowledged: it acknowledged %s's messages up to %d as durably logged, but now expects message %d next, "+
		"so its log lost messages %d..%d (damaged, or restored from an older copy); %s no longer holds them, so they cannot be resent. "+
		"The link %s → %s is stopped: restore %s's instance directory from a copy whose log holds them (check with `ambr log %s`), then restart both",
		e.Receiver, e.Sender, e.Acked, e.Expect, e.Expect, e.Acked, e.Sender, e.Sender, e.Receiver, e.Receiver, e.Receiver)
}

// UnackedBytes returns the bytes of output to other instances that they
// have not acknowledged yet: what the coordinator holds for its app's
// receivers, bounded by its budget.
func (c *Core) UnackedBytes() int64 {
	var n int64
	for _, s := range c.outs {
		if s.peer != c.cfg.Name {
			n += s.bytes
		}
	}
	return n
}

// PeerDisconnected reports that the connection to dest is gone.
func (c *Core) PeerDisconnected(dest string) {
	if s := c.outs[dest]; s != nil {
		s.connected = false
		// Its unacknowledged messages may wait long now: give each a
		// buffer of its own rather than keep the app batches they were
		// framed in (see appRPC).
		for i := range s.unacked.len() {
			m := s.unacked.at(i)
			s.unacked.set(i, outMsg{seq: m.seq, data: bytes.Clone(m.data)})
		}
	}
}

// PeerAcked reports that dest has durably logged everything up to seq: the
// output buffer is trimmed.
func (c *Core) PeerAcked(dest string, seq int64) {
	if s := c.outs[dest]; s != nil {
		s.ack(seq)
	}
}

// Durable returns the newest log record reported durable (LogDurable), or
// replayed or fed as already durable.
func (c *Core) Durable() int64 { return c.durable }

// CheckpointDurable reports that checkpoint n and the MANIFEST naming it
// are on stable storage.
func (c *Core) CheckpointDurable(n uint64) {
	if n == c.inFlight {
		c.inFlight = 0
	}
	if n == 1 {
		c.firstStartGate = false
	}
	if c.wantCheckpoint {
		c.RequestCheckpoint()
	}
}

func (c *Core) enqueueControl(t logfmt.MessageType) {
	c.controls++
	if c.awaiting != nil && t != logfmt.TypeBecomingPrimary {
		c.awaiting.control = c.controls // the request for it
	}
	body := logfmt.AppendControl(nil, t)
	c.queue = append(c.queue, delivery{wire: logfmt.AppendWireRecord(nil, c.cfg.CommitterID, logfmt.SeqControl, body)})
}

// watermarks returns the input watermarks as of the last sealed record: a
// checkpoint's NextSeq is the next record, so messages in the open record
// are not logged before it.
func (c *Core) watermarks() []logfmt.Watermark {
	out := make([]logfmt.Watermark, 0, len(c.sealedWM))
	for p, s := range c.sealedWM {
		out = append(out, logfmt.Watermark{Peer: p, Seq: s})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

func (c *Core) outputs() []logfmt.OutputStream {
	out := make([]logfmt.OutputStream, 0, len(c.outs))
	for p, s := range c.outs {
		// The format numbers buffered messages from AckedSeq+1 on.
		acked := s.ackedSeq
		if s.unacked.len() > 0 {
			acked = s.unacked.at(0).seq - 1
		}
		o := logfmt.OutputStream{Peer: p, LastSeq: s.lastSeq, AckedSeq: acked}
		o.Unacked = make([][]byte, 0, s.unacked.len())
		for i := range s.unacked.len() {
			o.Unacked = append(o.Unacked, s.unacked.at(i).data)
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// Ready seals the open record and returns everything the caller must do
// now. The Core forgets it: call Ready once per batch of events. The lists
// in it are valid until the next call to Ready, which reuses their arrays.
func (c *Core) Ready() Ready {
	// The caller is done with the last Ready: let go of what its lists
	// held beyond what this batch overwrote (what lies beyond that was let
	// go of before).
	clear(c.ready.Log[len(c.ready.Log):max(len(c.ready.Log), c.lastLists[0])])
	clear(c.ready.ToApp[len(c.ready.ToApp):max(len(c.ready.ToApp), c.lastLists[1])])
	clear(c.ready.PeerSends[len(c.ready.PeerSends):max(len(c.ready.PeerSends), c.lastLists[2])])
	c.sealOpen()
	if c.cfg.SegmentSize > 0 && c.segmentBytes >= c.cfg.SegmentSize {
		if c.externalCheckpoints {
			c.rollSegment()
		} else {
			c.RequestCheckpoint()
		}
	}
	if c.heldCheckpoint != nil && c.durable >= 1 {
		c.ready.Checkpoint, c.heldCheckpoint = c.heldCheckpoint, nil
	}
	for len(c.queue) > 0 {
		d := c.queue[0]
		if d.seq != 0 && (c.firstStartGate || d.seq > c.durable && !c.cfg.SenderGates) {
			break
		}
		c.ready.ToApp = append(c.ready.ToApp, d.wire)
		if c.cfg.SenderGates {
			gate := d.seq
			if gate <= c.durable {
				gate = 0
			}
			c.ready.ToAppGate = append(c.ready.ToAppGate, gate)
		}
		c.queue[0] = delivery{}
		c.queue = c.queue[1:]
	}
	rd := c.ready
	c.lastLists = [3]int{len(rd.Log), len(rd.ToApp), len(rd.PeerSends)}
	// The next batch reuses the arrays of this one's lists: no growing from
	// empty on every batch. rd is the caller's until it calls Ready again.
	c.ready = Ready{Log: rd.Log[:0], ToApp: rd.ToApp[:0], ToAppGate: rd.ToAppGate[:0], PeerSends: rd.PeerSends[:0], PeerAcks: rd.PeerAcks[:0]}
	return rd
}
