// Package tui is the Bubble Tea browser over instances, logs, checkpoints,
// state and divergences behind `ambr tui`. Nothing is here yet beyond this
// description (see the TUI issue).
package tui
