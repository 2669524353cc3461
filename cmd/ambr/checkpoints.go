package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// checkpointView is one row of `ambr checkpoints`, and its JSON form.
type checkpointView struct {
	Number     uint64    `json:"number"`
	Path       string    `json:"path"`
	Valid      bool      `json:"valid"`
	Error      string    `json:"error,omitempty"`
	Newest     bool      `json:"newest"`
	NextSeq    int64     `json:"next_seq,omitempty"`
	Time       time.Time `json:"time,omitzero"`
	AppVersion uint32    `json:"app_version"`
	StateBytes int       `json:"state_bytes"`
	OutCount   uint64    `json:"out_count"`
	Inputs     int       `json:"peers_in"`
	Outputs    int       `json:"peers_out"`
	Unacked    int       `json:"unacked_out"`
}

func newCheckpointsCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "checkpoints NAME|DIR",
		Short: "List an instance's checkpoints and check each one",
		Long: `List the checkpoints of an instance: number, the first record after it (its
state is the state before that record), when it was taken, the app version,
the size of the state and the coordinator's bookkeeping. Every checkpoint is
read in full and its checksum verified.

--json prints one JSON array of objects with the fields number, path, valid,
error, newest, next_seq, time, app_version, state_bytes, out_count, peers_in,
peers_out, unacked_out.

Exit codes: 0 all checkpoints are valid; 1 at least one is damaged (recovery
falls back to the one before it); 2 no such instance or bad flags.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := openInstance(g, args[0])
			if err != nil {
				return err
			}
			nums, err := in.Checkpoints()
			if err != nil {
				return problemErrorf("%v", err)
			}
			views := make([]checkpointView, 0, len(nums))
			var bad []string
			for _, n := range nums {
				v := checkpointView{Number: n, Path: in.CheckpointPath(n), Newest: n == in.Manifest.Checkpoint}
				c, err := in.ReadCheckpoint(n)
				if err != nil {
					v.Error = err.Error()
					bad = append(bad, err.Error())
				} else {
					v.Valid, v.NextSeq, v.Time, v.AppVersion = true, c.NextSeq, time.Unix(0, c.Time).UTC(), c.AppVersion
					v.StateBytes, v.OutCount, v.Inputs, v.Outputs = len(c.State), c.OutCount, len(c.Inputs), len(c.Outputs)
					for _, o := range c.Outputs {
						v.Unacked += len(o.Unacked)
					}
				}
				views = append(views, v)
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(views); err != nil {
					return err
				}
			} else {
				st := newCLIStyles(g.stdout)
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "CHECKPOINT\tSTATE BEFORE\tTAKEN\tVERSION\tSTATE\tOUT MSGS\tPEERS IN/OUT\tUNACKED\tSTATUS")
				for _, v := range views {
					status := "ok"
					if v.Newest {
						status = "ok, newest"
					}
					if !v.Valid {
						// STATUS is the last column: its colour cannot shift others.
						fmt.Fprintf(tw, "%d\t-\t-\t-\t-\t-\t-\t-\t%s\n", v.Number, st.Bad.Render("DAMAGED"))
						continue
					}
					fmt.Fprintf(tw, "%d\t#%d\t%s\t%d\t%d B\t%d\t%d/%d\t%d\t%s\n", v.Number, v.NextSeq, v.Time.Format(time.RFC3339), v.AppVersion, v.StateBytes, v.OutCount, v.Inputs, v.Outputs, v.Unacked, st.Good.Render(status))
				}
				if len(views) == 0 {
					fmt.Fprintln(tw, "(none yet: the instance has not completed its first start)")
				}
				tw.Flush()
			}
			for _, b := range bad {
				fmt.Fprintf(g.stderr, "damaged checkpoint: %s\n", b)
			}
			if len(bad) > 0 {
				return problemErrorf("%d of %d checkpoints are damaged; recovery uses the newest valid one before them", len(bad), len(views))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
