// Package upgrade moves an instance to the next version of its app: the
// upgrade test that proves a new build can take over, without touching the
// instance, and the live upgrade that an instance's `ambr run` performs.
//
// A new build carries both versions (in the Go binding:
// immortal.Upgrade(current, next, convert)). The live sequence:
//
//	ambr upgrade NAME --to APP            ambr run of NAME (Live)             coordinator (engine)
//	  Ask: write UPGRADE ───────────────►  take it (at once; or, stopped,
//	                                        as the run starts: the new
//	                                        build is then the first start)
//	                                       PrepareUpgrade(build) ──────────►  next recovery is an upgrade
//	                                       Switch the app to the new build    Checkpoint, replay on the OLD code,
//	                                       (on trial)                         UpgradeTakeCheckpoint ─► app converts,
//	                                                                          sends its converted Checkpoint
//	                                                                          ◄─ durable: MANIFEST version+1,
//	                                       OnUpgrade(nil): EndTrial           Builds += {new build, checkpoint, version}
//	  Wait: read UPGRADE.result ◄────────  answer {ok, version, build}
//
// If the new build fails before its converted checkpoint is durable (the
// conversion returns an error, it crashes, it refuses the state),
// OnUpgrade gets the error, the old build comes back (Switch back), the
// version stays, and the answer carries what the new build said. The
// files UPGRADE and UPGRADE.result are not durable state: a request lost
// with a killed run is simply asked again (the MANIFEST says whether the
// version moved). After an upgrade, BuildFor lets the command that started
// the old build recover the instance with its current build.
//
// The upgrade test (Test) is the same take-over read-only: the candidate
// gets the checkpoint where the current version's history begins,
// UpgradeService (convert now, then run the new code), and the recorded
// history; retro compares every message it sends with what the recorded
// build sends, and its state after replay with what its conversion makes
// of the recorded state at the same point — the check that catches a
// conversion that loses something while every message is still right.
//
//	recorded state s0 ──convert──► c0 ──replay (new code)──► actual state at P
//	      │ replay (recorded build)                                  ║ compared
//	      ▼                                                          ║
//	recorded state sP ────────────convert───────────────────► expected state at P
package upgrade
