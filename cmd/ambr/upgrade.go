package main

import (
	"github.com/spf13/cobra"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "upgrade",
		Short: "Check that a new version can take over an instance",
	}
	var o retroOptions
	test := &cobra.Command{
		Use:   "test NAME... --candidate APP",
		Short: "Prove a new version can take over an instance's state and history",
		Long: `Without touching the live instance, hand the candidate the instance's
checkpoint, tell it to upgrade (UpgradeService: it converts the state to its
new layout and switches to its new code), then replay the recorded history on
the new code and compare every message it sends with what the recorded build
sends for the same input. The candidate must carry both versions (in the Go
binding: immortal.Upgrade(current, next, convert)). States are not compared:
their layout differs by design.

Reports conversion errors (the candidate stops) and the first divergence,
like 'ambr retro-test'; --json and --junit as there.

Exit codes: 0 the new version takes over and behaves the same; 1 it
diverges; 2 could not run (conversion failed, no such instance, bad flags).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.candidate == "" {
				return usageErrorf("--candidate APP is required: the new version to test")
			}
			if o.parallel < 1 {
				return usageErrorf("--parallel must be at least 1")
			}
			return runRetro(cmd.Context(), g, args, o, true)
		},
	}
	f := test.Flags()
	f.StringVar(&o.candidate, "candidate", "", "the new version (Go package path or executable)")
	f.StringVar(&o.recorded, "recorded", "", "the build that made the history (default: the one the MANIFEST records)")
	f.Uint64Var(&o.fromCheckpoint, "from-checkpoint", 0, "take over at this checkpoint (default: the oldest kept)")
	f.StringVar(&o.until, "until", "", "stop after this point (default: the end)")
	f.BoolVar(&o.json, "json", false, "print JSON (as ambr retro-test --json)")
	f.StringVar(&o.junit, "junit", "", "also write JUnit XML to this file")
	f.IntVar(&o.parallel, "parallel", 2, "instances tested at once")
	cmd.AddCommand(test)
	return cmd
}
