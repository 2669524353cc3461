package immortal

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/ambr-dev/ambr/logfmt"
)

type v1State struct {
	Count int `json:"count"`
}

type v2State struct {
	Value  int `json:"value"`
	Layout int `json:"layout"`
}

func upgradeApps(convert func(v1State) (v2State, error)) (*App[v1State], *App[v2State]) {
	v1 := New(func() v1State { return v1State{} })
	Handle(v1, "Inc", func(ctx *Ctx, s *v1State, _ struct{}) (int, error) { s.Count++; return s.Count, nil })
	v2 := New(func() v2State { return v2State{Layout: 2} })
	Handle(v2, "Inc", func(ctx *Ctx, s *v2State, _ struct{}) (int, error) { s.Value += 10; return s.Value, nil })
	Upgrade(v1, v2, convert)
	return v1, v2
}

func incRPC() []byte {
	env := Envelope{Method: "Inc", Payload: []byte("{}")}
	return logfmt.AppendRPC(nil, logfmt.RPC{MethodID: MethodID("Inc"), Kind: logfmt.RPCFork, Args: env.Append(nil)})
}

func checkpointState(t *testing.T, m appMsg) json.RawMessage {
	t.Helper()
	var w struct{ State json.RawMessage }
	if err := json.Unmarshal(m.State, &w); err != nil {
		t.Fatalf("checkpoint %q: %v", m.State, err)
	}
	return w.State
}

// TestLiveUpgrade: UpgradeTakeCheckpoint converts the state, checkpoints it
// in the new layout, and later records run on the new code.
func TestLiveUpgrade(t *testing.T) {
	v1, v2 := upgradeApps(func(s v1State) (v2State, error) { return v2State{Value: s.Count, Layout: 2}, nil })
	c := connect(t, v1)
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c.expect(logfmt.TypeInitialMessage)
	c.expect(logfmt.TypeCheckpoint)
	c.send(1, incRPC(), nil)
	c.send(2, incRPC(), nil)
	c.control(logfmt.TypeUpgradeTakeCheckpoint)
	_, ck := c.until()
	if got := string(checkpointState(t, ck)); got != `{"value":2,"layout":2}` {
		t.Fatalf("checkpoint after the upgrade holds %s, want the converted state", got)
	}
	c.send(3, incRPC(), nil)
	c.control(logfmt.TypeTakeCheckpoint)
	_, ck = c.until()
	if got := string(checkpointState(t, ck)); got != `{"value":12,"layout":2}` {
		t.Fatalf("after one more Inc on the new code: %s, want value 12", got)
	}
	if s, ok := v2.State(); !ok || s.Value != 12 {
		t.Fatalf("next version's state %+v", s)
	}
}

// TestUpgradeConversionFails: a conversion error ends Serve with it.
func TestUpgradeConversionFails(t *testing.T) {
	v1, _ := upgradeApps(func(v1State) (v2State, error) { return v2State{}, errors.New("no way") })
	c := connect(t, v1)
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c.expect(logfmt.TypeInitialMessage)
	c.expect(logfmt.TypeCheckpoint)
	c.control(logfmt.TypeUpgradeService)
	err := c.serveErr()
	if err == nil || !strings.Contains(err.Error(), "converting the state to the next version failed: no way") {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestStateTypeRefused: a build whose state has another type than the one
// a checkpoint was written from refuses it, naming both, instead of
// decoding it into the wrong struct (a v2-only build on a v1 instance
// zeroed every field before).
func TestStateTypeRefused(t *testing.T) {
	v1, _ := upgradeApps(func(s v1State) (v2State, error) { return v2State{Value: s.Count}, nil })
	c := connect(t, v1)
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c.expect(logfmt.TypeInitialMessage)
	ck := c.expect(logfmt.TypeCheckpoint)
	c.close()
	if !strings.Contains(string(ck.State), `"state_type":"github.com/ambr-dev/ambr/engine/immortal.v1State"`) {
		t.Fatalf("the checkpoint does not name its state type: %s", ck.State)
	}

	v2only := New(func() v2State { return v2State{} })
	Handle(v2only, "Inc", func(ctx *Ctx, s *v2State, _ struct{}) (int, error) { s.Value++; return s.Value, nil })
	c2 := connect(t, v2only)
	c2.send(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(ck.State))), ck.State)
	err := c2.serveErr()
	var inc *IncompatibleStateError
	if !errors.As(err, &inc) || inc.Checkpoint != StateTypeName[v1State]() || inc.Build != StateTypeName[v2State]() {
		t.Fatalf("a v2-only build on a v1 checkpoint: %v", err)
	}
	if _, ok := v2only.State(); ok {
		t.Fatal("the refused build took a state")
	}

	// A renamed type keeps its old name with WithStateType, and loads.
	renamed := New(func() v2State { return v2State{} }, WithStateType(StateTypeName[v1State]()))
	c3 := connect(t, renamed)
	c3.send(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(ck.State))), ck.State)
	c3.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c3.expect(logfmt.TypeCheckpoint)
}

// TestUpgradedInstanceRestarts: once an instance was upgraded its
// checkpoints hold the next version's state; the same build (v1 code with
// Upgrade to v2) recovering from one hands it to v2 directly.
func TestUpgradedInstanceRestarts(t *testing.T) {
	v1, v2 := upgradeApps(func(s v1State) (v2State, error) { return v2State{Value: s.Count, Layout: 2}, nil })
	c := connect(t, v1)
	c.control(logfmt.TypeTakeBecomingPrimaryCheckpoint)
	c.expect(logfmt.TypeInitialMessage)
	c.expect(logfmt.TypeCheckpoint)
	c.send(1, incRPC(), nil)
	c.control(logfmt.TypeUpgradeTakeCheckpoint)
	_, ck := c.until()
	c.close()
	if !strings.Contains(string(ck.State), StateTypeName[v2State]()) {
		t.Fatalf("the upgrade's checkpoint does not name v2's state: %s", ck.State)
	}

	r1, r2 := upgradeApps(func(s v1State) (v2State, error) { t.Error("converted twice"); return v2State{}, nil })
	c2 := connect(t, r1)
	c2.send(logfmt.SeqCheckpointRecord, logfmt.AppendCheckpointMessage(nil, int64(len(ck.State))), ck.State)
	c2.send(2, incRPC(), nil)
	c2.control(logfmt.TypeTakeCheckpoint)
	_, ck2 := c2.until()
	if got := string(checkpointState(t, ck2)); got != `{"value":11,"layout":2}` {
		t.Fatalf("after recovery from the upgraded checkpoint and one Inc: %s, want value 11 (v2's Inc)", got)
	}
	if s, ok := r2.State(); !ok || s.Value != 11 {
		t.Fatalf("v2's state after the restart: %+v, %v", s, ok)
	}
	_ = v2
}
