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
// With replicas, the primary's run takes the request (Live.MayTake) and
// upgrades exactly as above; its recovery writes UpgradeVersion =
// Version+1 into the MANIFEST before it logs anything. The followers (the
// standbys, the checkpointer) hold before the first record of the
// upgrade's segment while that lasts, and once the version moved each
// switches its app to the new build (engine.Options.OnBuildMoved,
// Live.Moved), which recovers from the converted checkpoint:
//
//	primary (ambr run, Live)             MANIFEST                 standbys, checkpointer
//	  take UPGRADE, Switch to new build
//	  recover: seal ───────────────────► v0, upgrade_version 1 ─► hold at segment K
//	  UpgradeTakeCheckpoint, convert,
//	  checkpoint K durable ────────────► v1, builds += new ─────► Switch to the new build,
//	                                                               follow from checkpoint K
//
// A failed upgrade brings the primary's old build back, whose recovery
// puts UpgradeVersion back; a standby that takes over from a primary that
// died mid-upgrade does the same (or, had the version moved, recovers on
// the new build). The followers' hold is what keeps an old build from
// ever running the new build's records. AMBROSIA's form — the new build
// joins as a standby and the primary steps down for it — is not there yet;
// it would save the upgrading primary's replay, not its conversion.
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
