package main

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/engine/layout"
	"github.com/ambr-dev/ambr/upgrade"
)

// upgradeTo runs `ambr upgrade NAME --to APP --json` and returns its exit
// code and outcome.
func upgradeTo(t *testing.T, home, name, app string) (int, upgrade.Result, string) {
	t.Helper()
	out, code, stderr := ambrExec(t, "--home", home, "upgrade", name, "--to", app, "--json")
	var res upgrade.Result
	if code != 2 {
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("ambr upgrade --json printed %q: %v\nstderr: %s", out, err, stderr)
		}
	}
	return code, res, stderr
}

// TestLiveUpgrade (scenarios.md "upgrade during", "upgrade fails"): while a
// counter client calls the server, three upgrades fail — the conversion
// returns an error, the new build crashes converting, the new build cannot
// read the state at all — each leaving the old version running with
// nothing lost; then an upgrade to server-v2 takes over in flight. The
// client's results are exactly 1..k, the server logged exactly k calls, the
// MANIFEST moved to version 1 only with the good build, and the state after
// it is in the new layout.
func TestLiveUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes; go test without -short runs it")
	}
	buildCounter(t)
	v2 := goBuild(t, "server-v2", "../../samples/counter/server-v2")
	badConvert := goBuild(t, "badconvert", "./testdata/upgrade/badconvert")
	panicConvert := goBuild(t, "panicconvert", "./testdata/upgrade/panicconvert")
	const k = 120
	server, client := pair(t, k)
	client.appArgs = append(client.appArgs, "--interval", "15ms")
	server.start()
	client.start()
	progress(t, server, 10)

	for _, bad := range []struct{ app, says string }{
		{badConvert, "cannot convert the count"},
		{panicConvert, "index out of range"},
		{counterBins.client, "holds a state of type"},
	} {
		code, res, stderr := upgradeTo(t, server.home, "server", bad.app)
		if code != 1 || res.OK || res.Version != 0 {
			t.Fatalf("upgrade to %s: exit %d, %+v; want exit 1 at version 0\n%s\nserver:\n%s", bad.app, code, res, stderr, server.out.String())
		}
		if !strings.Contains(res.Error, bad.says) {
			t.Errorf("upgrade to %s: the failure does not say %q: %s", bad.app, bad.says, res.Error)
		}
		t.Logf("failed as it should: %s", res.Error)
	}
	if t.Failed() {
		t.Fatalf("server:\n%s", server.out.String())
	}
	m, err := layout.ReadManifest(vfsDefault(), server.dir())
	if err != nil || m.Version != 0 || m.App.Path != counterBins.server && !strings.HasSuffix(m.App.Source, "counter-server") {
		t.Fatalf("after the failed upgrades the MANIFEST says version %d, app %+v (%v)", m.Version, m.App, err)
	}

	progress(t, server, 40)
	code, res, stderr := upgradeTo(t, server.home, "server", v2)
	if code != 0 || !res.OK || res.Version != 1 {
		t.Fatalf("upgrade to server-v2: exit %d, %+v\n%s\n%s", code, res, stderr, server.out.String())
	}
	checkExact(t, waitClient(t, client, server).Results, k)
	client.stop()
	server.stop()
	checkServerLog(t, server, map[string]int{"client": k})
	m, err = layout.ReadManifest(vfsDefault(), server.dir())
	if err != nil || m.Version != 1 || m.UpgradeVersion != 1 || m.App.SHA256 != res.Build.SHA256 {
		t.Fatalf("after the upgrade the MANIFEST says version %d/%d, app %s (%v); want 1/1, %s", m.Version, m.UpgradeVersion, m.App.SHA256, err, res.Build.SHA256)
	}
	var st struct {
		Value  int `json:"value"`
		Layout int `json:"layout"`
	}
	// Time travel across the upgrade: each side replays on the build that
	// ran it and shows the state that build had.
	if len(m.Builds) < 2 {
		t.Fatalf("the MANIFEST records builds %+v; want the old and the new", m.Builds)
	}
	oldBuild, newBuild := m.Builds[0].App.Path, m.Builds[len(m.Builds)-1].App.Path
	for _, tc := range []struct {
		until, field string
		app          string
	}{
		{"10", "count", oldBuild},
		{"end", "value", newBuild},
	} {
		out, err := exec.Command(builtBins.ambr, "--home", server.home, "replay", "server", "--until", tc.until, "--json").Output()
		if err != nil {
			t.Fatalf("replay --until %s: %v", tc.until, err)
		}
		var r struct {
			App   string         `json:"app"`
			State map[string]int `json:"state"`
		}
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("replay --until %s --json: %v\n%s", tc.until, err, out)
		}
		if _, ok := r.State[tc.field]; !ok || r.App != tc.app {
			t.Fatalf("replay --until %s: state %v on %s; want the %q layout on %s", tc.until, r.State, r.App, tc.field, tc.app)
		}
		if tc.until == "end" && r.State["value"] != k {
			t.Fatalf("replay --until end: value %d, want %d", r.State["value"], k)
		}
		t.Logf("replay --until %s ran %s: %v", tc.until, r.App, r.State)
	}
	checkRetroAcrossUpgrade(t, server.home, "server", v2)
	// The newest checkpoint is the upgrade's own: the count converted at
	// the moment of the upgrade, in the new layout.
	if !newestState(server.dir(), &st) || st.Layout != 2 || st.Value < 40 || st.Value > k {
		t.Fatalf("the newest checkpoint holds %+v; want the new layout with a value from 40 to %d", st, k)
	}
}

// checkRetroAcrossUpgrade retro-tests an instance upgraded once, from its
// first checkpoint (before the upgrade), against the build it was upgraded
// to: the recorded side runs each record on the build that ran it, the
// candidate is told to upgrade where the history did, and nothing diverges
// — messages and states on both sides of the boundary.
func checkRetroAcrossUpgrade(t *testing.T, home, name, candidate string) {
	t.Helper()
	cmd := exec.Command(builtBins.ambr, "--home", home, "retro-test", name, "--candidate", candidate, "--from-checkpoint", "1", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var rep struct {
		Diverged bool
		Reports  []struct {
			From, Until, Records int64
			StatesCompared       int `json:"states_compared"`
			Error                string
			Crossings            []struct {
				Seq     int64
				Upgrade bool
				From    string `json:"from_state_type"`
				To      string `json:"to_state_type"`
			} `json:"crossings"`
		}
	}
	if jerr := json.Unmarshal(out, &rep); jerr != nil || err != nil || rep.Diverged || len(rep.Reports) != 1 {
		t.Fatalf("retro-test across the upgrade: %v / %v\n%s\n%s", err, jerr, out, stderr.String())
	}
	r := rep.Reports[0]
	ups := 0
	for _, c := range r.Crossings {
		if c.Upgrade {
			ups++
		}
	}
	for _, c := range r.Crossings {
		if c.Upgrade && (!strings.HasSuffix(c.From, "counter.ServerState") || !strings.HasSuffix(c.To, "StateV2")) {
			t.Fatalf("the upgrade crossing names the state types %q → %q", c.From, c.To)
		}
	}
	if ups != 1 || r.From != 1 || r.Records != r.Until {
		t.Fatalf("retro-test across the upgrade: %+v; want records 1..end, crossing one upgrade", r)
	}
	t.Logf("retro-test from checkpoint 1: records %d..%d, %d state comparisons, crossings %+v", r.From, r.Until, r.StatesCompared, r.Crossings)
}
