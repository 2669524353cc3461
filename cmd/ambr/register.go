package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/ambrosia"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
)

func newRegisterCmd(g *globals) *cobra.Command {
	var ports string
	var replica int
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "register NAME [--ports RECV,SEND]",
		Short: "Write AMBROSIA's registration of an instance, for apps on AMBROSIA's own bindings",
		Long: `Write the registration AMBROSIA's language bindings read before they connect
(as 'Ambrosia RegisterInstance' would): the blob
AmbrosiaBinaries/NAME-NAME<replica> in the container cra, holding the XML
AmbrosiaRuntimeParams with the coordinator's ports, the log path and the app
versions, and the table craconnectiontable, in the Azure Storage account of
the connection string in AZURE_STORAGE_CONN_STRING (Azure, or an emulator
such as azurite).

The ports are those of the running instance NAME (see 'ambr ls'), or
--ports for one started later with 'ambr run --external-app --ports'.
'ambr run --ambrosia-registration' does this by itself on every start.

--json prints the registration written as one JSON object.

Exit codes: 0 written; 1 the storage refused it; 2 bad flags, no ports, or
no AZURE_STORAGE_CONN_STRING.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if !validName.MatchString(name) {
				return usageErrorf("instance name %q: use letters, digits, '.', '_' and '-'", name)
			}
			if replica < 0 {
				return usageErrorf("--replica %d: give 0 or more", replica)
			}
			dir := filepath.Join(g.Home(), name)
			recv, send := 0, 0
			if ports != "" {
				var err error
				if recv, send, err = parsePorts(ports); err != nil {
					return usageErrorf("--ports %q: %v", ports, err)
				}
			} else if st, ok := supervise.ReadRunStatus(dir); ok && st.RecvPort > 0 && st.SendPort > 0 {
				recv, send = st.RecvPort, st.SendPort
			} else {
				return usageErrorf("instance %s is not running under %s, so its ports are not known: give --ports RECV,SEND (the ports 'ambr run --ports' will use)", name, g.Home())
			}
			r, err := ambrosiaRegistration(name, dir, recv, send, 0)
			if err != nil {
				return err
			}
			r.Replica = replica
			if err := registerAmbrosia(cmd.Context(), r); err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"container": ambrosia.Container, "blob": ambrosia.BlobName(r.Instance, r.Replica),
					"table": ambrosia.ConnectionTable, "params": r.Params()})
			}
			fmt.Fprintf(g.stdout, "registered %s for AMBROSIA bindings: %s/%s (ports %d/%d, log %s), table %s\n",
				name, ambrosia.Container, ambrosia.BlobName(r.Instance, r.Replica), recv, send, r.LogPath, ambrosia.ConnectionTable)
			return nil
		},
	}
	cmd.Flags().StringVar(&ports, "ports", "", "RECV,SEND: the coordinator's app ports (default: those of the running instance)")
	cmd.Flags().IntVar(&replica, "replica", 0, "the replica number in the blob's name")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the registration as JSON")
	return cmd
}

// ambrosiaRegistration describes instance name in dir, with its
// coordinator's ports, for AMBROSIA's bindings: the versions come from the
// MANIFEST when the instance exists (0 before its first start).
func ambrosiaRegistration(name, dir string, recv, send int, segmentSize int64) (ambrosia.Registration, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ambrosia.Registration{}, usageErrorf("%v", err)
	}
	r := ambrosia.Registration{Instance: name, ReceivePort: recv, SendPort: send, LogPath: abs + string(filepath.Separator)}
	if segmentSize > 0 {
		r.SegmentMB = max(1, segmentSize>>20)
	}
	if m, err := layout.ReadManifest(vfsDefault(), dir); err == nil {
		r.CurrentVersion, r.UpgradeToVersion = int64(m.Version), int64(m.UpgradeVersion)
	}
	return r, nil
}

// registerAmbrosia writes r to the storage named by AZURE_STORAGE_CONN_STRING.
func registerAmbrosia(ctx context.Context, r ambrosia.Registration) error {
	conn := os.Getenv(ambrosia.EnvConnString)
	if conn == "" {
		return usageErrorf("%s is not set: set it to the connection string of the Azure Storage account AMBROSIA's bindings read their registration from (for azurite, the README shows its connection string)", ambrosia.EnvConnString)
	}
	if err := ambrosia.Register(ctx, conn, r); err != nil {
		return problemErrorf("%v (check %s and that the storage is reachable)", err, ambrosia.EnvConnString)
	}
	return nil
}

// registerForAmbrosia is `ambr run --ambrosia-registration`'s step: the
// registration of the instance with the ports just opened.
func registerForAmbrosia(ctx context.Context, name, dir string, recv, send int, segmentSize int64) error {
	r, err := ambrosiaRegistration(name, dir, recv, send, segmentSize)
	if err != nil {
		return err
	}
	return registerAmbrosia(ctx, r)
}
