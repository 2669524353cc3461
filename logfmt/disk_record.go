package logfmt

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"
)

// On-disk log record constants. Part of the format: changing any of them
// makes existing logs unreadable.
const (
	// RecordFormatVersion is the version byte of every log record this
	// package writes. Version 2 added the unsynced-from field (a write may
	// begin before its predecessor is synced); version 1 records, in
	// version 1 segments, are still read.
	RecordFormatVersion = 2
	// RecordFixedSize is the size of a version 2 record's fixed part,
	// before its sources and messages.
	RecordFixedSize = 64
	// RecordFormatVersion1 is the version byte of the records of version 1
	// segments, written before writes were pipelined.
	RecordFormatVersion1 = 1
	// RecordFixedSizeV1 is the size of a version 1 record's fixed part: a
	// version 2 record's without the unsynced-from field.
	RecordFixedSizeV1 = 56
	// MaxRecordSize bounds a record's length field. A length above it is
	// treated as damage, never as a reason to allocate.
	MaxRecordSize = 1 << 31
	// MaxSources bounds the number of sources in one record.
	MaxSources = 1<<16 - 1
	// MaxPeerNameLen bounds an instance name stored in a record, checkpoint
	// or manifest.
	MaxPeerNameLen = 1<<16 - 1
)

// Record flags. Part of the format.
const (
	// FlagWriteStart marks the first record of one write of the log (a
	// group-commit flush). A reader uses it, with the record's
	// UnsyncedFrom, to tell damage that a crash can leave (in writes not
	// yet synced, whose pages may reach the disk in any order: a torn
	// tail) from damage in a write that was synced before a later write
	// began (corruption).
	FlagWriteStart byte = 1
)

// Byte offsets inside a record's fixed part. Part of the format.
const (
	recOffLength     = 0
	recOffVersion    = 4
	recOffFlags      = 5
	recOffNumSources = 6
	recOffChecksum   = 8
	recOffSeq        = 16
	recOffTime       = 24
	recOffOutCount   = 32
	recOffOutDigest  = 40
	recOffMsgLen     = 48
	recOffMsgCount   = 52
	// Version 2 only.
	recOffUnsyncedFrom = 56
)

// recordFixedSize returns the size of the fixed part of a record of format
// version v, 0 for a version this package does not know.
func recordFixedSize(v byte) int {
	switch v {
	case RecordFormatVersion:
		return RecordFixedSize
	case RecordFormatVersion1:
		return RecordFixedSizeV1
	}
	return 0
}

// Source says where a run of a record's messages came from: Count
// consecutive messages of the record's message area, sent by Peer with the
// per-sender sequence numbers FirstSeq, FirstSeq+1, … FirstSeq+Count-1. The
// last of them is the watermark for Peer after this record. FirstSeq 0 marks
// unsequenced input (impulses from the instance's own app, the echoed
// InitialMessage), which no sender will ever resend.
type Source struct {
	Peer     string
	FirstSeq int64
	Count    uint32
}

// LastSeq is the sender sequence number of the source's last message, the
// receiver's watermark for Peer after the record. It is 0 for unsequenced
// sources.
func (s Source) LastSeq() int64 {
	if s.FirstSeq == 0 {
		return 0
	}
	return s.FirstSeq + int64(s.Count) - 1
}

// Record is one entry of an instance's log: a batch of input messages logged
// together, in the order the app must process them.
type Record struct {
	// Flags are the record's flags (FlagWriteStart).
	Flags byte
	// UnsyncedFrom, on the first record of a write (FlagWriteStart), is
	// the lowest sequence number that had been written but was not yet
	// known to be synced when this write was issued; 0 if everything
	// before the write was synced. The writer may issue a write while the
	// previous one's sync is still running: damage in a record at or after
	// UnsyncedFrom, followed by this write, can be what a crash left. Always
	// 0 in version 1 records (each write was synced before the next).
	UnsyncedFrom int64
	// Seq is the record's sequence number. Records of an instance are
	// numbered 1, 2, 3, … with no gaps across segments.
	Seq int64
	// Time is when the coordinator logged the record, in Unix nanoseconds.
	Time int64
	// OutCount and OutDigest describe the app's output stream at the moment
	// the record was logged: OutCount outgoing messages had been produced,
	// and OutDigest is the chained digest (see ChainDigest) over them. The
	// output stream is deterministic, so any prefix can be checked against a
	// replay, whatever the timing of the original run.
	OutCount  uint64
	OutDigest uint64
	// Sources tells which sender each run of messages came from.
	Sources []Source
	// Messages holds MessageCount framed app-protocol messages back to back,
	// in the form the coordinator delivers them to the app.
	Messages     []byte
	MessageCount uint32
}

// LoggedTime returns Time as a time.Time in UTC.
func (r *Record) LoggedTime() time.Time { return time.Unix(0, r.Time).UTC() }

// EncodedSize returns the number of bytes AppendRecord will append.
func (r *Record) EncodedSize() int {
	n := RecordFixedSize + len(r.Messages)
	for _, s := range r.Sources {
		n += 2 + len(s.Peer) + 8 + 4
	}
	return n
}

// AppendRecord appends the encoding of r to dst and returns the extended
// slice. It fails only when r cannot be represented (too many sources, a name
// too long, a record too large, counts that do not add up).
func AppendRecord(dst []byte, r *Record) ([]byte, error) {
	dst, err := AppendRecordHead(dst, r)
	if err != nil {
		return dst, err
	}
	return append(dst, r.Messages...), nil
}

// AppendRecordHead appends the encoding of r without its messages: the
// fixed part and the sources, with the checksum over the whole record. The
// head followed by r.Messages is what AppendRecord appends; a writer can
// send the messages from where they are instead of copying them.
func AppendRecordHead(dst []byte, r *Record) ([]byte, error) {
	if len(r.Sources) > MaxSources {
		return dst, fmt.Errorf("logfmt: encode record %d: %d sources, at most %d", r.Seq, len(r.Sources), MaxSources)
	}
	size := r.EncodedSize()
	if size > MaxRecordSize {
		return dst, fmt.Errorf("logfmt: encode record %d: %d bytes, at most %d", r.Seq, size, MaxRecordSize)
	}
	var total uint64
	for _, s := range r.Sources {
		if len(s.Peer) > MaxPeerNameLen {
			return dst, fmt.Errorf("logfmt: encode record %d: peer name of %d bytes, at most %d", r.Seq, len(s.Peer), MaxPeerNameLen)
		}
		total += uint64(s.Count)
	}
	if total != uint64(r.MessageCount) {
		return dst, fmt.Errorf("logfmt: encode record %d: sources count %d messages, record has %d", r.Seq, total, r.MessageCount)
	}
	start := len(dst)
	dst = append(dst, make([]byte, RecordFixedSize)...)
	b := dst[start:]
	binary.LittleEndian.PutUint32(b[recOffLength:], uint32(size))
	b[recOffVersion] = RecordFormatVersion
	b[recOffFlags] = r.Flags
	binary.LittleEndian.PutUint64(b[recOffUnsyncedFrom:], uint64(r.UnsyncedFrom))
	binary.LittleEndian.PutUint16(b[recOffNumSources:], uint16(len(r.Sources)))
	binary.LittleEndian.PutUint64(b[recOffSeq:], uint64(r.Seq))
	binary.LittleEndian.PutUint64(b[recOffTime:], uint64(r.Time))
	binary.LittleEndian.PutUint64(b[recOffOutCount:], r.OutCount)
	binary.LittleEndian.PutUint64(b[recOffOutDigest:], r.OutDigest)
	binary.LittleEndian.PutUint32(b[recOffMsgLen:], uint32(len(r.Messages)))
	binary.LittleEndian.PutUint32(b[recOffMsgCount:], r.MessageCount)
	for _, s := range r.Sources {
		dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s.Peer)))
		dst = append(dst, s.Peer...)
		dst = binary.LittleEndian.AppendUint64(dst, uint64(s.FirstSeq))
		dst = binary.LittleEndian.AppendUint32(dst, s.Count)
	}
	b = dst[start:]
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write(b[:recOffChecksum])
	_, _ = d.Write(b[recOffSeq:])
	_, _ = d.Write(r.Messages)
	binary.LittleEndian.PutUint64(b[recOffChecksum:], d.Sum64())
	return dst, nil
}

// recordChecksum is xxhash64 over the whole record except the checksum field.
func recordChecksum(rec []byte) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.Write(rec[:recOffChecksum])
	_, _ = d.Write(rec[recOffSeq:])
	return d.Sum64()
}

// RecordLength reads the length field of the record starting at b. It
// returns ErrTruncated when b is shorter than the smallest fixed part (a
// version 1 record's).
func RecordLength(b []byte) (int, error) {
	if len(b) < RecordFixedSizeV1 {
		return 0, ErrTruncated
	}
	return int(binary.LittleEndian.Uint32(b[recOffLength:])), nil
}

// DecodeRecord decodes the record at the start of b into r, verifying its
// checksum and structure, and returns the number of bytes it occupies.
// r.Messages aliases b; r.Sources reuses r's capacity, so decoding many
// records into one Record allocates only for peer names that change.
//
// Errors: ErrTruncated when b ends before the record does (the caller decides
// whether that is a torn tail), ErrCorrupt for a record whose bytes are all
// present but wrong.
func DecodeRecord(b []byte, r *Record) (int, error) {
	if len(b) < RecordFixedSizeV1 {
		return 0, fmt.Errorf("%w: %d bytes, a record needs at least %d", ErrTruncated, len(b), RecordFixedSizeV1)
	}
	length := int(binary.LittleEndian.Uint32(b[recOffLength:]))
	fixed := recordFixedSize(b[recOffVersion])
	if fixed == 0 {
		return 0, fmt.Errorf("%w: record format version %d, this build reads %d and %d", ErrCorrupt, b[recOffVersion], RecordFormatVersion1, RecordFormatVersion)
	}
	if length < fixed || length > MaxRecordSize {
		return 0, fmt.Errorf("%w: record length %d out of range", ErrCorrupt, length)
	}
	if len(b) < length {
		return 0, fmt.Errorf("%w: record of %d bytes, %d present", ErrTruncated, length, len(b))
	}
	rec := b[:length]
	if got, want := recordChecksum(rec), binary.LittleEndian.Uint64(rec[recOffChecksum:]); got != want {
		return 0, fmt.Errorf("%w: record checksum %016x, stored %016x", ErrCorrupt, got, want)
	}
	r.Flags = rec[recOffFlags]
	r.UnsyncedFrom = 0
	if fixed >= recOffUnsyncedFrom+8 {
		r.UnsyncedFrom = int64(binary.LittleEndian.Uint64(rec[recOffUnsyncedFrom:]))
	}
	r.Seq = int64(binary.LittleEndian.Uint64(rec[recOffSeq:]))
	r.Time = int64(binary.LittleEndian.Uint64(rec[recOffTime:]))
	r.OutCount = binary.LittleEndian.Uint64(rec[recOffOutCount:])
	r.OutDigest = binary.LittleEndian.Uint64(rec[recOffOutDigest:])
	msgLen := int(binary.LittleEndian.Uint32(rec[recOffMsgLen:]))
	r.MessageCount = binary.LittleEndian.Uint32(rec[recOffMsgCount:])
	nsrc := int(binary.LittleEndian.Uint16(rec[recOffNumSources:]))
	p := rec[fixed:]
	old := r.Sources
	r.Sources = r.Sources[:0]
	var total uint64
	for i := 0; i < nsrc; i++ {
		if len(p) < 2 {
			return 0, fmt.Errorf("%w: record %d: source %d cut short", ErrCorrupt, r.Seq, i)
		}
		n := int(binary.LittleEndian.Uint16(p))
		if len(p) < 2+n+12 {
			return 0, fmt.Errorf("%w: record %d: source %d cut short", ErrCorrupt, r.Seq, i)
		}
		name := p[2 : 2+n]
		var s Source
		// Reuse the previous decode's string when the name is unchanged: the
		// common case of a reader walking one instance's log.
		if i < len(old) && old[i].Peer == string(name) {
			s.Peer = old[i].Peer
		} else {
			s.Peer = string(name)
		}
		s.FirstSeq = int64(binary.LittleEndian.Uint64(p[2+n:]))
		s.Count = binary.LittleEndian.Uint32(p[2+n+8:])
		total += uint64(s.Count)
		r.Sources = append(r.Sources, s)
		p = p[2+n+12:]
	}
	if len(p) != msgLen {
		return 0, fmt.Errorf("%w: record %d: message area of %d bytes, header says %d", ErrCorrupt, r.Seq, len(p), msgLen)
	}
	if total != uint64(r.MessageCount) {
		return 0, fmt.Errorf("%w: record %d: sources count %d messages, header says %d", ErrCorrupt, r.Seq, total, r.MessageCount)
	}
	r.Messages = p
	return length, nil
}
