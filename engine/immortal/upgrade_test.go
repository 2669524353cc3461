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
