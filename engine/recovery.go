package engine

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strconv"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/vfs"
	"github.com/ambr-dev/ambr/logfmt"
)

// recovered is what recovery read from an instance directory.
type recovered struct {
	fresh      bool
	manifest   *logfmt.Manifest
	in         *layout.Instance // of manifest
	checkpoint *logfmt.Checkpoint
	// framed is the buffer checkpoint.State was read into, with
	// checkpointRoom free bytes before it, or nil (Core.StartRecoveryFramed).
	framed  []byte
	records []*logfmt.Record
	// newSegment is the segment that records logged from now on go to:
	// above every segment and checkpoint present, so nothing is overwritten.
	newSegment uint64
	// notes says what recovery had to do (torn tail cut, checkpoint skipped).
	notes []string
	// upgrading: the recovery ends in an upgrade (set by the caller, for
	// sealRecovered).
	upgrading bool
	// tail is the last segment and where its valid part ends (after a
	// torn tail was cut): what a promoted replica seals. hasTail is false
	// when no segment follows the checkpoint.
	tailSeg uint64
	tailEnd int64
	hasTail bool
}

// ErrDamagedLog says the log is damaged in a way recovery cannot repair
// without losing acknowledged input.
var ErrDamagedLog = errors.New("the log is damaged")

// recoverInstance reads the instance in dir: the newest valid checkpoint and
// every record after it. It repairs a torn tail (keeping a copy of what it
// cuts beside the segment) and skips a checkpoint that fails its checksum
// for the one before it. It never removes a valid record.
func recoverInstance(fsys vfs.FS, dir string) (*recovered, error) {
	rec, err := recoverCheckpoint(fsys, dir)
	if err != nil || rec.fresh {
		return rec, err
	}
	if err := rec.readLog(func(r *logfmt.Record) error {
		c := *r
		c.Sources = append([]logfmt.Source(nil), r.Sources...)
		c.Messages = append([]byte(nil), r.Messages...)
		rec.records = append(rec.records, &c)
		return nil
	}); err != nil {
		return nil, err
	}
	return rec, nil
}

// recoverCheckpoint is the first part of recoverInstance: the newest valid
// checkpoint, without the log after it, which readLog reads.
func recoverCheckpoint(fsys vfs.FS, dir string) (*recovered, error) {
	m, err := layout.ReadManifest(fsys, dir)
	if errors.Is(err, layout.ErrNoInstance) {
		return recoverFresh(fsys, dir)
	}
	if err != nil {
		return nil, err
	}
	in := &layout.Instance{FS: fsys, Dir: dir, Manifest: m}
	segs, err := in.Segments()
	if err != nil {
		return nil, err
	}
	ckpts, err := in.Checkpoints()
	if err != nil {
		return nil, err
	}
	rec := &recovered{manifest: m, in: in}
	for _, n := range append(segs, ckpts...) {
		rec.newSegment = max(rec.newSegment, n+1)
	}
	if m.Checkpoint == 0 {
		return recoverFresh(fsys, dir)
	}
	for k := m.Checkpoint; k >= 1; k-- {
		ck, framed, err := in.ReadCheckpointRoom(k, checkpointRoom)
		if err != nil {
			rec.notes = append(rec.notes, fmt.Sprintf("skipped checkpoint %d: %v", k, err))
			continue
		}
		rec.checkpoint, rec.framed = ck, framed
		return rec, nil
	}
	return nil, fmt.Errorf("recover %s: no valid checkpoint among 1..%d: %w", dir, m.Checkpoint, ErrDamagedLog)
}

// readLog hands each record of the log after the checkpoint to replay, in
// order, each verified before it is handed; the record and its bytes are
// reused after replay returns. A damaged record in the middle of the log
// ends it with an ErrDamagedLog error, after the records before it were
// handed (nothing on disk changes); a torn tail is cut off (kept as a
// .broken file) once every record before it was handed. It adds recovery's
// notes and sets the tail.
func (rec *recovered) readLog(replay func(*logfmt.Record) error) error {
	return rec.readLogOwn(false, func(r *logfmt.Record, _ []byte) error { return replay(r) })
}

// readLogOwn is readLog handing each record's encoded bytes too (its
// Messages are their tail); with own, each in a buffer of its own, which
// replay may keep and write over (layout.LogReader.OwnBuffers).
func (rec *recovered) readLogOwn(own bool, replay func(r *logfmt.Record, raw []byte) error) error {
	k := rec.checkpoint.Number
	n, notes, err := readLogFrom(rec.in, k, rec.checkpoint.NextSeq, rec, own, replay)
	if err != nil {
		return err
	}
	if k != rec.manifest.Checkpoint {
		rec.notes = append(rec.notes, fmt.Sprintf("recovering from checkpoint %d and replaying %d records", k, n))
	}
	rec.notes = append(rec.notes, notes...)
	return nil
}

// recoverFresh handles a directory without a completed first start. Files
// of an interrupted first start (segment 1, checkpoint 1) are removed;
// anything more means the MANIFEST was lost, and starting over would throw
// away history, so it refuses.
func recoverFresh(fsys vfs.FS, dir string) (*recovered, error) {
	logDir := filepath.Join(dir, layout.VersionDir(0))
	names, err := fsys.ReadDir(logDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("recover %s: %w", dir, err)
	}
	for _, name := range names {
		if name != layout.SegmentName(1) && name != layout.CheckpointName(1) {
			return nil, fmt.Errorf("recover %s: %s holds %s but the instance has no completed first start (MANIFEST missing or without checkpoint); restore the MANIFEST or move the directory away", dir, logDir, name)
		}
	}
	for _, name := range names {
		if err := fsys.Remove(filepath.Join(logDir, name)); err != nil {
			return nil, fmt.Errorf("recover %s: %w", dir, err)
		}
	}
	return &recovered{fresh: true, newSegment: 1}, nil
}

// readLogFrom hands every record from segment k on, which must start at
// sequence number first, to replay, with its encoded bytes (own: in a
// buffer of its own), and returns how many. Torn tails are
// cut off and kept as .broken files. It sets rec's tail to where the valid
// log ends.
func readLogFrom(in *layout.Instance, k uint64, first int64, rec *recovered, own bool, replay func(r *logfmt.Record, raw []byte) error) (int, []string, error) {
	lr, err := in.NewLogReader(k)
	if err != nil {
		return 0, nil, err
	}
	lr.Strict() // no one writes the log while it recovers
	if own {
		lr.OwnBuffers()
	}
	defer lr.Close()
	count := 0
	for {
		r, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, nil, fmt.Errorf("recover %s: %w: %w", in.Dir, ErrDamagedLog, err)
		}
		if count == 0 && r.Seq != first {
			seg, _ := lr.Position()
			return 0, nil, fmt.Errorf("recover %s: checkpoint %d says the log continues at record %d, but log-%d starts at record %d: %w", in.Dir, k, first, seg, r.Seq, ErrDamagedLog)
		}
		if err := replay(r, lr.RecordBytes()); err != nil {
			return 0, nil, err
		}
		count++
	}
	if seg, end := lr.End(); seg != 0 {
		rec.tailSeg, rec.tailEnd, rec.hasTail = seg, end, true
	}
	var notes []string
	for _, n := range lr.Notes() {
		notes = append(notes, n)
	}
	if torn := lr.TornTail(); torn != nil {
		seg, _ := lr.Position()
		segs, _ := in.Segments()
		if len(segs) > 0 {
			seg = segs[len(segs)-1]
		}
		note, err := cutTornTail(in, seg)
		if err != nil {
			return 0, nil, err
		}
		notes = append(notes, note)
	}
	return count, notes, nil
}

// cutTornTail truncates segment seg after its last complete record, first
// copying the bytes it cuts to log-<seg>.broken (or .broken.N).
func cutTornTail(in *layout.Instance, seg uint64) (string, error) {
	path := in.SegmentPath(seg)
	f, err := in.FS.Open(path)
	if err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	var good int64
	sr, err := logfmt.NewSegmentReader(f)
	if err == nil {
		for {
			if _, err = sr.Next(); err != nil {
				break
			}
		}
		good = sr.Offset()
	}
	f.Close()
	if err != nil && err != io.EOF && !logfmt.IsTornTail(err) {
		return "", fmt.Errorf("repair torn tail of %s: %w", path, err)
	}
	if err == io.EOF {
		return "", nil
	}
	st, err := in.FS.Stat(path)
	if err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	size := st.Size()
	cut := make([]byte, size-good)
	rf, err := in.FS.Open(path)
	if err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	_, err = rf.ReadAt(cut, good)
	rf.Close()
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("repair torn tail: read %s: %w", path, err)
	}
	broken := path + layout.BrokenSuffix
	for i := 2; ; i++ {
		if _, err := in.FS.Stat(broken); errors.Is(err, fs.ErrNotExist) {
			break
		}
		broken = path + layout.BrokenSuffix + "." + strconv.Itoa(i)
	}
	bf, err := in.FS.Create(broken)
	if err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	if _, err := bf.Write(cut); err != nil {
		bf.Close()
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	if err := bf.Sync(); err != nil {
		bf.Close()
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	bf.Close()
	if err := in.FS.SyncDir(in.LogDir()); err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	af, err := in.FS.OpenAppend(path)
	if err != nil {
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	if good < logfmt.SegmentHeaderSize {
		good = 0 // the header itself was torn: leave an empty file
	}
	if err := af.Truncate(good); err != nil {
		af.Close()
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	if err := af.Sync(); err != nil {
		af.Close()
		return "", fmt.Errorf("repair torn tail: %w", err)
	}
	af.Close()
	return fmt.Sprintf("cut a torn tail of %d bytes from %s at offset %d (kept in %s)", len(cut), path, good, filepath.Base(broken)), nil
}
