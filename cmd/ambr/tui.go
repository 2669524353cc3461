package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/tui"
)

func newTuiCmd(g *globals) *cobra.Command {
	var app, candidate string
	cmd := &cobra.Command{
		Use:   "tui [NAME|DIR]",
		Short: "Browse instances, logs, state and time in a terminal UI",
		Long: `Browse the instances under the home in a terminal UI: their logs record by
record, each record decoded, the state after any record (replayed read-only,
as ambr replay does), and what changed between two records. With NAME|DIR it
opens that instance's log at once.

The log view lists one row per record (sequence number, logged time, kind,
peer, method, size) from the time-travel index under the home, reading only
the rows on screen, with a line where each checkpoint's state begins.

Keys (? shows them all):
  j/k g/G ctrl+d/u pgdn/pgup   move            tab        next pane
  [ ]                          step back/forward through time, replaying
  m  d                         mark a record; diff the state from the mark
  /  n N                       filter (method:Inc peer:client kind:call
                               re:EXPR or text of the arguments); next/prev match
  :                            jump to a point (1234, seq:N, a time,
                               checkpoint:K+N, end)
  f                            follow a live log      enter  actions
  esc                          back           q            quit

--app replays with another build than the one the MANIFEST recorded (an
executable, or a Go package path, built for you). Without any build the log
can still be browsed.

Exit codes: 0 the user quit; 1 the terminal UI failed; 2 no such instance,
bad flags, or not a terminal.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts := tui.Options{Home: g.Home(), Output: g.stdout, Candidate: candidate}
			if len(args) == 1 {
				in, err := openInstance(g, args[0])
				if err != nil {
					return err
				}
				opts.Instance = in.Dir
			}
			if !isTerminal(os.Stdin) || !isTerminal(os.Stdout) {
				return usageErrorf("ambr tui needs a terminal (in scripts, use ambr ls, ambr log and ambr replay)")
			}
			if app != "" {
				opts.AppSource = app
				if st, err := os.Stat(app); err != nil || st.IsDir() {
					b, err := supervise.Resolve(cmd.Context(), app, g.Home(), g.stderr)
					if err != nil {
						return usageErrorf("--app: %v", err)
					}
					app = b.Path
				}
				opts.App = app
			}
			// The TUI reads Ctrl-C as a key. It is not tied to the command's
			// context, which SIGINT cancels: a command the TUI hands the
			// terminal to (replay --debug) is stopped with Ctrl-C, and the
			// signal reaches this process too.
			if err := tui.Run(context.Background(), opts); err != nil {
				return problemErrorf("tui: %v", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&candidate, "candidate", "", "a build to retro-test from the record under the cursor (the actions menu, enter)")
	cmd.Flags().StringVar(&app, "app", "", "replay with this build (executable or Go package path) instead of the recorded one")
	return cmd
}
