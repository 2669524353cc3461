package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/trust"
)

// newCertsCmd is `ambr certs`: a certificate authority of the operator's
// for coordinators on several hosts. Locally ambr makes one by itself under
// the registry directory; these commands make and fill one to hand out.
func newCertsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make a CA and instance certificates for coordinators across hosts",
		Long: `Coordinators prove their instance names to each other with TLS 1.3 client
certificates. On one host ambr makes a CA under the registry directory by itself
(<home>/.registry/.tls). Across hosts, make one CA and issue each instance its
certificate, then give each host the CA directory (ca.crt, and certs/NAME.* for
its instances; keep ca.key where you issue) and run with --tls DIR:

  ambr certs init ca/                   # ca/ca.crt, ca/ca.key (0600)
  ambr certs issue ca/ server client    # ca/certs/server.{crt,key}, …
  ambr certs ls ca/ [--json]            # each certificate, its expiry, problems
  ambr run ./app --name server --tls ca/

Exit codes: 0 done; 1 a certificate listed has a problem; 2 could not run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usageErrorf("give a subcommand: init, issue or ls (see 'ambr certs --help')")
		},
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "init DIR",
		Short: "Make a new CA in DIR",
		Args:  exactArgs(1, "give the directory for the new CA"),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := trust.Init(args[0], "ambr CA")
			if err != nil {
				return usageErrorf("%v", err)
			}
			fmt.Fprintf(g.stdout, "CA made in %s (ca.crt to hand out; ca.key stays with whoever issues)\n", a.Dir())
			return nil
		},
	})
	var validFor time.Duration
	issue := &cobra.Command{
		Use:   "issue DIR NAME...",
		Short: "Issue certificates for instances NAME... from the CA in DIR",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if validFor <= 0 {
				return usageErrorf("--valid-for %v: give a positive duration, such as 8760h", validFor)
			}
			a, err := trust.Open(args[0])
			if err != nil {
				return usageErrorf("%v", err)
			}
			for _, name := range args[1:] {
				if !validName.MatchString(name) {
					return usageErrorf("instance name %q: use letters, digits, '.', '_' and '-'", name)
				}
				if err := a.Issue(name, time.Now().Add(-time.Hour), validFor); err != nil {
					return usageErrorf("%v", err)
				}
				fmt.Fprintf(g.stdout, "issued %s/certs/%s.crt (valid until %s)\n", a.Dir(), name, time.Now().Add(validFor-time.Hour).Format(time.DateOnly))
			}
			return nil
		},
	}
	issue.Flags().DurationVar(&validFor, "valid-for", trust.InstanceValidity, "how long the certificates are valid")
	cmd.AddCommand(issue)
	var asJSON bool
	ls := &cobra.Command{
		Use:   "ls DIR",
		Short: "List the instance certificates of the CA in DIR",
		Args:  exactArgs(1, "give the CA directory"),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := trust.Open(args[0])
			if err != nil {
				return usageErrorf("%v", err)
			}
			certs, err := a.List()
			if err != nil {
				return usageErrorf("%v", err)
			}
			bad := 0
			for _, c := range certs {
				if c.Problem != "" {
					bad++
				}
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(certs); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "INSTANCE\tVALID UNTIL\tPROBLEM")
				for _, c := range certs {
					until := "-"
					if !c.NotAfter.IsZero() {
						until = c.NotAfter.Format(time.RFC3339)
					}
					problem := c.Problem
					if problem == "" {
						problem = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, until, problem)
				}
				_ = tw.Flush()
			}
			if bad > 0 {
				return problemErrorf("%d of %d certificates would be refused", bad, len(certs))
			}
			return nil
		},
	}
	ls.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {name, not_after, problem}")
	cmd.AddCommand(ls)
	return cmd
}

// exactArgs is cobra.ExactArgs with a message that says what to give.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageErrorf("%s (see 'ambr %s --help')", what, cmd.CommandPath()[len("ambr "):])
		}
		return nil
	}
}
