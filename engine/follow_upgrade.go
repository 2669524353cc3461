package engine

import (
	"errors"
	"fmt"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/logfmt"
)

// Followers across a live upgrade. The primary that upgrades recovers its
// new build from the newest checkpoint with an upgrade (UpgradeTakeCheckpoint),
// and before it logs anything it writes the MANIFEST with UpgradeVersion =
// Version+1 (sealRecovered): the records of the new segment it then starts
// are the new build's. A follower's app runs the old code, and must never
// process them (its state, and a checkpointer's checkpoints, would be the
// old code's view of the new build's history). So at the first record of
// every segment a follower reads the MANIFEST: while an upgrade is under way
// it holds (errFollowHold) until the upgrade ends; once the version moved
// (the converted checkpoint is durable and the MANIFEST names the new
// build) it stops following, tells the caller to switch its app to the
// instance's build (Options.OnBuildMoved: ambr run starts it from
// <home>/.bin) and recovers that from the newest checkpoint, the converted
// one; a failed upgrade puts UpgradeVersion back (the old build's recovery
// seals again) and the follower goes on with the records its app already
// knows how to run. Any replica can thus be restarted with its old command
// (ambr run names the instance's current build) and every replica ends on
// the new build without being told.

// errFollowHold stops a follow step before a record of an upgrade still
// under way; the next step tries again.
var errFollowHold = errors.New("follower: an upgrade is under way")

// upgradeGate is checkUpgrade at the first record of a segment (seg is
// the record's), except at promotion.
func (v *conversation) upgradeGate(seg uint64) error {
	if seg == v.fw.f.lastSeg || v.fw.takingOver {
		return nil
	}
	return v.checkUpgrade()
}

// checkUpgrade reads the MANIFEST: errFollowHold while an upgrade is under
// way, an errFollowAgain once the version moved past the one the app runs
// (after telling the caller which build to run), else nil.
func (v *conversation) checkUpgrade() error {
	c := v.c
	m, err := layout.ReadManifest(c.opts.FS, c.opts.Dir)
	if err != nil {
		return nil // the next read of the log says what is wrong
	}
	if m.Version != v.fw.version {
		return c.buildMoved(m)
	}
	if m.UpgradeVersion > m.Version {
		return errFollowHold
	}
	return nil
}

// buildMoved tells the caller that the instance now runs m's build (its
// version moved) and returns the errFollowAgain that recovers the app from
// the newest checkpoint.
func (c *Coordinator) buildMoved(m *logfmt.Manifest) error {
	if app := c.app(); m.App.SHA256 != "" && app.SHA256 != m.App.SHA256 {
		c.mu.Lock()
		c.opts.App = m.App
		c.mu.Unlock()
		c.log.Info(fmt.Sprintf("replica %d: the instance was upgraded to version %d; switching the app to its build", c.opts.Replica, m.Version), "to", m.App.Source, "sha256", shortSHA(m.App.SHA256))
		if c.opts.OnBuildMoved != nil {
			c.opts.OnBuildMoved(m.App)
		}
	}
	return fmt.Errorf("%w: the instance moved to version %d", errFollowAgain, m.Version)
}
