package main

import (
	"fmt"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
)

func newKillCmd(g *globals) *cobra.Command {
	var app, ic, all, primary bool
	replica := -1
	cmd := &cobra.Command{
		Use:   "kill NAME|DIR [--app|--ic|--all] [--primary|--replica N]",
		Short: "SIGKILL an instance's app, coordinator or both (failure injection)",
		Long: `Kill a running instance with SIGKILL, to see it recover: --app kills only the
app process (its coordinator restarts it and replays); --ic kills the
coordinator, the 'ambr run' process, and with it the app (a machine failure:
run the same 'ambr run' again to recover); --all (the default) kills both.
For an instance run with --replica, --primary and --replica N choose the
replica (without either, the primary): its coordinator and app, as a machine
failure, unless --app or --ic says otherwise.

Exit codes: 0 killed; 2 the instance is not running or bad flags.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n := 0
			for _, b := range []bool{app, ic, all} {
				if b {
					n++
				}
			}
			if n > 1 {
				return usageErrorf("choose one of --app, --ic, --all")
			}
			if n == 0 {
				all = true
			}
			dir := layout.ResolveDir(g.Home(), args[0]) // NAME, or an instance directory
			st, ok := supervise.ReadRunStatus(dir)
			if primary || replica >= 0 || !ok {
				var err error
				if st, ok, err = replicaToKill(dir, args[0], primary, replica); err != nil {
					return err
				}
			}
			if !ok {
				return usageErrorf("instance %s is not running under %s ('ambr ls' shows what runs)", args[0], g.Home())
			}
			var pids []int
			if app || all {
				if st.AppPid == 0 {
					if app {
						return usageErrorf("instance %s has no app process right now (it is being restarted); try again", args[0])
					}
				} else {
					pids = append(pids, st.AppPid)
				}
			}
			if ic || all {
				pids = append(pids, st.ICPid)
			}
			for _, pid := range pids {
				if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
					return problemErrorf("kill %d: %v", pid, err)
				}
				fmt.Fprintf(g.stdout, "killed pid %d\n", pid)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&app, "app", false, "kill only the app process")
	cmd.Flags().BoolVar(&ic, "ic", false, "kill the coordinator (ambr run) and so the app")
	cmd.Flags().BoolVar(&all, "all", false, "kill both (default)")
	cmd.Flags().BoolVar(&primary, "primary", false, "kill the primary replica")
	cmd.Flags().IntVar(&replica, "replica", -1, "kill replica N")
	return cmd
}
