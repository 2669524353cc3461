package main

import (
	"time"

	"github.com/spf13/cobra"
)

func newUpgradeCmd(g *globals) *cobra.Command {
	var to string
	var timeout time.Duration
	var asJSON, cancel bool
	cmd := &cobra.Command{
		Use:   "upgrade NAME --to APP | upgrade test NAME... --candidate APP",
		Short: "Upgrade a running instance to a new version, or check that one can take over",
		Long: `ambr upgrade NAME --to APP upgrades an instance to a new version. If the
instance runs, its ambr run switches the app to the new build in flight: the
new build recovers on the old code, is told to upgrade (UpgradeTakeCheckpoint:
it converts the state to its new layout and switches to its new code) and
checkpoints the converted state; then the MANIFEST names the new build and the
version moves up by one. Callers see no gap and no duplicate: it is a
recovery. If the new build fails before its converted checkpoint is durable
(the conversion returns an error, it crashes, it cannot read the state), the
old build comes back and the instance keeps its version, nothing lost.

If the instance is stopped, the upgrade waits for its next start: run it with
its usual command (ambr run OLD_APP --name NAME …) and it starts the new build
first, upgrading as above (on failure the given build runs on); the outcome is
in its log and in 'ambr ls'. 'ambr upgrade NAME --cancel' withdraws an upgrade
not yet taken. After an upgrade, the command that ran the old build keeps
working: ambr run starts the instance's current build instead (a note says
so). Starting the new build with ambr run alone does not upgrade: it runs the
old version's code the new build carries.

The new build must carry both versions (in the Go binding:
immortal.Upgrade(current, next, convert)); check it first with 'ambr upgrade
test'.

--json prints {instance, ok, pending, error, version, build, requested,
finished}.

Exit codes: 0 upgraded (or, for a stopped instance, the upgrade is waiting for
its start); 1 the upgrade failed (the old version runs on) or the run stopped
before answering; 2 could not run (no such instance, replicas, the app does
not build, the build already runs).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cancel {
				if len(args) != 1 || to != "" {
					return usageErrorf("give one instance: ambr upgrade NAME --cancel")
				}
				return cancelUpgrade(g, args[0], asJSON)
			}
			if to == "" {
				if len(args) == 0 {
					return cmd.Help()
				}
				msg := "unknown command %q for 'ambr upgrade' (it has: test; see 'ambr upgrade --help')"
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the outcome as JSON {instance, ok, pending, error, version, build, …}")
	cmd.Flags().BoolVar(&cancel, "cancel", false, "withdraw an upgrade of a stopped instance that is waiting for its start")
	var o retroOptions
	test := &cobra.Command{
		Use:   "test NAME... --candidate APP",
		Short: "Prove a new version can take over an instance's state and history",
		Long: `Without touching the live instance, hand the candidate the instance's
checkpoint, tell it to upgrade (UpgradeService: it converts the state to its
new layout and switches to its new code), then replay the recorded history on
the new code. The candidate must carry both versions (in the Go binding:
immortal.Upgrade(current, next, convert)).

It reports:
  - the conversion: the recorded state at the checkpoint next to the state the
    candidate converted it to, as a structural diff;
  - every message the new code sends, compared with what the recorded build
    sends for the same input (the first divergence, as 'ambr retro-test');
  - the state the new code reaches by replay, compared (once per window of
    records, and at the end) with what the candidate's conversion makes of
    the recorded state at that point. They match unless the conversion loses
    or changes something the new code goes on to use: a conversion bug that
    changes no message shows here. (So a conversion must not depend on when
    it runs.)

--from-checkpoint K takes over at checkpoint K (default: the oldest checkpoint
of the current version, where its history begins: an instance upgraded before
has older checkpoints of an older state type).

--json prints {"diverged": bool, "reports": [...]}, each report as 'ambr
retro-test --json' plus "conversion": {checkpoint, seq, old_type, new_type,
old_state, converted_state, diff: [{path, old, new}], states_compared,
replayed_state_matches, first_diff: {seq, changes}}.

Exit codes: 0 the new version takes over: same messages, and its replayed
state is its conversion of the recorded one; 1 it diverges, its replayed state
differs, or it cannot convert the state (the error says why); 2 could not run
(no such instance, bad flags, the candidate does not build).`,
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
	f.Uint64Var(&o.fromCheckpoint, "from-checkpoint", 0, "take over at this checkpoint (default: the oldest of the current version)")
	f.StringVar(&o.until, "until", "", "stop after this point (default: the end)")
	f.BoolVar(&o.json, "json", false, "print JSON (as ambr retro-test --json)")
	f.StringVar(&o.junit, "junit", "", "also write JUnit XML to this file")
	f.IntVar(&o.parallel, "parallel", 2, "instances tested at once")
	cmd.AddCommand(test)
	return cmd
}
