// Package tui is `ambr tui`: a Bubble Tea browser over the instances under a
// home, their logs, their state at any record, and how that state changes.
// It never writes into an instance's directory (a running instance is read
// safely); what it learns it keeps in the time-travel cache under the home,
// the index and state snapshots `ambr replay` uses too.
//
//	┌ Model ────────────────────────────────────────────────────────────┐
//	│ common: Styles, KeyMap, size, Options (shared by every view)      │
//	│                                                                   │
//	│ instancesModel ──enter──► browserModel ◄──esc── (back)            │
//	│   name, running?,          ┌ records ─────┐┌ record #N ─────────┐ │
//	│   version, last seq,       │ one row per  ││ messages decoded,  │ │
//	│   log size, checkpoints    │ record, from ││ JSON args pretty,  │ │
//	│                            │ the index,   ││ what the app sent  │ │
//	│                            │ read a page  │├ state after #N ────┤ │
//	│                            │ at a time    ││ replayed by a      │ │
//	│                            │              ││ timetravel.Session,│ │
//	│                            │              ││ diff against a mark│ │
//	│                            └──────────────┘└────────────────────┘ │
//	└───────────────────────────────────────────────────────────────────┘
//
// Everything slow runs in a tea.Cmd and comes back as a typed message, never
// inside Update: opening and updating the index (browserOpenedMsg,
// indexUpdatedMsg), a page of rows (recordsLoadedMsg: only the rows around
// the visible ones are read, so a log of ten million records opens and
// scrolls as fast as one of ten), one record decoded (recordLoadedMsg), the
// state replayed to a record (stateComputedMsg), a point resolved
// (jumpResolvedMsg) and a search for the next match (searchDoneMsg).
//
// One replay session per browser is driven by one command at a time
// (stateWorker); requests that arrive meanwhile collapse into the newest.
// Without a recorded build the log is still browsable and the state pane
// says why there is no state.
//
// Keys follow the usual conventions (j/k, g/G, ctrl+d/u, / then n/N, enter,
// esc, tab, ?, q); each view's help is built from its KeyMap with
// bubbles/help. Styles use adaptive colours for light and dark terminals and
// say everything with text as well, so they read with NO_COLOR.
package tui
