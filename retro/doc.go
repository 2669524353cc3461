// Package retro replays the recorded input of an immortal into a candidate
// build and compares what it does with what the recorded run did, naming the
// first divergent record. It is built on timetravel; nothing is here yet
// beyond this description (see the retro-test issue).
package retro
