package main

import (
	"time"

	"github.com/spf13/cobra"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	var to string
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "upgrade NAME --to APP | upgrade test NAME... --candidate APP",
		Short: "Upgrade a running instance to a new version, or check that one can take over",
		Long: `ambr upgrade NAME --to APP upgrades a running instance in flight. Its ambr run
switches the app to the new build, which recovers on the old code, is told to
upgrade (UpgradeTakeCheckpoint: it converts the state to its new layout and
switches to its new code) and checkpoints the converted state; then the
MANIFEST names the new build and the version moves up by one. Callers see no
gap and no duplicate: it is a recovery. The new build must carry both versions
(in the Go binding: immortal.Upgrade(current, next, convert)); check it first
with 'ambr upgrade test'. If the new build fails before its converted
checkpoint is durable (the conversion returns an error, it crashes, it cannot
read the state), the old build comes back and the instance keeps its version,
nothing lost.

Exit codes: 0 upgraded; 1 the upgrade failed (the old version runs on); 2
could not run (not running, no such instance, the app does not build).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				if len(args) == 0 {
					return cmd.Help()
				}
				msg := "unknown command %q for 'ambr upgrade' (it has: test; to upgrade a running instance give --to APP)"
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					return usageErrorf("unknown command %q for 'ambr upgrade'; did you mean %q?", args[0], s[0])
				}
				return usageErrorf(msg, args[0])
			}
			if len(args) != 1 {
				return usageErrorf("give one instance to upgrade: ambr upgrade NAME --to APP")
			}
			if timeout <= 0 {
				return usageErrorf("--timeout %v: give a positive duration", timeout)
			}
			return runLiveUpgrade(cmd, g, args[0], to, timeout, asJSON)
		},
	}
	cmd.SuggestionsMinimumDistance = 2
	cmd.Flags().StringVar(&to, "to", "", "the new build (Go package path or executable) to upgrade the running instance to")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Minute, "how long to wait for the instance's answer")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the outcome as JSON {instance, ok, error, version, build, …}")
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
