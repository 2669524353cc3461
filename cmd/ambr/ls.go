package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/upgrade"
)

// instanceView is one row of `ambr ls`.
type instanceView struct {
	Name        string `json:"name"`
	Dir         string `json:"dir"`
	State       string `json:"state"`
	ICPid       int    `json:"ic_pid,omitempty"`
	AppPid      int    `json:"app_pid,omitempty"`
	Version     uint32 `json:"version"`
	LastSeq     int64  `json:"last_seq"`
	LogBytes    int64  `json:"log_bytes"`
	Segments    int    `json:"segments"`
	Checkpoints int    `json:"checkpoints"`
	Newest      uint64 `json:"newest_checkpoint"`
	App         string `json:"app,omitempty"`
	Error       string `json:"error,omitempty"`
	// UpgradePending is the build an upgrade asked for waits to start
	// (`ambr upgrade NAME --to APP` of a stopped instance: it upgrades as it
	// next starts).
	UpgradePending string `json:"upgrade_pending,omitempty"`
	// UpgradeFailed says why the latest upgrade asked for failed (the
	// instance runs on at its version).
	UpgradeFailed string `json:"upgrade_failed,omitempty"`
	// Problems: by peer instance, what the coordinator says needs an
	// operator (lost acknowledged input).
	Problems map[string]string `json:"problems,omitempty"`
	// Replicas: the running replicas of an instance run with --replica
	// (ic_pid and app_pid above are then the primary's).
	Replicas []replicaView `json:"replicas,omitempty"`
}

func newLsCmd(g *globals) *cobra.Command {
	var asJSON bool
	var registry string
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the instances under the home",
		Long: `List the instances under the home: name, running or stopped (with the
coordinator's and app's pids), app version, last record, log size, segments
and checkpoints.

--json prints a JSON array with the fields name, dir, state (running,
stopped or damaged), ic_pid, app_pid, version, last_seq, log_bytes, segments,
checkpoints, newest_checkpoint, app, error, upgrade_pending (the build a
stopped instance upgrades to as it next starts), upgrade_failed (why the
latest upgrade asked for failed), problems (by peer instance: what a
running coordinator says needs an operator, such as lost acknowledged input),
replicas (for an instance run with --replica: each running replica's
replica, role — primary, standby, checkpointer, or waiting checkpointer
while another one holds the role — epoch, ic_pid, app_pid; ic_pid and
app_pid of the instance are the primary's).

Exit codes: 0 listed; 1 an instance is damaged or reports a problem, such as
lost acknowledged input (all are listed first); 2 the home cannot be read.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if registry != "" {
				return lsRegistry(g, registry, asJSON)
			}
			views, err := listInstances(g.Home())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(views); err != nil {
					return err
				}
				return damagedInstances(views)
			}
			if len(views) == 0 {
				fmt.Fprintf(g.stdout, "no instances under %s (start one with: ambr run ./samples/accumulator)\n", g.Home())
				return nil
			}
			var buf bytes.Buffer
			tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSTATE\tIC PID\tAPP PID\tVERSION\tLAST SEQ\tLOG\tSEGMENTS\tCHECKPOINTS\tAPP")
			for _, v := range views {
				if v.State == stateDamaged {
					fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t-\t-\t%s\n", v.Name, v.State, v.Error)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%d (newest %d)\t%s\n", v.Name, v.State, pidText(v.ICPid), pidText(v.AppPid),
					v.Version, v.LastSeq, byteSize(v.LogBytes), v.Segments, v.Checkpoints, v.Newest, v.App)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			// Colour the STATE column after aligning: tabwriter would count
			// the escape sequences as width.
			st := newCLIStyles(g.stdout)
			lines := strings.SplitAfter(buf.String(), "\n")
			col := strings.Index(lines[0], "STATE")
			for i, line := range lines {
				if i > 0 && i <= len(views) {
					state := views[i-1].State
					if col >= 0 && strings.HasPrefix(line[col:], state) {
						line = line[:col] + st.state(state) + line[col+len(state):]
					}
				}
				if _, err := io.WriteString(g.stdout, line); err != nil {
					return err
				}
			}
			printReplicas(g.stdout, views)
			for _, v := range views {
				if v.UpgradeFailed != "" && v.UpgradePending == "" {
					fmt.Fprintf(g.stdout, "%s: %s (it runs on at version %d)\n", v.Name, v.UpgradeFailed, v.Version)
				}
				if v.UpgradePending != "" && len(v.Replicas) > 0 {
					fmt.Fprintf(g.stdout, "%s: upgrade to %s waiting for a primary replica to take it (a standby or the checkpointer never does; ambr upgrade %s --cancel withdraws it)\n", v.Name, v.UpgradePending, v.Name)
				} else if v.UpgradePending != "" {
					fmt.Fprintf(g.stdout, "%s: upgrade to %s waiting for its next start (ambr upgrade %s --cancel withdraws it)\n", v.Name, v.UpgradePending, v.Name)
				}
			}
			for _, v := range views {
				for _, peer := range slices.Sorted(maps.Keys(v.Problems)) {
					fmt.Fprintf(g.stdout, "%s: problem on the link with %s: %s\n", v.Name, peer, v.Problems[peer])
				}
			}
			return damagedInstances(views)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().StringVar(&registry, "registry", "", "list the instances registered in etcd://HOST:PORT[,…] instead (name, address, host, pid)")
	return cmd
}

func pidText(pid int) string {
	if pid == 0 {
		return "-"
	}
	return fmt.Sprint(pid)
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func listInstances(home string) ([]instanceView, error) {
	infos, err := supervise.ListInstances(home)
	if err != nil {
		return nil, problemErrorf("%v", err)
	}
	views := make([]instanceView, 0, len(infos))
	for _, v := range infos {
		state := "stopped"
		switch {
		case v.Error != "":
			state = stateDamaged
		case v.Running:
			state = "running"
		}
		views = append(views, instanceView{Name: v.Name, Dir: v.Dir, State: state, ICPid: v.ICPid, AppPid: v.AppPid,
			Version: v.Version, LastSeq: v.LastSeq, LogBytes: v.LogBytes, Segments: v.Segments, Checkpoints: v.Checkpoints,
			Newest: v.Newest, App: v.App, Error: v.Error, Problems: v.Problems, Replicas: replicaViews(v.Replicas)})
		req, pending := upgrade.Pending(v.Dir)
		// A failure is news until a newer request is asked for.
		if res, ok := upgrade.LastResult(v.Dir); ok && !res.OK && !(pending && req.Requested > res.Requested) {
			views[len(views)-1].UpgradeFailed = fmt.Sprintf("the upgrade to %s failed: %s", res.Build.Source, res.Error)
		}
		if pending {
			views[len(views)-1].UpgradePending = req.Build.Source
			if req.Build.Source == "" {
				views[len(views)-1].UpgradePending = req.Build.Path
			}
		}
	}
	return views, nil
}

// stateDamaged is the state of an instance whose files cannot be read in
// full; its error says what is wrong.
const stateDamaged = "damaged"

// damagedInstances is the exit-code rule every command shares: damaged data
// found is exit 1, after everything else has been printed. A problem a
// running coordinator reports (lost acknowledged input: a log that lost
// records) counts as damage too.
func damagedInstances(views []instanceView) error {
	var names, troubled []string
	for _, v := range views {
		if v.State == stateDamaged {
			names = append(names, v.Name)
		} else if len(v.Problems) > 0 {
			troubled = append(troubled, v.Name)
		}
	}
	switch {
	case len(names) > 0:
		return problemErrorf("%d instance(s) damaged: %s (see 'ambr log NAME' and 'ambr checkpoints NAME' for where)", len(names), strings.Join(names, ", "))
	case len(troubled) > 0:
		return problemErrorf("%d instance(s) report problems on their links: %s (listed above)", len(troubled), strings.Join(troubled, ", "))
	}
	return nil
}
