// Package retro replays the recorded input of an immortal into a candidate
// build and compares what it does with what the recorded run did, naming the
// first divergent record.
//
//	log (checkpoint + records) ──► recorded build ──► expected messages, state ─┐
//	                         └───► candidate     ──► actual messages, state   ─┴─► compare per record
//
// Both builds get the same checkpoint and the same records, one at a time;
// after each record both are asked for their state, so the messages each
// sent are the ones that record made them send. The recorded build's
// messages are checked against the output digests the log holds, so a
// recorded build that no longer reproduces the log (a different build, or
// a nondeterministic one) is reported instead of blaming the candidate.
// States are compared after every record too, so a candidate whose state
// drifts (from the wall clock, say) is caught at the record it happens. An
// upgrade test sends the candidate UpgradeService after the checkpoint, so
// it converts the state and runs the history on its new code.
package retro
