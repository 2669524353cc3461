// Package retro replays the recorded input of an immortal into a candidate
// build and compares what it does with what the recorded run did, naming the
// first divergent record.
//
//	log (checkpoint + records) ──► recorded build ──► expected messages, state ─┐
//	                         ├───► candidate     ──► actual messages, state   ─┼─► compare per window
//	                         └───► candidate again (first records) ──────────────┘   (bisect one that differs)
//
// The builds get the same checkpoint and the same records, a window at a
// time (1024 records, more for a large state); after each window each is
// asked for its state and what it sent. A window where they agree costs
// one state request per build instead of one per record, which is what
// keeps a retro-test at about the cost of two replays whatever the state's
// size. A window that differs is bisected from the states before it to its
// first divergent record, and from there the comparison is per record, so
// the report is the one a per-record comparison would give.
//
// The recorded build's messages are checked against the output digests the
// log holds, so a recorded build that no longer reproduces the log (a
// different build, or a nondeterministic one) is reported as such, with the
// record, the message sent now and the one the receiving instance logged,
// instead of blaming the candidate. The candidate's second run over the
// first records catches output that varies between runs of one build. An
// upgrade test sends the candidate UpgradeService after the checkpoint, so
// it converts the state and runs the history on its new code.
package retro
