// Package logfmt is the only place in ambr that knows bytes: the AMBROSIA
// app ↔ coordinator wire protocol and ambr's own on-disk formats (log
// segments, checkpoints, the MANIFEST). It does no I/O beyond io.Reader and
// io.Writer and imports nothing else of the project.
//
// Every constant marked "part of the format" is written to disk or to the
// wire; changing one breaks compatibility with existing logs or with apps in
// other languages.
//
// # App protocol
//
// The app and its Immortal Coordinator (IC) talk over two loopback TCP
// connections. The app sends bare messages (MessageReader decodes them); the
// IC sends records, each a 24-byte header and a body of messages
// (RecordReader). Lengths, counts and method ids are zig-zag varints:
// ZigZagInt for 32 bits, ZigZagLong for 64, the bytes of protobuf's
// sint32/sint64 and of binary.PutVarint. IntFixed and LongFixed are
// little-endian.
//
// A message is framed by its size, which counts the type byte and the data
// (Message, AppendMessage, ParseMessage):
//
//	+------------------+------------+------------------------+
//	| size (ZigZagInt) | type (1 B) | data (size - 1 bytes)  |
//	+------------------+------------+------------------------+
//
// An RPC (type 0) as the IC delivers it to the app (RPC, ParseRPC); rpc kind
// is 0 for a call, 1 for a fork, 2 for an impulse:
//
//	+--------------+-------------+--------------+-----------------+
//	| reserved     | method id   | rpc kind     | arguments       |
//	| (1 B)        | (ZigZagInt) | (1 B)        | (rest of data)  |
//	+--------------+-------------+--------------+-----------------+
//
// An RPC (type 0) as the app sends it puts the destination first; length 0
// and no name is a self-call (OutgoingRPC, ParseOutgoingRPC):
//
//	+-------------+---------+----------+-------------+----------+-----------+
//	| dest length | dest    | reserved | method id   | rpc kind | arguments |
//	| (ZigZagInt) | (UTF-8) | (1 B)    | (ZigZagInt) | (1 B)    | (rest)    |
//	+-------------+---------+----------+-------------+----------+-----------+
//
// RPCBatch (type 5) and CountReplayableRPCBatch (type 13) hold count framed
// RPC messages; the second count, only in type 13, says how many of them are
// not impulses (Batch, ParseBatch):
//
//	+-------------+-------------------+-------------+-----+-------------+
//	| count       | replayable        | RPC message | ... | RPC message |
//	| (ZigZagInt) | (ZigZagInt, 13)   | (framed)    |     | (framed)    |
//	+-------------+-------------------+-------------+-----+-------------+
//
// A Checkpoint message (type 8) carries only the length N of the state. The N
// state bytes follow the frame directly, outside its size, so that a state
// can exceed 2 GiB (AppendCheckpointMessage, Message.CheckpointStateLen,
// MessageReader.State). 804 state bytes are announced by 06 08 c8 0c:
//
//	+------+----------+---------------+-------------------------+
//	| size | type = 8 | N             | N state bytes ...       |
//	|      |          | (ZigZagLong)  |                         |
//	+------+----------+---------------+-------------------------+
//	|<-------- the frame ------------>|
//
// AttachTo (1) carries a destination name, InitialMessage (9) any bytes, and
// TakeCheckpoint (2), UpgradeTakeCheckpoint (10),
// TakeBecomingPrimaryCheckpoint (11), UpgradeService (12) and
// BecomingPrimary (15) no data. TrimTo (14) passes between ICs only.
//
// Every record the IC sends to the app starts with a 24-byte header
// (WireHeader, ParseWireHeader); size counts the header and the body:
//
//	+--------------+--------------+------------------+------------------+
//	| committer id | size         | check bytes      | sequence id      |
//	| (IntFixed)   | (IntFixed)   | (LongFixed)      | (LongFixed)      |
//	+--------------+--------------+------------------+------------------+
//	  bytes 0-3      4-7            8-15               16-23
//
// Sequence ids ≥ 0 number the records of the log, consecutively; -1 marks a
// control record the IC makes up, -2 the record carrying the checkpoint to
// recover from. The body is framed messages back to back (MessageIter). When
// the last one is a Checkpoint message its state bytes follow the record on
// the stream, outside its size (RecordReader.State):
//
//	+--------+-----------+-----------+-----+-----------+   +-------------+
//	| header | message 1 | message 2 | ... | message n |   | state bytes |
//	+--------+-----------+-----------+-----+-----------+   +-------------+
//	|<------------------- size ----------------------->|
//
// # On-disk formats
//
// ambr's own files. All integers are little-endian; all checksums are
// xxhash64. Every layout constant below is part of the format.
//
// A log segment (v<version>/log-<n>) is a 16-byte header and records back
// to back. A reader stops cleanly at an incomplete last record (a torn
// tail: IsTornTail); damage followed by valid records is ErrCorrupt. The
// writer extends the segment it writes with zeros ahead of its records
// (so that an fdatasync has no new file size to commit) and cuts them off
// when it closes the segment: zeros from a record boundary to the end of
// the file are the segment's end (io.EOF), in any version.
//
//	segment header (16 bytes)
//	+------------------+----------------+----------------+
//	| "ambrlog\x00" (8) | version u32 =2 | segment n u32  |
//	+------------------+----------------+----------------+
//
//	record (RecordFixedSize = 64 bytes, then sources, then messages)
//	 0                4      5      6          8                  16
//	+----------------+------+------+----------+------------------+
//	| length u32     | ver  | flags| nsources | checksum u64     |   checksum covers every byte of the
//	| (whole record) | u8=2 | u8   | u16      |                  |   record except the checksum field
//	+----------------+------+------+----------+------------------+
//	| seq i64                      | logged time i64 (unix ns)   |  16..32
//	+------------------------------+-----------------------------+
//	| output count u64             | output digest u64           |  32..48
//	+------------------------------+-----------------------------+
//	| message area length u32      | message count u32           |  48..56
//	+------------------------------+-----------------------------+
//	| unsynced from i64 (0: none)  |                                 56..64
//	+------------------------------+
//	| nsources × { name len u16 | name | first seq i64 | count u32 }
//	+-------------------------------------------------------------+
//	| messages: framed app-protocol messages, as delivered to the app
//	+-------------------------------------------------------------+
//
// Flags bit 0 (FlagWriteStart) marks the first record of each write of the
// log. The writer may issue a write while the previous write's sync is
// still running (pipelined group commit); the write's first record then
// says, in unsynced from, the lowest sequence number written but not yet
// known synced when it was issued (0: everything before it was synced).
// A crash leaves damage only in writes not yet synced, whose pages may reach
// the disk in any order. So damage at the record that should carry sequence
// number N is a torn tail unless a valid later write start has unsynced from
// 0 or above N, that is, was issued after N was synced: then it is corruption.
//
// Version 1 segments (segment version 1, record version 1, fixed part 56
// bytes: the same without unsynced from) were written with every write
// synced before the next began; they are still read, and in them any valid
// write start after damage means corruption.
//
// Sources say which sender each run of messages came from and with which
// sender sequence numbers (first seq 0: unsequenced input, such as the app's
// own impulses); the last of a run is the receiver's watermark for that
// sender. The output count and digest describe the app's deterministic output
// stream when the record was logged (see ChainDigest): replays are checked
// against them.
//
// A checkpoint (v<version>/chkpt-<n>) holds the state before segment n's
// first record:
//
//	 0                  8                12               16
//	+------------------+----------------+----------------+
//	| "ambrchk\x00" (8) | version u32 =1 | app version u32|
//	+------------------+----------------+----------------+
//	| number u64 | next seq i64 | time i64 | out count u64 | out digest u64 |  16..56
//	+------------+--------------+----------+---------------+----------------+
//	| bookkeeping length u64 B  | state length u64 S  |                       56..72
//	+---------------------------+---------------------+
//	| bookkeeping (B bytes):
//	|   ninputs u32, ninputs × { name len u16 | name | watermark i64 }
//	|   noutputs u32, noutputs × { name len u16 | name | last seq i64 |
//	|       acked seq i64 | nunacked u32 | nunacked × { len u32 | message } }
//	+-------------------------------------------------------------+
//	| state (S bytes, opaque to the coordinator)                   |
//	+-------------------------------------------------------------+
//	| checksum u64 over everything before it                       |
//	+-------------------------------------------------------------+
//
// The MANIFEST is replaced atomically (temp file, sync, rename, sync dir):
//
//	+------------------+----------------+--------------+-----------+--------------+
//	| "ambrman\x00" (8) | version u32 =1 | body len u32 | JSON body | checksum u64 |
//	+------------------+----------------+--------------+-----------+--------------+
//
// The JSON body (see Manifest) names the current version, the newest valid
// checkpoint, the first live segment and the app builds that ran.
package logfmt
