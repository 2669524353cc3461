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
// (DISK SECTION: byte layouts of log segments, checkpoints and the MANIFEST)
package logfmt
