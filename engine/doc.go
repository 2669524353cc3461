// Package engine is the immortal coordinator (IC): it logs every input of an
// immortal durably before the app sees it, delivers it, checkpoints, and
// recovers the instance exactly after any crash.
//
//	        app process (any language)                 this package
//	┌──────────────────────────────┐      ┌─────────────────────────────────────┐
//	│ binding (engine/immortal)    │ recv │ readApp ─► events ─► Core (no I/O)  │
//	│  handlers, state, impulses   ├─────►│                       │ Ready()     │
//	│                              │ send │ appSender ◄── ToApp ◄─┤             │
//	│                              │◄─────┤ LogWriter ◄── Log ◄───┤ (group      │
//	└──────────────────────────────┘      │ checkpoint+MANIFEST ◄─┘  commit)    │
//	                                      └─────────────────────────────────────┘
//
// Core is the state machine, in the etcd-raft shape: the caller feeds it
// events (AppMessage, LogDurable, CheckpointDurable) and takes what it wants
// done from Ready — records to persist, a checkpoint to write, bytes for the
// app — and it never touches disk, sockets or the clock. Coordinator is the
// thin goroutine loop around it: the app connection (TCP on loopback, or
// in-memory pipes for an app hosted in the same process), the LogWriter
// (adaptive group commit, no timers) and the checkpoint store. All disk work
// goes through a vfs.FS, so crashes and disk faults are simulated in tests.
//
// The rules it keeps (architecture.md): log before deliver; nothing is
// delivered or acknowledged before it is synced; checkpoint n holds the state
// before segment n's first record; recovery loads the newest valid checkpoint
// and replays the log after it, cutting a torn tail (kept as .broken) and
// never a valid record; every recovery continues in a new segment.
//
// Replicas (replica.go, follow.go): with Options.Election, several
// coordinators share one instance directory. Each is a hot standby until
// the Election makes it primary: its app recovers from the newest
// checkpoint and then follows the records the primary has committed
// (COMMITTED), as a recovery that never ends. Promotion raises the epoch;
// the standby feeds the rest of the log, and the MANIFEST seals the
// segment the predecessor wrote at the valid end it read, before anything
// is written; the app gets BecomingPrimary. With Options.Checkpointer a
// replica follows for good and takes the checkpoints (core_follow.go). The primary's LogWriter checks the
// epoch (a Fence) before every write and after every sync, and creates
// files and writes the MANIFEST under the lock promotions take, so a
// deposed primary writes nothing that counts and acknowledges nothing more.
// FileElection does it with files on one machine; an etcd lease can stand
// in for it behind the same interface.
package engine
