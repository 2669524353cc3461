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
	// With replicas the primary's ambr run takes the request (see
	// upgrade.Live.Moved): its id is the one the answer must come from.
	replicated := len(supervise.ReadReplicaStatuses(dir)) > 0
	st, running := supervise.ReadRunStatus(dir)
	runID := func() (string, bool) {
		st, ok := supervise.ReadRunStatus(dir)
		return fmt.Sprint(st.ICPid, "/", st.Started), ok
	}
	if replicated {
		running = true
		for _, r := range supervise.ReadReplicaStatuses(dir) {
			if r.App == "" {
				return usageErrorf("%s runs replica %d with --external-app: its app is yours to restart; ambr cannot switch its build", m.Instance, r.Replica)
			}
		}
		lastPrimary := ""
		runID = func() (string, bool) {
			rs := supervise.ReadReplicaStatuses(dir)
			for _, r := range rs {
				if r.Role == "primary" {
					lastPrimary = fmt.Sprint(r.Replica, "/", r.ICPid, "/", r.Started)
				}
			}
			// Between two primaries, the last one counts.
			return lastPrimary, len(rs) > 0
		}
	} else if running && st.App == "" {
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
	if replicated {
		fmt.Fprintf(g.stderr, "%s runs as replicas: its primary upgrades; the standbys and the checkpointer switch to the new build once the version moves\n", m.Instance)
	}
	res, err := upgrade.Wait(cmd.Context(), dir, req, upgrade.WaitOptions{Timeout: timeout, Run: runID,
		Waiting: func() {
			if id, _ := runID(); replicated && id == "" {
				fmt.Fprintf(g.stderr, "still waiting for %s: none of its replicas is primary (a checkpointer never takes an upgrade; start a replica with ambr run … --replica N)…\n", m.Instance)
				return
			}
			fmt.Fprintf(g.stderr, "still waiting for %s…\n", m.Instance)
		}})
	switch {
	case errors.Is(err, upgrade.ErrStopped) && replicated:
		now := m.Version
		if m, err := layout.ReadManifest(vfsDefault(), dir); err == nil {
			now = m.Version
		}
		return problemErrorf("%s's primary stopped before answering the upgrade request; another replica runs on at version %d (from version %d: %s); 'ambr ls' shows it, retry if the version did not move", m.Instance, now, m.Version, map[bool]string{true: "the upgrade took effect", false: "nothing changed"}[now != m.Version])
	case errors.Is(err, upgrade.ErrStopped):
		return problemErrorf("%s stopped before answering the upgrade request; run it again (its usual command) and retry; 'ambr ls' shows its version", m.Instance)
	case errors.Is(err, upgrade.ErrSuperseded):
		return problemErrorf("another 'ambr upgrade %s' replaced this request before %s took it; that one is waiting ('ambr ls' shows it; 'ambr upgrade %s --cancel' withdraws it)", name, m.Instance, name)
	case errors.Is(err, upgrade.ErrUnderWay):
		return problemErrorf("%s took the upgrade request but has not finished it after %v (the new build may still be converting its state): do not restart it; 'ambr ls' shows the version once it moves, or why the upgrade failed", m.Instance, timeout)
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
