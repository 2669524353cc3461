// Package timetravel replays an immortal's checkpoint and log read-only, up
// to any point in its history, standing in for its coordinator:
//
//	instance dir (read-only)        this package                 app build
//	  chkpt-k ───────────────► Session ── checkpoint record ──► (recorded binary,
//	  log-k, log-k+1, … ─────►   │      ── records ≤ P ───────►  or --app)
//	                             │ ◄──── messages it sends ─────  collected, not sent
//	                             │ ──── TakeCheckpoint ─────────►
//	                   Cursor ◄──┘ ◄──── Checkpoint (state at P)
//
// It never writes into the instance's directory and works while the instance
// runs (records are read only up to the last complete one). Stepping forward
// feeds one more record to the running app; stepping back starts the app
// again from the nearest checkpoint before the target.
//
// Points in time (P) are shared by every command that takes one:
//
//	1234 or seq:1234        a record sequence number
//	2026-11-21T10:15:00Z    RFC 3339: the last record logged at or before it
//	checkpoint:3+10         ten records after checkpoint 3's first record
//	end                     the last complete record
package timetravel
