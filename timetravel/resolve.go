package timetravel

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// ErrBadPoint marks points that do not name a place in this instance's
// history (past the end, before the oldest checkpoint, an unknown
// checkpoint, a time before the first record): the user's input is wrong.
var ErrBadPoint = errors.New("bad point")

// ErrDamaged marks points past a damaged record: the log cannot be read
// there, though the records before the damage can be replayed.
var ErrDamaged = errors.New("past damage in the log")

// pastDamage is the error for point p, which lies past the damage that
// ends the readable log after record last.
func pastDamage(p Point, last int64, damage error) error {
	what := fmt.Sprint(p)
	if what == "" {
		what = "the end of the log"
	}
	return fmt.Errorf("%w: %s lies past record %d, after which the log is damaged (%v); points up to record %d can be replayed (from any checkpoint before it)", ErrDamaged, what, last, damage, last)
}

// Resolve turns a point into the sequence number of the record it names in
// in's log: the state "at P" is the state after that record (0: the initial
// state, before record 1).
//
//	seq:N             N
//	checkpoint:K+N    the record N records past checkpoint K (K+0: the state
//	                  the checkpoint holds, after record NextSeq-1)
//	time              the last record logged at or before it
//	end               the last complete record
func Resolve(in *layout.Instance, p Point) (int64, error) {
	if p.Kind == PointCheckpoint {
		c, err := in.ReadCheckpoint(p.Checkpoint)
		if err != nil {
			have, _ := in.Checkpoints()
			return 0, fmt.Errorf("%w %s: cannot use checkpoint %d (%v); checkpoints present: %v", ErrBadPoint, p, p.Checkpoint, err, have)
		}
		seq := c.NextSeq - 1 + p.Offset
		if p.Offset > 0 {
			last, damage, err := lastSeq(in)
			if err != nil {
				return 0, err
			}
			if seq > last && damage != nil {
				return 0, pastDamage(p, last, damage)
			}
			if seq > last {
				return 0, fmt.Errorf("%w %s: that is record %d, but the log ends at record %d", ErrBadPoint, p, seq, last)
			}
		}
		return seq, nil
	}
	lr, err := in.NewLogReader(0)
	if err != nil {
		return 0, err
	}
	defer lr.Close()
	var last, atOrBefore int64
	var first time.Time
	var damage error
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, logfmt.ErrCorrupt) {
			damage = err
			break
		}
		if err != nil {
			return 0, err
		}
		if last == 0 {
			first = rec.LoggedTime()
		}
		last = rec.Seq
		if p.Kind == PointSeq && rec.Seq == p.Seq {
			return p.Seq, nil
		}
		if p.Kind == PointTime {
			if rec.LoggedTime().After(p.Time) {
				break
			}
			atOrBefore = rec.Seq
		}
	}
	if damage != nil && (p.Kind != PointTime || atOrBefore == last) {
		return 0, pastDamage(p, last, damage)
	}
	switch p.Kind {
	case PointSeq:
		if last == 0 {
			return 0, fmt.Errorf("%w %s: the log of %s has no records yet", ErrBadPoint, p, in.Dir)
		}
		return 0, fmt.Errorf("%w %s: the log holds records up to %d (oldest kept segment starts the history; 'ambr log %s' lists them)", ErrBadPoint, p, last, in.Dir)
	case PointEnd:
		if last == 0 {
			return 0, fmt.Errorf("%w %s: the log of %s has no records yet", ErrBadPoint, p, in.Dir)
		}
		return last, nil
	}
	if atOrBefore == 0 {
		if last == 0 {
			return 0, fmt.Errorf("%w %s: the log of %s has no records yet", ErrBadPoint, p, in.Dir)
		}
		return 0, fmt.Errorf("%w %s: no record was logged at or before that time; the first was logged at %s", ErrBadPoint, p, first.Format(time.RFC3339Nano))
	}
	return atOrBefore, nil
}

// lastSeq returns the log's last complete record, or the last before a
// damaged one (with the damage).
func lastSeq(in *layout.Instance) (int64, error, error) {
	lr, err := in.NewLogReader(0)
	if err != nil {
		return 0, nil, err
	}
	defer lr.Close()
	var last int64
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return last, nil, nil
		}
		if errors.Is(err, logfmt.ErrCorrupt) {
			return last, err, nil
		}
		if err != nil {
			return 0, nil, err
		}
		last = rec.Seq
	}
}

// Resolve is Resolve through the index: no scan of the log. While Build
// runs, points past what is indexed are resolved from the log.
func (ix *Index) Resolve(p Point) (int64, error) {
	if ix.Building() {
		if p.Kind == PointSeq && p.Seq >= ix.peekFirst.Load() && p.Seq <= ix.peekLast.Load() {
			return p.Seq, nil
		}
		if p.Kind == PointEnd && ix.peekLast.Load() > 0 {
			return ix.peekLast.Load(), nil
		}
		if p.Kind == PointTime || p.Kind == PointCheckpoint {
			return Resolve(ix.in, p)
		}
	}
	switch p.Kind {
	case PointCheckpoint:
		c, err := ix.in.ReadCheckpoint(p.Checkpoint)
		if err != nil {
			have, _ := ix.in.Checkpoints()
			return 0, fmt.Errorf("%w %s: cannot use checkpoint %d (%v); checkpoints present: %v", ErrBadPoint, p, p.Checkpoint, err, have)
		}
		seq := c.NextSeq - 1 + p.Offset
		if seq > ix.Last() && ix.Damage() != nil {
			return 0, pastDamage(p, ix.Last(), ix.Damage())
		}
		if seq > ix.Last() {
			return 0, fmt.Errorf("%w %s: that is record %d, but the log ends at record %d", ErrBadPoint, p, seq, ix.Last())
		}
		return seq, nil
	case PointSeq:
		if _, ok, err := ix.entryAt(p.Seq); err != nil {
			return 0, err
		} else if !ok {
			if p.Seq > ix.Last() && ix.Damage() != nil {
				return 0, pastDamage(p, ix.Last(), ix.Damage())
			}
			if ix.Last() == 0 {
				return 0, fmt.Errorf("%w %s: the log of %s has no records yet", ErrBadPoint, p, ix.in.Dir)
			}
			return 0, fmt.Errorf("%w %s: the log holds records up to %d (oldest kept segment starts the history; 'ambr log %s' lists them)", ErrBadPoint, p, ix.Last(), ix.in.Dir)
		}
		return p.Seq, nil
	case PointEnd:
		if ix.Damage() != nil {
			return 0, pastDamage(p, ix.Last(), ix.Damage())
		}
		if ix.Last() == 0 {
			return 0, fmt.Errorf("%w %s: the log of %s has no records yet", ErrBadPoint, p, ix.in.Dir)
		}
		return ix.Last(), nil
	}
	seq, err := ix.AtOrBefore(p.Time)
	if err != nil {
		return 0, err
	}
	if ix.Damage() != nil && seq == ix.Last() {
		return 0, pastDamage(p, ix.Last(), ix.Damage())
	}
	if seq == 0 {
		first, _, _ := ix.firstEntry()
		return 0, fmt.Errorf("%w %s: no record was logged at or before that time; the first was logged at %s", ErrBadPoint, p, first.Time.Format(time.RFC3339Nano))
	}
	return seq, nil
}

func (ix *Index) firstEntry() (IndexEntry, bool, error) {
	var first IndexEntry
	found := false
	err := ix.Range(0, ix.Last(), func(e IndexEntry) bool { first, found = e, true; return false })
	return first, found, err
}

// RecordAt reads record seq of in's log.
func RecordAt(in *layout.Instance, seq int64) (*logfmt.Record, error) {
	lr, err := in.NewLogReader(0)
	if err != nil {
		return nil, err
	}
	defer lr.Close()
	for {
		rec, err := lr.Next()
		if err == io.EOF {
			return nil, fmt.Errorf("%w: there is no record %d", ErrBadPoint, seq)
		}
		if err != nil {
			return nil, err
		}
		if rec.Seq == seq {
			c := *rec
			c.Messages = append([]byte(nil), rec.Messages...)
			c.Sources = append([]logfmt.Source(nil), rec.Sources...)
			return &c, nil
		}
	}
}
