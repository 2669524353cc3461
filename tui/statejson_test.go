package tui

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestStateJSONLines(t *testing.T) {
	state := `{"count":3,"results":[1,2,3,4,5,6,7,8],"byID":{"10":"j","2":"b","1":"a"},"names":{"b":1,"a":2},"big":12345678901234567890,"empty":[]}`
	folded := []string{
		`{`,
		`  "count": 3,`,
		`  "results": [`,
		`    1,`, `    2,`, `    3,`, `    4,`, `    5,`, `    6,`,
		`    … 2 more (z unfolds)`,
		`  ],`,
		`  "byID": {`,
		`    "1": "a",`,
		`    "2": "b",`,
		`    "10": "j"`,
		`  },`,
		`  "names": {`,
		`    "b": 1,`,
		`    "a": 2`,
		`  },`,
		`  "big": 12345678901234567890,`,
		`  "empty": []`,
		`}`,
	}
	if d := cmp.Diff(folded, stateJSONLines([]byte(state), true)); d != "" {
		t.Errorf("folded (-want +got):\n%s", d)
	}
	unfolded := stateJSONLines([]byte(state), false)
	if got := strings.Join(unfolded, "\n"); !strings.Contains(got, "    7,\n    8\n  ],") || strings.Contains(got, "more") {
		t.Errorf("unfolded state cut or wrong:\n%s", got)
	}
	if got := stateJSONLines([]byte("not json {"), true); len(got) != 1 || got[0] != "not json {" {
		t.Errorf("not JSON: %q", got)
	}
}

// The Go binding's binary checkpoint (a state that is not JSON) is split
// as its JSON form, {"state_b64": …, "binding": …}, was before.
func TestSplitStateBinaryCheckpoint(t *testing.T) {
	meta := `{"binding":{"codec":"gob","next_call_id":1,"pending":{}}}`
	binary := append([]byte("\x00ambr-binary\x01"+string(rune(len(meta)))+meta), 1, 2, 3)
	asJSON := `{"state_b64":"AQID","binding":{"codec":"gob","next_call_id":1,"pending":{}}}`
	gs, gb, graw := splitState(binary)
	ws, wb, wraw := splitState([]byte(asJSON))
	if string(gs) != string(ws) || string(gb) != string(wb) || string(graw) != string(wraw) || gs == nil {
		t.Fatalf("binary checkpoint splits as %q, %q, %q; its JSON form as %q, %q, %q", gs, gb, graw, ws, wb, wraw)
	}
}
