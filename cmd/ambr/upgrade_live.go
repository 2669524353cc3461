package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/ambr-dev/ambr/engine"
	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/engine/supervise"
	"github.com/ambr-dev/ambr/logfmt"
)

// A live upgrade is asked of the `ambr run` that runs the instance through
// two small files in the instance directory (not durable state): `ambr
// upgrade NAME --to APP` writes UPGRADE with the new build, the run takes
// it, tries the build, and answers in UPGRADE.result.
const (
	upgradeRequestFile = "UPGRADE"
	upgradeResultFile  = "UPGRADE.result"
)

type upgradeRequest struct {
	Build     logfmt.AppBuild `json:"build"`
	Requested int64           `json:"requested"`
}

type upgradeResult struct {
	Instance  string          `json:"instance"`
	OK        bool            `json:"ok"`
	Error     string          `json:"error,omitempty"`
	Version   uint32          `json:"version"`
	Build     logfmt.AppBuild `json:"build"`
	Requested int64           `json:"requested"`
	Finished  int64           `json:"finished"`
}

func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// upgrader is the side of a live upgrade inside `ambr run`: it watches for
// requests, switches the supervised app to the new build for a trial, and
// back if the new build fails before its converted checkpoint is durable.
type upgrader struct {
	dir, name string
	c         *engine.Coordinator
	child     *supervise.Child
	log       *slog.Logger
	outcome   chan error
	current   logfmt.AppBuild

	mu       sync.Mutex
	lastWord string // what the last app that exited said last
}

// appExited is told how each app start ended (from the supervisor's
// OnExit), so that a failed upgrade can say what the new build said.
func (u *upgrader) appExited(run supervise.AppRun) {
	word := run.Panic
	for i := len(run.Stderr) - 1; i >= 0 && word == ""; i-- {
		word = strings.TrimSpace(run.Stderr[i])
	}
	u.mu.Lock()
	u.lastWord = word
	u.mu.Unlock()
}

// onUpgrade is the coordinator's Options.OnUpgrade.
func (u *upgrader) onUpgrade(err error) {
	select {
	case u.outcome <- err:
	default:
	}
}

// watch serves upgrade requests until ctx ends.
func (u *upgrader) watch(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
		b, err := os.ReadFile(filepath.Join(u.dir, upgradeRequestFile))
		if err != nil {
			continue
		}
		_ = os.Remove(filepath.Join(u.dir, upgradeRequestFile))
		var req upgradeRequest
		res := upgradeResult{Instance: u.name}
		if err := json.Unmarshal(b, &req); err != nil || req.Build.Path == "" {
			res.Error = "the upgrade request is damaged; ask again with ambr upgrade NAME --to APP"
		} else {
			res.Requested, res.Build = req.Requested, req.Build
			u.try(ctx, req, &res)
		}
		res.Finished = time.Now().UnixNano()
		if err := writeJSONFile(filepath.Join(u.dir, upgradeResultFile), res); err != nil {
			u.log.Error("could not answer the upgrade request", "error", err)
		}
	}
}

// try runs one upgrade: the new build gets the next recovery as an upgrade;
// if it does not checkpoint its converted state, the old build comes back.
func (u *upgrader) try(ctx context.Context, req upgradeRequest, res *upgradeResult) {
	old := u.current
	req.Build.Args = old.Args
	for len(u.outcome) > 0 {
		<-u.outcome
	}
	u.mu.Lock()
	u.lastWord = ""
	u.mu.Unlock()
	u.log.Info("live upgrade: trying the new build", "to", req.Build.Source, "sha256", shortHash(req.Build.SHA256))
	u.c.PrepareUpgrade(req.Build)
	u.child.Switch(req.Build.Path, true)
	var err error
	select {
	case err = <-u.outcome:
	case <-time.After(2 * time.Minute):
		u.c.CancelUpgrade()
		err = errors.New("the new build did not connect within 2 minutes")
	case <-ctx.Done():
		u.c.CancelUpgrade()
		err = errors.New("ambr run is stopping")
	}
	if err != nil {
		u.child.Switch(old.Path, false)
		// The new app's last words come with its exit, just after the
		// coordinator saw its connection close.
		time.Sleep(200 * time.Millisecond)
		u.mu.Lock()
		word := u.lastWord
		u.mu.Unlock()
		res.Error = err.Error()
		if word != "" {
			res.Error += "; the new build said: " + word
		}
		u.log.Warn("live upgrade failed; the old build runs on", "reason", err)
	} else {
		u.child.EndTrial()
		u.current = req.Build
		res.OK = true
	}
	if m, err := layout.ReadManifest(vfsDefault(), u.dir); err == nil {
		res.Version = m.Version
	}
}

// newUpgradeLive is `ambr upgrade NAME --to APP`.
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
	if !running {
		return usageErrorf("%s is not running: a live upgrade goes through its ambr run (start it first; 'ambr upgrade test %s --candidate %s' checks the new build without it)", m.Instance, name, to)
	}
	if st.App == "" {
		return usageErrorf("%s runs with --external-app: its app is yours to restart; ambr cannot switch its build", m.Instance)
	}
	build, err := supervise.Resolve(cmd.Context(), to, g.Home(), g.stderr)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if build.SHA256 == m.App.SHA256 {
		return usageErrorf("%s already runs this build (sha256 %s)", m.Instance, shortHash(build.SHA256))
	}
	resultPath := filepath.Join(dir, upgradeResultFile)
	_ = os.Remove(resultPath)
	req := upgradeRequest{Build: build, Requested: time.Now().UnixNano()}
	if err := writeJSONFile(filepath.Join(dir, upgradeRequestFile), req); err != nil {
		return usageErrorf("ask %s for the upgrade: %v", m.Instance, err)
	}
	fmt.Fprintf(g.stderr, "asked %s (version %d) to upgrade to %s; the new build recovers on the old code, converts the state and checkpoints it…\n", m.Instance, m.Version, to)
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		b, err := os.ReadFile(resultPath)
		if err == nil {
			var res upgradeResult
			if json.Unmarshal(b, &res) == nil && res.Requested == req.Requested {
				return reportUpgrade(g, res, asJSON)
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return usageErrorf("read the upgrade's result: %v", err)
		}
		if _, ok := supervise.ReadRunStatus(dir); !ok {
			_ = os.Remove(filepath.Join(dir, upgradeRequestFile))
			return problemErrorf("%s stopped before answering the upgrade request; run it again (with the old build) and retry", m.Instance)
		}
		if time.Now().After(deadline) {
			_ = os.Remove(filepath.Join(dir, upgradeRequestFile))
			return problemErrorf("no answer from %s's ambr run after %v (its ambr run may be older than this ambr: restart it)", m.Instance, timeout)
		}
		if time.Since(last) > 5*time.Second {
			fmt.Fprintf(g.stderr, "still waiting for %s…\n", m.Instance)
			last = time.Now()
		}
		select {
		case <-tick.C:
		case <-cmd.Context().Done():
			return problemErrorf("interrupted; the upgrade may still complete: see 'ambr ls'")
		}
	}
}

func reportUpgrade(g *globals, res upgradeResult, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(g.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
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
