package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/upgrade"
)

// runLiveUpgrade is `ambr upgrade NAME --to APP`: through the instance's
// ambr run if it runs, else as it next starts.
func runLiveUpgrade(cmd *cobra.Command, g *globals, name, to string, timeout time.Duration, asJSON bool) error {
	dir := layout.ResolveDir(g.Home(), name)
	m, err := layout.ReadManifest(vfsDefault(), dir)
	if err != nil {
		return usageErrorf("no instance %q (%v); 'ambr ls' lists them", name, err)
	}
	if len(supervise.ReadReplicaStatuses(dir)) > 0 {
		return usageErrorf("%s runs as replicas: a live upgrade of replicas (the new build joining as a standby) is not there yet; upgrade a single-replica instance, or check the build with 'ambr upgrade test'", m.Instance)
	}
	st, running := supervise.ReadRunStatus(dir)
	if running && st.App == "" {
		return usageErrorf("%s runs with --external-app: its app is yours to restart; ambr cannot switch its build", m.Instance)
	}
	build, err := supervise.Resolve(cmd.Context(), to, g.Home(), g.stderr)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if build.SHA256 == m.App.SHA256 {
		return usageErrorf("%s already runs this build (sha256 %s)", m.Instance, shortHash(build.SHA256))
	}
	req, err := upgrade.Ask(dir, build)
	if err != nil {
		return usageErrorf("ask %s for the upgrade: %v", m.Instance, err)
	}
	if !running {
		// Upgrade on the next start: its ambr run takes the request as it
		// starts and starts the new build first.
		res := upgrade.Result{Instance: m.Instance, Pending: true, Version: m.Version, Build: build, Requested: req.Requested}
		if asJSON {
			return printJSON(g, res)
		}
		fmt.Fprintf(g.stdout, "%s is not running: it upgrades from version %d to %s when it next starts (run it as before: ambr run … --name %s); 'ambr ls' shows the upgrade pending, 'ambr upgrade %s --cancel' withdraws it\n",
			m.Instance, m.Version, to, m.Instance, name)
		return nil
	}
	fmt.Fprintf(g.stderr, "asked %s (version %d) to upgrade to %s; the new build recovers on the old code, converts the state and checkpoints it…\n", m.Instance, m.Version, to)
	res, err := upgrade.Wait(cmd.Context(), dir, req, upgrade.WaitOptions{Timeout: timeout,
		Run: func() (string, bool) {
			st, ok := supervise.ReadRunStatus(dir)
			return fmt.Sprint(st.ICPid, "/", st.Started), ok
		},
		Waiting: func() { fmt.Fprintf(g.stderr, "still waiting for %s…\n", m.Instance) }})
	switch {
	case errors.Is(err, upgrade.ErrStopped):
		return problemErrorf("%s stopped before answering the upgrade request; run it again (its usual command) and retry; 'ambr ls' shows its version", m.Instance)
	case errors.Is(err, upgrade.ErrNoAnswer):
		return problemErrorf("no answer from %s's ambr run after %v (its ambr run may be older than this ambr: restart it)", m.Instance, timeout)
	case err != nil && cmd.Context().Err() != nil:
		return problemErrorf("interrupted; the upgrade may still complete: see 'ambr ls'")
	case err != nil:
		return usageErrorf("%v", err)
	}
	return reportUpgrade(g, res, asJSON)
}

// cancelUpgrade is `ambr upgrade NAME --cancel`.
func cancelUpgrade(g *globals, name string, asJSON bool) error {
	dir := layout.ResolveDir(g.Home(), name)
	if _, err := layout.ReadManifest(vfsDefault(), dir); err != nil {
		return usageErrorf("no instance %q (%v); 'ambr ls' lists them", name, err)
	}
	req, pending := upgrade.Pending(dir)
	if !pending || !upgrade.Cancel(dir) {
		return usageErrorf("%s has no upgrade waiting (a running instance takes a request at once)", name)
	}
	if asJSON {
		return printJSON(g, struct {
			Instance  string `json:"instance"`
			Cancelled bool   `json:"cancelled"`
			Build     string `json:"build"`
		}{name, true, req.Build.Source})
	}
	fmt.Fprintf(g.stdout, "withdrew the upgrade of %s to %s\n", name, req.Build.Source)
	return nil
}

func printJSON(g *globals, v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func reportUpgrade(g *globals, res upgrade.Result, asJSON bool) error {
	if asJSON {
		if err := printJSON(g, res); err != nil {
			return err
		}
	} else if res.OK {
		fmt.Fprintf(g.stdout, "%s upgraded to version %d: %s (sha256 %s)\n", res.Instance, res.Version, res.Build.Source, shortHash(res.Build.SHA256))
	}
	if !res.OK {
		return problemErrorf("the upgrade of %s failed; it keeps running version %d on its old build, nothing lost: %s", res.Instance, res.Version, res.Error)
	}
	return nil
}
